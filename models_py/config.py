"""Training configuration: one typed dataclass, defaults readable in one screen.

The CLI and ``--config FILE.json`` override it; every run writes the resolved
configuration next to its results. Unknown keys and wrong types are refused
with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_core.errors import UserError

INTERACTIONS = ("none", "dot", "fm")
WIDE = ("off", "linear", "crosses")
WIDE_SOLVERS = ("lbfgs", "adam")


@dataclass
class TrainConfig:
    # data
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_count: int = 20  # values seen fewer times in train share the "unseen" slot 0
    numeric_buckets: int = 16  # quantile buckets per numeric feature, embedded; 0 = off
    drop_groups: list[str] = field(default_factory=list)
    negative_rate: float = 1.0  # keep each negative training row with this probability
    # model
    embedding_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    interaction: str = "none"  # none | dot (user . item) | fm (all pairs): see README
    # the wide path beside the MLP: off | linear (a weight per value and numeric) |
    # crosses (linear plus a weight per pair of values of two attribute columns)
    wide: str = "crosses"
    # lbfgs: fit the wide path first as an L2 logistic regression (models_py.wide_fit),
    # then train the rest on top; adam: train it with the rest (also when streaming)
    wide_solver: str = "lbfgs"
    deep_ids: bool = False  # feed user and item id embeddings to the MLP as well
    # optimisation
    batch_size: int = 0  # 0 = auto: a power of two giving about 200 steps an epoch, 256-4096
    lr: float = 2e-3
    embedding_lr: float = 1e-2
    embedding_weight_decay: float = 0.0  # decoupled; dense tables only (SparseAdam has none)
    wide_lr: float = 2e-3  # wide_solver adam only
    # decoupled decay of the wide weights (wide_solver adam): rare values shrink toward 0
    wide_weight_decay: float = 1.0
    weight_decay: float = 1e-5
    epochs: int = 10  # at most: early stopping on validation AUC ends training sooner
    evals_per_epoch: int = 4
    patience: int = 4  # evaluations without improvement before stopping
    max_steps: int = 0  # 0 = no limit
    # runtime
    seed: int = 42
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    baseline_max_rows: int = 400_000  # training rows for logistic regression (0 = all)
    lightgbm_max_rows: int = 0  # training rows for the LightGBM baseline (0 = all)
    # embedding tables above this many rows take sparse gradients (SparseAdam)
    sparse_above_rows: int = 200_000
    # auto: stream the training split from disk (models_py.stream) above this many rows
    streaming: str = "auto"  # auto | on | off
    stream_above_rows: int = 3_000_000

    def validate(self) -> TrainConfig:
        _check(
            len(self.split_fractions) == 3
            and all(f > 0 for f in self.split_fractions)
            and abs(sum(self.split_fractions) - 1) < 1e-6,
            f"split_fractions must be three positive numbers summing to 1, "
            f"got {list(self.split_fractions)}",
        )
        _check(self.min_count >= 1, f"min_count must be >= 1, got {self.min_count}")
        _check(
            self.numeric_buckets >= 0 and self.numeric_buckets != 1,
            f"numeric_buckets must be 0 or >= 2, got {self.numeric_buckets}",
        )
        _check(
            0 < self.negative_rate <= 1,
            f"negative_rate must be in (0, 1], got {self.negative_rate}",
        )
        _check(self.embedding_dim >= 1, f"embedding_dim must be >= 1, got {self.embedding_dim}")
        _check(all(h >= 1 for h in self.hidden), f"hidden sizes must be >= 1, got {self.hidden}")
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _check(
            self.interaction in INTERACTIONS,
            f"interaction must be one of {', '.join(INTERACTIONS)}, got {self.interaction!r}",
        )
        _check(
            self.wide in WIDE,
            f"wide must be one of {', '.join(WIDE)}, got {self.wide!r}",
        )
        _check(
            self.wide_solver in WIDE_SOLVERS,
            f"wide_solver must be one of {', '.join(WIDE_SOLVERS)}, got {self.wide_solver!r}",
        )
        _check(self.batch_size >= 0, f"batch_size must be >= 0 (0 = auto), got {self.batch_size}")
        _check(
            self.streaming in ("auto", "on", "off"),
            f"streaming must be auto, on or off, got {self.streaming!r}",
        )
        _check(
            self.stream_above_rows >= 0,
            f"stream_above_rows must be >= 0, got {self.stream_above_rows}",
        )
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.embedding_lr > 0, f"embedding_lr must be > 0, got {self.embedding_lr}")
        _check(self.wide_lr > 0, f"wide_lr must be > 0, got {self.wide_lr}")
        _check(
            self.embedding_weight_decay >= 0,
            f"embedding_weight_decay must be >= 0, got {self.embedding_weight_decay}",
        )
        _check(
            self.wide_weight_decay >= 0,
            f"wide_weight_decay must be >= 0, got {self.wide_weight_decay}",
        )
        _check(
            self.sparse_above_rows >= 0,
            f"sparse_above_rows must be >= 0, got {self.sparse_above_rows}",
        )
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(
            self.evals_per_epoch >= 1, f"evals_per_epoch must be >= 1, got {self.evals_per_epoch}"
        )
        _check(self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        _check(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        _check(
            self.device in ("auto", "cpu", "cuda"),
            f"device must be auto, cpu or cuda, got {self.device!r}",
        )
        _check(
            self.baseline_max_rows >= 0,
            f"baseline_max_rows must be >= 0, got {self.baseline_max_rows}",
        )
        _check(
            self.lightgbm_max_rows >= 0,
            f"lightgbm_max_rows must be >= 0, got {self.lightgbm_max_rows}",
        )
        return self

    def for_rows(self, rows: int) -> TrainConfig:
        """This configuration with its automatic values resolved for ``rows`` training rows."""
        if self.batch_size:
            return self
        return dataclasses.replace(self, batch_size=auto_batch_size(rows))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["split_fractions"] = list(self.split_fractions)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(
                f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})"
            )
        defaults = cls()
        clean: dict[str, Any] = {}
        for name, value in values.items():
            clean[name] = _coerce(name, value, getattr(defaults, name), source)
        return dataclasses.replace(defaults, **clean).validate()

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        merged = self.to_dict()
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(merged, source="option")


STEPS_PER_EPOCH = 200
MIN_BATCH, MAX_BATCH = 256, 4096


def auto_batch_size(rows: int) -> int:
    """The power of two nearest to ``rows / 200``, within 256 to 4096: small data gets
    enough optimiser steps an epoch, large data keeps large fast batches."""
    size = 2 ** round(math.log2(max(rows / STEPS_PER_EPOCH, 1)))
    return min(max(size, MIN_BATCH), MAX_BATCH)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _coerce(name: str, value: Any, default: Any, source: str) -> Any:
    """Accept a value of the default's type (ints where floats are expected, too)."""
    wrong = UserError(
        f"{source}: {name} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
    )
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        if not math.isfinite(value):
            raise UserError(f"{source}: {name} must be a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise wrong
        return value
    if isinstance(default, tuple | list):
        if not isinstance(value, list | tuple):
            raise wrong
        inner = default[0] if default else ""  # empty defaults are lists of names
        items = [_coerce(f"{name}[]", v, inner, source) for v in value]
        return tuple(items) if isinstance(default, tuple) else items
    raise wrong


def load_config(path: str | Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig().validate()
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"config file {path} is not valid JSON: {exc.msg} (line {exc.lineno})"
        ) from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a JSON object")
    return TrainConfig.from_dict(values, source=str(path))
