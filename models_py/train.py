"""One readable training loop: batches sliced from tensors, BCE with logits,
AdamW for dense weights and SparseAdam for the embedding table, evaluation on
validation several times per epoch, early stopping on validation AUC, and a
checkpoint after every evaluation that carries everything needed to resume."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models_py import checkpoint, metrics
from models_py.config import TrainConfig
from models_py.data import Encoded, Encoders
from models_py.distributed import Dist, broadcast
from models_py.model import CTRModel, build_model, pick_device, predict
from models_py.pipeline import Prepared
from models_py.registry import FeatureSpec
from models_py.stream import Batch, StreamedBatches
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


class TensorBatches:
    """Shuffled batches sliced from tensors already in memory (the default path)."""

    def __init__(self, data: Encoded, batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, epoch: int, skip_batches: int = 0) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        device = self.data.label.device
        permutation = torch.randperm(len(self.data), generator=generator).to(device)
        for start in range(skip_batches * self.batch_size, len(self.data), self.batch_size):
            rows = permutation[start : start + self.batch_size]
            yield self.data.categorical[rows], self.data.numeric[rows], self.data.label[rows]


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


def _payload(
    model: CTRModel,
    optimizers: dict[str, torch.optim.Optimizer],
    state: TrainState,
    config: TrainConfig,
    prepared_spec: FeatureSpec,
    encoders: Encoders,
    feature_build: str,
) -> dict[str, Any]:
    return {
        "feature_build": feature_build,
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "state": {k: v for k, v in state.__dict__.items()},
        "config": config.to_dict(),
        "spec": prepared_spec.to_dict(),
        "encoders": encoders.to_dict(),
        "rng": torch.get_rng_state(),
    }


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
    device = pick_device(config)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    model = build_model(data.spec, data.encoders, config, dist.sparse_embeddings).to(device)
    if resume_from is None:
        model.start_at_rate(float(data.train_label_rate))
    net: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    optimizers = make_optimizers(model, config)
    state = TrainState()
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(resume_from["optimizers"][name])
        state = TrainState(**resume_from["state"])
        torch.set_rng_state(resume_from["rng"])

    if data.stream is not None:
        source: TensorBatches | StreamedBatches = data.stream
    else:
        assert data.train is not None
        source = TensorBatches(data.train.to(device), config.batch_size, config.seed)
    validation = data.validation
    y_val = validation.label.numpy()
    n = len(source)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss()
    batches: Iterator[Batch] = iter(())
    batches_epoch = -1

    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not progress or not dist.is_main,
        unit="step",
        desc="train",
        dynamic_ncols=True,
    )
    running_loss = float("nan")
    started = time.perf_counter()
    while state.step < total_steps and not state.stopped_early:
        epoch, position = divmod(state.step, steps_per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = source.batches(epoch, position), epoch
        categorical, numeric, label = next(batches)
        rows = len(label)
        mine = slice(dist.rank, None, dist.world)  # this process's share of the global batch
        logits = net(categorical[mine].to(device), numeric[mine].to(device))
        loss = loss_fn(logits, label[mine].to(device))
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise UserError(
                f"training diverged at step {state.step + 1:,}: the loss is {loss_value}; "
                f"lower the learning rates (--lr, --embedding-lr, --wide-lr); "
                f"checkpoints written so far are kept"
            )
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        state.step += 1
        state.samples_seen += rows
        running_loss = (
            loss_value if math.isnan(running_loss) else 0.98 * running_loss + 0.02 * loss_value
        )
        bar.update(1)

        if (state.step % eval_every == 0 or state.step == total_steps) and not dist.is_main:
            state = broadcast(dist, None)  # rank 0 evaluates and decides on stopping
            started = time.perf_counter()
        elif state.step % eval_every == 0 or state.step == total_steps:
            state.train_seconds += time.perf_counter() - started
            val_auc = metrics.auc(y_val, predict(model, validation, device))
            state.history.append(
                {
                    "step": state.step,
                    "epoch": state.step / steps_per_epoch,
                    "train_loss": running_loss,
                    "val_auc": val_auc,
                }
            )
            improved = val_auc > state.best_auc
            if improved:
                state.best_auc, state.best_step, state.evals_since_best = val_auc, state.step, 0
            else:
                state.evals_since_best += 1
                state.stopped_early = state.evals_since_best >= config.patience
            payload = _payload(
                model, optimizers, state, config, data.spec, data.encoders, data.build_id
            )
            if improved:
                checkpoint.save(payload, run_dir / checkpoint.BEST)
            checkpoint.save(payload, run_dir / checkpoint.LAST)
            bar.set_postfix(
                loss=f"{running_loss:.4f}", val_auc=f"{val_auc:.4f}", best=f"{state.best_auc:.4f}"
            )
            if on_eval is not None:
                on_eval(state.history[-1])
            broadcast(dist, state)
            started = time.perf_counter()
    bar.close()
    return model, state
