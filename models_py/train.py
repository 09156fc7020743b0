"""One readable training loop: the wide path fitted first (models_py.wide_fit),
then batches sliced from tensors, BCE with logits, AdamW for dense weights and
SparseAdam for the embedding table, evaluation on validation several times per
epoch, early stopping on validation AUC, and a checkpoint after every
evaluation that carries everything needed to resume."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models_py import checkpoint, metrics
from models_py.config import TrainConfig
from models_py.data import Encoded
from models_py.distributed import Dist, broadcast
from models_py.model import CTRModel, build_model, pick_device, predict
from models_py.pipeline import Prepared, downsample_negatives, sample_rows
from models_py.stream import Batch, StreamedBatches
from models_py.wide_fit import WideFit, fit_wide
from recsys_core.errors import UserError


@dataclass
class TrainState:
    step: int = 0
    best_auc: float = -math.inf
    best_step: int = 0
    evals_since_best: int = 0
    train_seconds: float = 0.0
    samples_seen: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    wide_l2: float = 0.0  # the L2 strength models_py.wide_fit chose (0: not fitted so)
    wide_fit_seconds: float = 0.0


class TensorBatches:
    """Shuffled batches sliced from tensors already in memory (the default path),
    with each row's wide logit when it is computed ahead (``wide_logit``)."""

    def __init__(
        self, data: Encoded, batch_size: int, seed: int, wide_logit: torch.Tensor | None = None
    ) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.wide_logit = wide_logit

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, epoch: int, skip_batches: int = 0) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        device = self.data.label.device
        permutation = torch.randperm(len(self.data), generator=generator).to(device)
        for start in range(skip_batches * self.batch_size, len(self.data), self.batch_size):
            rows = permutation[start : start + self.batch_size]
            wide = None if self.wide_logit is None else self.wide_logit[rows]
            batch = self.data.take(rows)
            yield batch.categorical, batch.numeric, batch.label, wide

    def batches_from(self, epoch: int, skip_batches: int = 0) -> Generator[Batch, None, None]:
        """``batches(epoch, skip_batches)``, then every later epoch's, with no end."""
        yield from self.batches(epoch, skip_batches)
        for later in itertools.count(epoch + 1):
            if not len(self):
                return
            yield from self.batches(later)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizers(model: CTRModel, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """AdamW for the MLP, Adam (SparseAdam for a sparse table) for the embeddings,
    Adam for the wide weights, each at its own learning rate."""
    groups = model.parameter_groups()
    if model.embedding.sparse:  # SparseAdam has no weight decay
        embedding: torch.optim.Optimizer = torch.optim.SparseAdam(
            groups["embedding"], lr=config.embedding_lr
        )
    else:
        embedding = torch.optim.AdamW(
            groups["embedding"], lr=config.embedding_lr, weight_decay=config.embedding_weight_decay
        )
    optimizers: dict[str, torch.optim.Optimizer] = {
        "dense": torch.optim.AdamW(groups["dense"], lr=config.lr, weight_decay=config.weight_decay),
        "embedding": embedding,
    }
    if "wide" in groups:
        optimizers["wide"] = torch.optim.AdamW(
            groups["wide"], lr=config.wide_lr, weight_decay=config.wide_weight_decay
        )
    return optimizers


def train(
    config: TrainConfig,
    data: Prepared,
    run_dir: Path,
    resume_from: dict[str, Any] | None = None,
    progress: bool = True,
    on_eval: Any = None,
    dist: Dist | None = None,
) -> tuple[CTRModel, TrainState]:
    """Train until the step budget or early stopping; best.pt holds the best model.

    Under torchrun (``dist`` with several processes) each process takes its share
    of every global batch and DDP averages the gradients; rank 0 evaluates and
    writes the checkpoints."""
    dist = dist or Dist()
    config = config.for_rows(len(data.train_rows))
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = _device(config, dist)
    model, net, optimizers, state = _set_up(config, data, device, dist, resume_from, progress)
    source = _batch_source(data, config, device, model)
    schedule = Schedule.of(len(source), config)
    bar = _progress_bar(schedule, state, progress and dist.is_main)
    running_loss = float("nan")
    # one sequence across epochs: a streamed epoch's first buffer is made ahead too
    batches = source.batches_from(*divmod(state.step, schedule.steps_per_epoch))
    started = time.perf_counter()
    with contextlib.closing(batches):
        while state.step < schedule.total_steps and not state.stopped_early:
            loss = _step(net, optimizers, next(batches), state, dist, device)
            running_loss = loss if math.isnan(running_loss) else 0.98 * running_loss + 0.02 * loss
            bar.update(1)
            if schedule.evaluates_at(state.step):
                state = _evaluate_and_checkpoint(
                    Trained(model, optimizers, state, running_loss, time.perf_counter() - started),
                    config,
                    data,
                    run_dir,
                    device,
                    schedule,
                    dist,
                    bar,
                    on_eval,
                )
                started = time.perf_counter()
    bar.close()
    return model, state


@dataclass(frozen=True)
class Schedule:
    """How many steps an epoch and the run take, and when validation runs."""

    steps_per_epoch: int
    total_steps: int
    eval_every: int

    @classmethod
    def of(cls, rows: int, config: TrainConfig) -> Schedule:
        steps_per_epoch = max(1, math.ceil(rows / config.batch_size))
        total_steps = config.epochs * steps_per_epoch
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        return cls(steps_per_epoch, total_steps, max(1, steps_per_epoch // config.evals_per_epoch))

    def evaluates_at(self, step: int) -> bool:
        """Every ``eval_every`` steps, and at the last step."""
        return step % self.eval_every == 0 or step == self.total_steps


@dataclass
class Trained:
    """Where training stands at an evaluation: what is checkpointed and reported."""

    model: CTRModel
    optimizers: dict[str, torch.optim.Optimizer]
    state: TrainState
    running_loss: float
    seconds: float  # training time since the last evaluation


def _set_up(
    config: TrainConfig,
    data: Prepared,
    device: torch.device,
    dist: Dist,
    resume_from: dict[str, Any] | None,
    progress: bool,
) -> tuple[CTRModel, nn.Module, dict[str, torch.optim.Optimizer], TrainState]:
    """The model (its wide path fitted first where that applies), the module that
    steps (DDP under torchrun), the optimizers and the state: new, or restored
    from ``resume_from``."""
    model = build_model(data.spec, data.encoders, config, dist.sparse_embeddings).to(device)
    wide_first = fits_wide_first(config, data)
    fit = None
    if resume_from is None:
        model.start_at_rate(float(data.train_label_rate))
        if wide_first:
            fit = _fit_wide(model, data, config, dist, progress)
    if wide_first:
        model.freeze_wide()
    net = _parallel(model, device, dist)
    optimizers = make_optimizers(model, config)
    state = TrainState() if resume_from is None else _resume(model, optimizers, resume_from)
    if fit is not None:
        state.wide_l2, state.wide_fit_seconds = fit.l2, fit.seconds
    return model, net, optimizers, state


def _progress_bar(schedule: Schedule, state: TrainState, show: bool) -> tqdm:
    return tqdm(
        total=schedule.total_steps,
        initial=state.step,
        disable=not show,
        unit="step",
        desc="train",
        dynamic_ncols=True,
    )


def _evaluate_and_checkpoint(
    now: Trained,
    config: TrainConfig,
    data: Prepared,
    run_dir: Path,
    device: torch.device,
    schedule: Schedule,
    dist: Dist,
    bar: tqdm,
    on_eval: Any,
) -> TrainState:
    """Rank 0 evaluates on validation, writes the checkpoints and decides on early
    stopping; every process leaves with rank 0's state."""
    if not dist.is_main:
        return broadcast(dist, None)
    state = now.state
    state.train_seconds += now.seconds
    entry = _evaluate(
        now.model, data, device, state, config, schedule.steps_per_epoch, now.running_loss
    )
    _checkpoint(now.model, now.optimizers, state, config, data, run_dir)
    bar.set_postfix(
        loss=f"{now.running_loss:.4f}",
        val_auc=f"{entry['val_auc']:.4f}",
        best=f"{state.best_auc:.4f}",
    )
    if on_eval is not None:
        on_eval(entry)
    broadcast(dist, state)
    return state


def fits_wide_first(config: TrainConfig, data: Prepared) -> bool:
    """The wide path is fitted by L-BFGS before the loop when asked, on the training
    rows in memory or, when the split streams, on a sample of ``wide_fit_rows`` of
    them; otherwise (``wide_fit_rows`` 0 when streaming) Adam trains it with the rest."""
    return (
        config.wide != "off"
        and config.wide_solver == "lbfgs"
        and (data.train is not None or config.wide_fit_rows > 0)
    )


def _fit_wide(
    model: CTRModel, data: Prepared, config: TrainConfig, dist: Dist, progress: bool
) -> WideFit:
    """Rank 0 fits (on the CPU, where SciPy works); under torchrun every rank then
    takes rank 0's weights. A streamed split's sample is read for the fit alone
    and freed after it."""
    fit = None
    if dist.is_main:
        fit = fit_wide(model, _wide_rows(data, config), data.validation, log=progress)
    if dist.enabled:
        from torch import distributed

        for param in [*model.wide_weights(), model.mlp[-1].bias]:
            distributed.broadcast(param.data, src=0)
    with torch.no_grad():  # the MLP starts at zero output: the model starts at the fit
        model.mlp[-1].weight.zero_()
    return broadcast(dist, fit)


def _wide_rows(data: Prepared, config: TrainConfig) -> Encoded:
    """The training rows the wide path is fitted on: all of them in memory, or a
    seeded sample of ``wide_fit_rows`` of a streamed split."""
    if data.train is not None:
        return data.train
    return data.encode_rows(sample_rows(data.train_rows, config.wide_fit_rows, config.seed))


def refit_wide(
    model: CTRModel, data: Prepared, config: TrainConfig, l2: float, progress: bool = True
) -> dict[str, float]:
    """Fit the wide path again, at the strength ``l2`` that validation chose, on the
    training and validation rows together (``config.refit``). Validation is the
    labelled data nearest in time to the rows the model will score; once it has
    chosen the strength and the network's stopping step, holding it out only
    throws that away (1M default worlds: +0.0018 and +0.0010 test AUC). The
    network on top is kept as trained; test rows are never fitted. Validation's
    negatives are downsampled as the training rows' were, so that the
    calibration fitted before the refit still holds. The fit starts from the
    current weights, so fitting twice ends where once does. Returns what
    metrics.json reports of it: rows, l2 and seconds (empty: no refit)."""
    if not (config.refit and fits_wide_first(config, data) and l2 > 0):
        return {}
    rows, extra = _wide_rows(data, config), data.validation
    if config.negative_rate < 1:  # downsampled as the training rows are: calibration assumes it
        everyone = np.arange(len(extra))
        keep = torch.from_numpy(
            downsample_negatives(everyone, extra.label.numpy(), config.negative_rate, config.seed)
        )
        extra = extra.take(keep)
    both = Encoded(
        torch.cat([rows.categorical, extra.categorical]),
        torch.cat([rows.numeric, extra.numeric]),
        torch.cat([rows.label, extra.label]),
    )
    del rows
    fit = fit_wide(model, both, data.validation, path=(l2,), log=False)
    if progress:
        print(
            f"wide path refitted on {len(both):,} training + validation rows "
            f"at L2 {l2:g} ({fit.evaluations} evaluations, {fit.seconds:.1f} s)"
        )
    return {"rows": len(both), "l2": l2, "seconds": fit.seconds}


def _device(config: TrainConfig, dist: Dist) -> torch.device:
    device = pick_device(config)
    if device.type == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return device


def _parallel(model: CTRModel, device: torch.device, dist: Dist) -> nn.Module:
    """The module the loop calls: ``model`` itself, or DDP around it under torchrun."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _resume(
    model: CTRModel, optimizers: dict[str, torch.optim.Optimizer], payload: dict[str, Any]
) -> TrainState:
    """Put a last.pt back: weights, optimiser moments, progress and the RNG, so the
    resumed run draws exactly the batches the uninterrupted one would have."""
    model.load_state_dict(payload["model"])
    for name, opt in optimizers.items():
        opt.load_state_dict(payload["optimizers"][name])
    torch.set_rng_state(payload["rng"])
    return TrainState(**payload["state"])


def _batch_source(
    data: Prepared, config: TrainConfig, device: torch.device, model: CTRModel
) -> TensorBatches | StreamedBatches:
    """The training batches, each with its rows' logits of the wide path when that
    path is frozen (fitted first): computed once for the rows in memory, or per
    buffer, ahead of the loop, when the split streams."""
    if data.stream is not None:
        if not model.wide_frozen:
            return data.stream
        return data.stream.computing_wide(lambda rows: model.frozen_wide_logits(rows.to(device)))
    assert data.train is not None
    train = data.train.to(device)
    return TensorBatches(train, config.batch_size, config.seed, model.frozen_wide_logits(train))


def _step(
    net: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    batch: Batch,
    state: TrainState,
    dist: Dist,
    device: torch.device,
) -> float:
    """One optimiser step on this process's share of the global batch; the loss."""
    categorical, numeric, label, wide = batch
    mine = slice(dist.rank, None, dist.world)
    wide = None if wide is None else wide[mine].to(device)
    logits = net(categorical[mine].to(device), numeric[mine].to(device), wide)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, label[mine].to(device))
    value = float(loss.detach())
    if not math.isfinite(value):
        raise UserError(
            f"training diverged at step {state.step + 1:,}: the loss is {value}; "
            f"lower the learning rates (--lr, --embedding-lr, --wide-lr); "
            f"checkpoints written so far are kept"
        )
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    state.step += 1
    state.samples_seen += len(label)
    return value


def _evaluate(
    model: CTRModel,
    data: Prepared,
    device: torch.device,
    state: TrainState,
    config: TrainConfig,
    steps_per_epoch: int,
    running_loss: float,
) -> dict[str, float]:
    """Validation AUC now; updates the best step and early stopping in ``state``."""
    val_auc = metrics.auc(data.validation.label.numpy(), predict(model, data.validation, device))
    entry = {
        "step": state.step,
        "epoch": state.step / steps_per_epoch,
        "train_loss": running_loss,
        "val_auc": val_auc,
    }
    state.history.append(entry)
    if val_auc > state.best_auc:
        state.best_auc, state.best_step, state.evals_since_best = val_auc, state.step, 0
    else:
        state.evals_since_best += 1
        state.stopped_early = state.evals_since_best >= config.patience
    return entry


def _checkpoint(
    model: CTRModel,
    optimizers: dict[str, torch.optim.Optimizer],
    state: TrainState,
    config: TrainConfig,
    data: Prepared,
    run_dir: Path,
) -> None:
    """last.pt after every evaluation; best.pt too when this one is the best. Each
    holds all a resume needs (``_resume``) and all a command needs to restore the
    run (``checkpoint.restore``)."""
    payload = {
        **data.build.record(),
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "state": dict(state.__dict__),
        "config": config.to_dict(),
        "spec": data.spec.to_dict(),
        "encoders": data.encoders.to_dict(),
        "rng": torch.get_rng_state(),
    }
    if state.best_step == state.step:
        checkpoint.save(payload, run_dir / checkpoint.BEST)
    checkpoint.save(payload, run_dir / checkpoint.LAST)
