"""The wide path fitted as what it is: an L2-regularised logistic regression.

The wide path (a weight per categorical value, per numeric, per pair of values
of two attribute columns) is a convex model. Trained by Adam beside the MLP and
stopped early, it ends 0.003-0.008 AUC below the same model fitted to
convergence (docs/experiments.md): early stopping is set by the MLP, and a
rare value's weight moves as fast as a frequent one's. So it is fitted first,
full batch with L-BFGS, along a path of L2 strengths from strong to weak (each
fit warm-started from the last), keeping the strength with the best validation
AUC; the loop then trains the rest of the network on top of it, with the wide
weights frozen and the MLP starting at zero output, so training starts from the
convex fit and can only add to it.

The fit runs on the sparse design matrix (a column per wide weight, ones where
a row uses it, beside the encoded numerics) with SciPy's L-BFGS-B in float64:
one pass over the data is two sparse matrix-vector products.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize, sparse
from scipy.special import expit
from threadpoolctl import threadpool_limits

from models_py import metrics
from models_py.data import Encoded
from models_py.model import CTRModel

L2_PATH = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
# the path starts at the strength nearest START_L2_ROWS / training rows: the best
# has been about 800 / rows on 80k rows and 80 / rows on 800k (docs/experiments.md)
START_L2_ROWS = 3_000
MAX_ITERATIONS = 100  # L-BFGS-B iterations per strength (warm starts need few)
# stop a strength's fit when an iteration lowers the loss by less than this share:
# SciPy's default (2.2e-9) spends 40% more evaluations on 1M impressions for the
# same validation AUC (+-0.0001); 1e-5 stops far too early (docs/experiments.md)
RELATIVE_TOLERANCE = 1e-6
MAX_WORKERS = 8  # threads over row blocks; beyond this memory bandwidth bounds the products
# A weaker strength's fit is abandoned once its validation AUC, checked every
# CHECK_EVERY iterations, is this far below the best strength's: fitted to the end
# it only falls further, and on 1M impressions that last fit was 38% of the path's
# evaluations (docs/experiments.md). Strengths that go on to win dipped at most
# 0.0006 below the best on the way.
ABANDON_BELOW_BEST = 0.002
CHECK_EVERY = 5


def l2_path(rows: int) -> tuple[float, ...]:
    """The strengths to try for ``rows`` training rows, strongest first."""
    start = START_L2_ROWS / max(rows, 1)
    first = next((i for i, l2 in enumerate(L2_PATH) if l2 <= start * 1.8), len(L2_PATH) - 1)
    return L2_PATH[first:]


@dataclass
class WideFit:
    l2: float
    validation_auc: float
    evaluations: int
    seconds: float


class _Design:
    """The wide logit as a linear function: a sparse column per ``first_order`` row
    (1 where a row uses that weight), then per ``numeric_cross`` row (the numeric
    it multiplies), the encoded numerics, and the bias.

    The rows are held in one block per CPU core, and the loss and gradient are
    computed block by block on a thread pool: SciPy's sparse products and NumPy's
    ufuncs release the GIL (1M impressions, 2 cores, with BLAS held to one
    thread: 0.15 s an evaluation against 0.30 s before; docs/experiments.md).
    Blocks are summed in a fixed order, so the fit is the same on every run with
    the same number of cores."""

    def __init__(self, model: CTRModel, data: Encoded, pool: ThreadPoolExecutor) -> None:
        with torch.no_grad():
            categorical = data.categorical.cpu()
            index = model.wide_index(categorical, categorical + model.offsets.cpu()).numpy()
        self.pool = pool
        self.weights = model.first_order.weight.shape[0]
        columns, values = index.astype(np.int32), np.ones(index.shape)
        numeric = data.numeric.cpu().numpy().astype(np.float64)
        if model.numeric_cross is not None:
            with torch.no_grad():
                cross, crossed = model.numeric_cross_terms(categorical, data.numeric.cpu())
            columns = np.hstack([columns, cross.numpy().astype(np.int32) + self.weights])
            values = np.hstack([values, crossed.numpy().astype(np.float64)])
            self.weights += model.numeric_cross.weight.shape[0]
        self.label = data.label.cpu().numpy().astype(np.float64)
        bounds = np.linspace(0, len(self.label), _workers() + 1).astype(np.int64)
        self.blocks = [
            _Block(columns[a:b], values[a:b], numeric[a:b], self.label[a:b], self.weights)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if b > a
        ]

    def logit(self, theta: np.ndarray) -> np.ndarray:
        w, v, b = self.split(theta)
        return np.concatenate(list(self.pool.map(lambda block: block.logit(w, v, b), self.blocks)))

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        return theta[: self.weights], theta[self.weights : -1], float(theta[-1])

    def loss_and_gradient(self, theta: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        """Mean log loss + l2/2 * |weights|^2 (bias unpenalised), and its gradient."""
        w, v, b = self.split(theta)
        parts = list(self.pool.map(lambda block: block.loss_and_gradient(w, v, b), self.blocks))
        rows = len(self.label)
        loss = sum(part[0] for part in parts) / rows
        gradient = sum(part[1] for part in parts) / rows
        weights = theta[:-1]
        gradient[:-1] += l2 * weights
        return loss + 0.5 * l2 * float(weights @ weights), gradient


class _Block:
    """One block of the design's rows: its sparse part as CSR with int32 indices
    (at 1M rows training's peak RSS 3.9 GB -> 3.1 GB against two stacked matrices)."""

    def __init__(
        self,
        columns: np.ndarray,
        values: np.ndarray,
        numeric: np.ndarray,
        label: np.ndarray,
        weights: int,
    ) -> None:
        rows, per_row = columns.shape
        self.onehot = sparse.csr_matrix(
            (values.ravel(), columns.ravel(), np.arange(0, rows * per_row + 1, per_row)),
            shape=(rows, weights),
        )
        self.numeric, self.label = numeric, label

    def logit(self, w: np.ndarray, v: np.ndarray, b: float) -> np.ndarray:
        return self.onehot @ w + self.numeric @ v + b

    def loss_and_gradient(self, w: np.ndarray, v: np.ndarray, b: float) -> tuple[float, np.ndarray]:
        """Summed log loss over the block and its gradient (not yet divided by rows)."""
        z = self.logit(w, v, b)
        loss = float(np.sum(np.logaddexp(0.0, z) - self.label * z))
        residual = expit(z) - self.label
        gradient = np.concatenate(
            [self.onehot.T @ residual, self.numeric.T @ residual, [residual.sum()]]
        )
        return loss, gradient


class _Watch:
    """L-BFGS-B's callback: stops a strength's fit whose validation AUC has fallen
    ABANDON_BELOW_BEST below the best strength's (SciPy ends the fit on
    StopIteration and returns where it stood)."""

    def __init__(self, check_rows: _Design, best_auc: float) -> None:
        self.check_rows, self.best_auc = check_rows, best_auc
        self.iterations, self.abandoned = 0, False

    def __call__(self, intermediate_result: optimize.OptimizeResult) -> None:
        self.iterations += 1
        if self.iterations % CHECK_EVERY or not np.isfinite(self.best_auc):
            return
        rows = self.check_rows
        if metrics.auc(rows.label, rows.logit(intermediate_result.x)) < (
            self.best_auc - ABANDON_BELOW_BEST
        ):
            self.abandoned = True
            raise StopIteration


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def fit_wide(
    model: CTRModel,
    train: Encoded,
    validation: Encoded,
    path: tuple[float, ...] | None = None,
    log: bool = True,
) -> WideFit:
    """Fit the model's wide weights and output bias; leave the best strength's fit in place."""
    started = time.perf_counter()
    sparse_weights = [model.first_order.weight]
    if model.numeric_cross is not None:
        sparse_weights.append(model.numeric_cross.weight)
    theta = np.concatenate(
        [
            *(w.detach().cpu().numpy().ravel() for w in sparse_weights),
            model.numeric_linear.weight.detach().cpu().numpy().ravel(),
            model.mlp[-1].bias.detach().cpu().numpy(),
        ]
    ).astype(np.float64)
    best_l2, best_auc, best_theta = 0.0, -np.inf, theta
    evaluations = 0
    # One BLAS thread: the dense products are small, and OpenBLAS's own threads
    # spinning beside the pool's doubled L-BFGS-B's time (docs/experiments.md).
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(_workers(), thread_name_prefix="wide-fit") as pool,
    ):
        fit_rows, check_rows = _Design(model, train, pool), _Design(model, validation, pool)
        for l2 in path or l2_path(len(fit_rows.label)):
            watch = _Watch(check_rows, best_auc)
            result = optimize.minimize(
                fit_rows.loss_and_gradient,
                theta,
                args=(l2,),
                jac=True,
                method="L-BFGS-B",
                callback=watch,
                options={"maxiter": MAX_ITERATIONS, "ftol": RELATIVE_TOLERANCE},
            )
            theta, evaluations = result.x, evaluations + int(result.nfev)
            auc = metrics.auc(check_rows.label, check_rows.logit(theta))
            if log:
                ended = f", abandoned at iteration {watch.iterations}" if watch.abandoned else ""
                print(
                    f"wide path, L2 {l2:g}: validation AUC {auc:.4f} "
                    f"({result.nfev} evaluations{ended})"
                )
            if auc > best_auc:
                best_l2, best_auc, best_theta = l2, auc, theta
            elif auc < best_auc:
                break  # weaker L2 from here on only overfits more
    w, v, b = fit_rows.split(best_theta)
    with torch.no_grad():
        for weight, values in zip(
            sparse_weights,
            np.split(w, np.cumsum([p.shape[0] for p in sparse_weights])[:-1]),
            strict=True,
        ):
            weight.copy_(torch.from_numpy(values).view_as(weight))
        model.numeric_linear.weight.copy_(torch.from_numpy(v).view_as(model.numeric_linear.weight))
        model.mlp[-1].bias.fill_(b)
    return WideFit(best_l2, best_auc, evaluations, time.perf_counter() - started)
