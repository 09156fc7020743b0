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
    # then train the rest on top; adam: train it with the rest
    wide_solver: str = "lbfgs"
    # when the training split streams (too large for memory): the L-BFGS fit of the
    # wide path takes a random sample of this many training rows; 0 = train the wide
    # path with Adam beside the rest instead (docs/experiments.md)
    wide_fit_rows: int = 1_000_000
    # once validation has chosen the L2 strength and the stopping step, fit the wide
    # path (and the baselines) again on training + validation rows: validation is the
    # labelled data nearest in time to what the model scores (docs/experiments.md)
    refit: bool = True
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
        """Check every field against its rule in ``RULES`` (one line naming it)."""
        for name, rule in RULES.items():
            problem = rule.problem(getattr(self, name))
            if problem:
                raise UserError(f"{name} must be {problem}")
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


@dataclass(frozen=True)
class Range:
    """A number, or each number of a list, from ``low`` up to ``high``."""

    low: float
    high: float = math.inf
    low_open: bool = False  # low itself is refused
    high_open: bool = False
    note: str = ""  # what a special value means, e.g. "0 = auto"

    def problem(self, value: Any) -> str | None:
        values = list(value) if isinstance(value, list | tuple) else [value]
        low_ok = all(v > self.low if self.low_open else v >= self.low for v in values)
        high_ok = all(v < self.high if self.high_open else v <= self.high for v in values)
        if low_ok and high_ok:
            return None
        if math.isinf(self.high):
            bound = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            bound = (
                f"in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}"
            )
        shown = list(value) if isinstance(value, list | tuple) else value
        return f"{bound}{f' ({self.note})' if self.note else ''}, got {shown}"


@dataclass(frozen=True)
class OneOf:
    options: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if value in self.options:
            return None
        return f"one of {', '.join(self.options)}, got {value!r}"


@dataclass(frozen=True)
class Fractions:
    """Three positive shares that sum to 1 (train, validation, test)."""

    def problem(self, value: Any) -> str | None:
        if len(value) == 3 and all(f > 0 for f in value) and abs(sum(value) - 1) < 1e-6:
            return None
        return f"three positive numbers summing to 1, got {list(value)}"


@dataclass(frozen=True)
class Buckets:
    """0 (off) or at least 2: one bucket would say nothing."""

    def problem(self, value: Any) -> str | None:
        return None if value == 0 or value >= 2 else f"0 or >= 2, got {value}"


@dataclass(frozen=True)
class TypeOnly:
    """No rule beyond the type (``_coerce``): flags, and group names that are
    checked against the dbt YAML where they are used."""

    def problem(self, value: Any) -> str | None:
        return None


AT_LEAST_ONE = Range(1)
NOT_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)

# The rule of every TrainConfig field, declared once: validate() derives its
# messages from them, and a test checks that no field is missing.
RULES: dict[str, Range | OneOf | Fractions | Buckets | TypeOnly] = {
    "split_fractions": Fractions(),
    "min_count": AT_LEAST_ONE,
    "numeric_buckets": Buckets(),
    "drop_groups": TypeOnly(),
    "negative_rate": Range(0, 1, low_open=True),
    "embedding_dim": AT_LEAST_ONE,
    "hidden": AT_LEAST_ONE,
    "dropout": Range(0, 1, high_open=True),
    "interaction": OneOf(INTERACTIONS),
    "wide": OneOf(WIDE),
    "wide_solver": OneOf(WIDE_SOLVERS),
    "wide_fit_rows": NOT_NEGATIVE,
    "refit": TypeOnly(),
    "deep_ids": TypeOnly(),
    "batch_size": Range(0, note="0 = auto"),
    "lr": POSITIVE,
    "embedding_lr": POSITIVE,
    "embedding_weight_decay": NOT_NEGATIVE,
    "wide_lr": POSITIVE,
    "wide_weight_decay": NOT_NEGATIVE,
    "weight_decay": NOT_NEGATIVE,
    "epochs": AT_LEAST_ONE,
    "evals_per_epoch": AT_LEAST_ONE,
    "patience": AT_LEAST_ONE,
    "max_steps": Range(0, note="0 = no limit"),
    "seed": NOT_NEGATIVE,
    "threads": AT_LEAST_ONE,
    "device": OneOf(("auto", "cpu", "cuda")),
    "baseline_max_rows": Range(0, note="0 = all"),
    "lightgbm_max_rows": Range(0, note="0 = all"),
    "sparse_above_rows": NOT_NEGATIVE,
    "streaming": OneOf(("auto", "on", "off")),
    "stream_above_rows": NOT_NEGATIVE,
}


STEPS_PER_EPOCH = 200
MIN_BATCH, MAX_BATCH = 256, 4096


def auto_batch_size(rows: int) -> int:
    """The power of two nearest to ``rows / 200``, within 256 to 4096: small data gets
    enough optimiser steps an epoch, large data keeps large fast batches."""
    size = 2 ** round(math.log2(max(rows / STEPS_PER_EPOCH, 1)))
    return min(max(size, MIN_BATCH), MAX_BATCH)


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
