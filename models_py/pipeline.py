"""Everything between the warehouse and the model's inputs, done the same way for
training, evaluation and ablation: spec, readiness checks, read, split, encode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models_py.config import TrainConfig
from models_py.data import (
    Encoded,
    Encoders,
    FeatureFrame,
    Split,
    encode,
    fit_encoders,
    read_features,
    time_split,
)
from models_py.registry import FeatureSpec, check_features_ready, load_spec
from models_py.warehouse import Warehouse, load_warehouse
from seeds_gen.paths import data_dir


@dataclass
class Prepared:
    warehouse: Warehouse
    spec: FeatureSpec  # after drop_groups
    frame: FeatureFrame  # every row of the table
    split: Split
    train_rows: np.ndarray  # split.train after negative downsampling
    encoders: Encoders
    train: Encoded
    validation: Encoded
    test: Encoded


def load_checked_spec(target: str | None = None) -> tuple[Warehouse, FeatureSpec, str]:
    warehouse = load_warehouse(target)
    spec = load_spec()
    build_id = check_features_ready(warehouse, spec)
    return warehouse, spec, build_id


def downsample_negatives(
    rows: np.ndarray, labels: np.ndarray, rate: float, seed: int
) -> np.ndarray:
    """Keep every positive and each negative with probability ``rate`` (seeded)."""
    if rate >= 1:
        return rows
    keep = np.random.default_rng(seed).random(len(rows)) < rate
    return rows[(labels[rows] == 1) | keep]


def prepare(
    config: TrainConfig,
    target: str | None = None,
    encoders: Encoders | None = None,
    spec: FeatureSpec | None = None,
) -> Prepared:
    """Read and encode. ``encoders``/``spec`` from a checkpoint reproduce its inputs."""
    warehouse, full_spec, build_id = load_checked_spec(target)
    if spec is None:
        spec = full_spec.without_groups(config.drop_groups)
    frame = read_features(warehouse, full_spec, build_id, data_dir() / "cache")
    split = time_split(frame.columns[spec.time_column], tuple(config.split_fractions))
    labels = frame.columns[spec.label_column]
    train_rows = downsample_negatives(split.train, labels, config.negative_rate, config.seed)
    return with_inputs(warehouse, spec, frame, split, train_rows, config, encoders)


def with_inputs(
    warehouse: Warehouse,
    spec: FeatureSpec,
    frame: FeatureFrame,
    split: Split,
    train_rows: np.ndarray,
    config: TrainConfig,
    encoders: Encoders | None = None,
) -> Prepared:
    """Encode the three splits for ``spec``, fitting encoders on train unless given."""
    if encoders is None:
        encoders = fit_encoders(frame, spec, split.train, config.min_count, config.numeric_buckets)

    def encoded(rows: np.ndarray) -> Encoded:
        part = frame.take(rows)
        return encode(part.columns, spec, encoders, part.columns[spec.label_column])

    return Prepared(
        warehouse,
        spec,
        frame,
        split,
        train_rows,
        encoders,
        encoded(train_rows),
        encoded(split.validation),
        encoded(split.test),
    )
