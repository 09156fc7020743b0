"""Everything between the warehouse and the model's inputs, done the same way for
training, evaluation and ablation: spec, readiness checks, read, split, encode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models_py.config import TrainConfig
from models_py.data import (
    Encoded,
    Encoders,
    FeatureFrame,
    Frame,
    Split,
    encode,
    time_split,
)
from models_py.registry import (
    FeatureSpec,
    build_vars,
    category_slots,
    check_features_ready,
    load_spec,
)
from models_py.store import open_store
from models_py.stream import StoreFrame, StreamedBatches, fit_encoders
from models_py.warehouse import Warehouse
from models_py.workspace import Workspace
from recsys_core.errors import UserError


@dataclass(frozen=True)
class FeatureBuild:
    """Which dbt build of the feature table a run reads, and what decides its values."""

    build_id: str  # the dbt invocation that built the feature table (feature_builds)
    feature_vars: dict[str, Any] | None  # that build's dbt vars (None: logged before them)
    category_slots: list[str] | None  # the categories of the history slots, in slot order

    def record(self) -> dict[str, Any]:
        """The build as a run's checkpoints and config.json record it (read back by
        models_py.checkpoint.Restored)."""
        return {
            "feature_build": self.build_id,
            "feature_vars": self.feature_vars,
            "category_slots": self.category_slots,
        }


@dataclass
class Prepared:
    config: TrainConfig  # with its automatic values resolved for this data (for_rows)
    warehouse: Warehouse
    spec: FeatureSpec  # after drop_groups
    frame: Frame  # every row of the table (on disk when streaming)
    split: Split
    train_rows: np.ndarray  # split.train after negative downsampling
    encoders: Encoders
    train: Encoded | None  # None when streaming: batches come from ``stream``
    validation: Encoded
    test: Encoded
    stream: StreamedBatches | None  # the training batches when streaming
    train_label_rate: float  # click rate of train_rows: where the model's output starts
    build: FeatureBuild  # which build of the feature table these rows come from

    def encode_rows(self, rows: np.ndarray) -> Encoded:
        """``rows`` of the table encoded for ``spec`` (read from disk when streaming)."""
        part = self.frame.take(rows)
        return encode(part.columns, self.spec, self.encoders, part.columns[self.spec.label_column])


def load_checked_spec(workspace: Workspace) -> tuple[FeatureSpec, str]:
    """The feature spec and the build id of the table, once the build is checked."""
    spec = load_spec(workspace.manifest_path)
    build_id = check_features_ready(workspace.warehouse, spec, workspace.manifest_path)
    return spec, build_id


def downsample_negatives(
    rows: np.ndarray, labels: np.ndarray, rate: float, seed: int
) -> np.ndarray:
    """Keep every positive and each negative with probability ``rate`` (seeded)."""
    if rate >= 1:
        return rows
    keep = np.random.default_rng(seed).random(len(rows)) < rate
    return rows[(labels[rows] == 1) | keep]


def check_learnable(labels: np.ndarray, rows: np.ndarray) -> float:
    """The click rate of the training rows; refuse one-class training data."""
    if len(rows) == 0:
        raise UserError("the training split is empty: nothing to learn from")
    rate = float(np.mean(labels[rows]))
    if rate in (0.0, 1.0):
        kind = "no clicks" if rate == 0.0 else "only clicks"
        raise UserError(
            f"the training split ({len(rows):,} rows) has {kind}: a click model needs "
            f"both labels; check the data's clicked column, or its size"
        )
    return rate


def check_same_build(run_build: str | None, data: Prepared, run: str) -> None:
    """Refuse to evaluate or resume a run on features other than those it was trained on."""
    if run_build and run_build != data.build.build_id:
        raise UserError(
            f"{run} was trained on feature build {run_build}, but the warehouse now holds "
            f"build {data.build.build_id}: train a new run on these features"
        )


def prepare(
    config: TrainConfig,
    workspace: Workspace,
    encoders: Encoders | None = None,
    spec: FeatureSpec | None = None,
    streaming: bool | None = None,
) -> Prepared:
    """Read and encode. ``encoders``/``spec`` from a checkpoint reproduce its inputs.

    ``streaming`` (default: from the config and the table's size) keeps the
    training split on disk and streams it in shuffled blocks (models_py.stream).
    """
    warehouse = workspace.warehouse
    full_spec, build_id = load_checked_spec(workspace)
    build = FeatureBuild(
        build_id, build_vars(warehouse, full_spec.table, build_id), category_slots(warehouse)
    )
    if spec is None:
        spec = full_spec.without_groups(config.drop_groups)
    store = open_store(warehouse, full_spec, build_id, workspace.cache_dir)
    if streaming is None:
        streaming = config.streaming == "on" or (
            config.streaming == "auto" and store.rows > config.stream_above_rows
        )
    split = time_split(store.read(spec.time_column), tuple(config.split_fractions))
    labels = store.read(spec.label_column)
    train_rows = downsample_negatives(split.train, labels, config.negative_rate, config.seed)
    rate = check_learnable(labels, train_rows)  # refused before any fitting
    del labels
    if encoders is None:
        encoders = fit_encoders(
            store, spec, split.train, config.min_count, config.numeric_buckets, config.seed
        )
    if not streaming:
        frame = FeatureFrame.from_store(store, full_spec.columns())
        return with_inputs(warehouse, spec, frame, split, train_rows, config, build, encoders)

    config = config.for_rows(len(train_rows))
    disk = StoreFrame(store, full_spec.columns())

    def encoded(rows: np.ndarray) -> Encoded:
        part = disk.take(rows)
        return encode(part.columns, spec, encoders, part.columns[spec.label_column])

    batches = StreamedBatches(store, spec, encoders, train_rows, config.batch_size, config.seed)
    return Prepared(
        config,
        warehouse,
        spec,
        disk,
        split,
        train_rows,
        encoders,
        None,
        encoded(split.validation),
        encoded(split.test),
        batches,
        rate,
        build,
    )


def sample_rows(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of ``rows`` drawn at random (all of them when fewer, or when
    ``size`` is 0), in storage order, so that reading them stays sequential."""
    if not size or len(rows) <= size:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=size, replace=False))


def with_inputs(
    warehouse: Warehouse,
    spec: FeatureSpec,
    frame: Frame,
    split: Split,
    train_rows: np.ndarray,
    config: TrainConfig,
    build: FeatureBuild,
    encoders: Encoders,
) -> Prepared:
    """Encode the three splits for ``spec`` in memory with ``encoders`` (fitted on
    the training split; entries for features outside ``spec`` are not used)."""
    rate = check_learnable(frame.column(spec.label_column), train_rows)
    config = config.for_rows(len(train_rows))

    def encoded(rows: np.ndarray) -> Encoded:
        part = frame.take(rows)
        return encode(part.columns, spec, encoders, part.columns[spec.label_column])

    return Prepared(
        config,
        warehouse,
        spec,
        frame,
        split,
        train_rows,
        encoders,
        encoded(train_rows),
        encoded(split.validation),
        encoded(split.test),
        None,
        rate,
        build,
    )
