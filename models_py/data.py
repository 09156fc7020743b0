"""From the feature table to tensors: read (with a cache keyed on the dbt build),
split by time, fit encoders on the training split only, encode.

Reading SQLite row by row runs at ~150-250k rows/s here, so the first read of
a build stores each column as a typed ``.npy`` file (categoricals as codes plus
their values in JSON); later reads of the same build memory-map them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models_py.registry import FeatureSpec
from models_py.warehouse import Warehouse, quote_identifier
from seeds_gen.errors import UserError

READ_CHUNK_ROWS = 100_000


@dataclass
class FeatureFrame:
    """Columns of the feature table as arrays: numerics float64, categoricals object/int."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def take(self, index: np.ndarray) -> FeatureFrame:
        return FeatureFrame({k: v[index] for k, v in self.columns.items()})


def read_features(
    warehouse: Warehouse, spec: FeatureSpec, build_id: str, cache_root: Path | None
) -> FeatureFrame:
    """All columns the spec names, from the cache of this build when present."""
    names = spec.columns()
    categorical = {f.name for f in spec.categorical}
    cache = None
    if cache_root is not None:
        cache = cache_root / spec.table / build_id
        frame = _load_cache(cache, names)
        if frame is not None:
            return frame
    frame = _read_table(warehouse, spec.table, names, categorical)
    # Engines return rows in their own order; one canonical order (by id) makes
    # splits, batches and results the same whichever engine built the table.
    frame = frame.take(np.argsort(frame.columns[spec.id_column], kind="stable"))
    if cache is not None:
        _write_cache(cache, frame, categorical)
    return frame


def _read_table(
    warehouse: Warehouse, table: str, names: list[str], categorical: set[str]
) -> FeatureFrame:
    select = ", ".join(quote_identifier(n) for n in names)
    sql = f"select {select} from {warehouse.qualified(table)}"
    conn = warehouse.connect()
    try:
        if warehouse.kind == "duckdb":
            raw = conn.execute(sql).fetchnumpy()  # masked arrays carry NULLs
            return FeatureFrame(_typed({n: raw[n] for n in names}, categorical))
        # SQLite hands out Python rows: convert them chunk by chunk, so memory holds
        # one chunk of row objects at a time, not the whole table.
        cursor = conn.execute(sql)
        chunks: list[dict[str, np.ndarray]] = []
        while rows := cursor.fetchmany(READ_CHUNK_ROWS):
            columns = {n: np.array([r[i] for r in rows], dtype=object) for i, n in enumerate(names)}
            chunks.append(_typed(columns, categorical))
    finally:
        conn.close()
    if not chunks:
        empty = {n: np.array([], dtype=object if n in categorical else np.float64) for n in names}
        return FeatureFrame(empty)
    return FeatureFrame({n: np.concatenate([c[n] for c in chunks]) for n in names})


def _typed(columns: dict[str, np.ndarray], categorical: set[str]) -> dict[str, np.ndarray]:
    return {
        name: _as_category_values(values) if name in categorical else _as_float(values, name)
        for name, values in columns.items()
    }


def _as_float(values: np.ndarray, name: str) -> np.ndarray:
    if hasattr(values, "mask"):  # duckdb returns masked arrays for NULLs
        values = np.ma.filled(values.astype(np.float64), np.nan)
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype=np.float64)
    except (ValueError, TypeError):
        raise UserError(
            f"feature column {name!r} holds non-numeric values but the dbt YAML "
            f"says numeric: fix the model or its meta.type"
        ) from None


def _as_category_values(values: np.ndarray) -> np.ndarray:
    """Category values as an object array of str/int with None for NULL."""
    if hasattr(values, "mask"):
        values = np.ma.filled(values.astype(object), None)
    values = np.asarray(values, dtype=object)
    if len(values) and all(isinstance(v, int | np.integer) or v is None for v in values[:1000]):
        return np.array([None if v is None else int(v) for v in values], dtype=object)
    return np.array([None if v is None else str(v) for v in values], dtype=object)


def _load_cache(cache: Path, names: list[str]) -> FeatureFrame | None:
    index_file = cache / "columns.json"
    if not index_file.exists():
        return None
    index = json.loads(index_file.read_text())
    if any(n not in index for n in names):
        return None
    columns: dict[str, np.ndarray] = {}
    for name in names:
        entry = index[name]
        data = np.load(cache / f"{name}.npy", mmap_mode="r")
        if entry["kind"] == "categorical":
            values = np.array(entry["values"] + [None], dtype=object)
            columns[name] = values[np.asarray(data)]  # code -1 -> None
        else:
            columns[name] = np.asarray(data)
    return FeatureFrame(columns)


def _write_cache(cache: Path, frame: FeatureFrame, categorical: set[str]) -> None:
    """Write the cache to a temporary folder, then rename: readers never see half of it."""
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index: dict[str, Any] = {}
    for name, values in frame.columns.items():
        if name in categorical:
            codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
            np.save(tmp / f"{name}.npy", codes.astype(np.int32))
            index[name] = {"kind": "categorical", "values": [_plain(u) for u in uniques]}
        else:
            np.save(tmp / f"{name}.npy", values)
            index[name] = {"kind": "numeric"}
    (tmp / "columns.json").write_text(json.dumps(index))
    with contextlib.suppress(OSError):
        shutil.rmtree(cache)
    for stale in cache.parent.iterdir():  # caches of older builds of this table
        if stale != tmp and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, cache)


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, np.integer) else value


# ---------------------------------------------------------------------------
# Splitting


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def time_split(event_ts: np.ndarray, fractions: tuple[float, float, float]) -> Split:
    """First/next/last shares of time. Rows at a boundary second go to the later split,
    so no split holds a row later than any row of the split after it."""
    n = len(event_ts)
    if n < 3:
        raise UserError(f"the feature table has {n} rows: too few to split")
    order = np.argsort(event_ts, kind="stable")
    ordered = event_ts[order]
    cut1 = ordered[min(int(n * fractions[0]), n - 1)]
    cut2 = ordered[min(int(n * (fractions[0] + fractions[1])), n - 1)]
    split = Split(
        order[ordered < cut1], order[(ordered >= cut1) & (ordered < cut2)], order[ordered >= cut2]
    )
    for name in ("train", "validation", "test"):
        if len(getattr(split, name)) == 0:
            raise UserError(
                f"the {name} split is empty: the data span too few distinct "
                f"seconds for split_fractions {list(fractions)}"
            )
    return split


# ---------------------------------------------------------------------------
# Encoding


@dataclass
class Encoders:
    """Everything fitted on the training split; stored in checkpoints to score later."""

    vocabularies: dict[str, list[Any]]  # categorical -> values; index = position + 1
    numeric_stats: dict[str, tuple[float, float]]  # numeric -> (mean, std) after transform
    bucket_edges: dict[str, list[float]]  # numeric -> quantile edges (empty when off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocabularies": self.vocabularies,
            "numeric_stats": {k: list(v) for k, v in self.numeric_stats.items()},
            "bucket_edges": self.bucket_edges,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Encoders:
        return cls(
            values["vocabularies"],
            {k: (float(v[0]), float(v[1])) for k, v in values["numeric_stats"].items()},
            values["bucket_edges"],
        )

    def cardinality(self, name: str) -> int:
        return len(self.vocabularies[name]) + 1  # + the unseen slot 0


def _transformed(values: np.ndarray, transform: str | None) -> np.ndarray:
    values = values.astype(np.float64)
    if transform == "log1p":
        return np.sign(values) * np.log1p(np.abs(values))
    return values


def fit_encoders(
    frame: FeatureFrame, spec: FeatureSpec, train: np.ndarray, min_count: int, numeric_buckets: int
) -> Encoders:
    vocabularies: dict[str, list[Any]] = {}
    for feature in spec.categorical:
        counts = pd.Series(frame.columns[feature.name][train], dtype=object).value_counts()
        kept = counts[counts >= min_count].index.tolist()
        vocabularies[feature.name] = sorted(kept, key=lambda v: (str(type(v)), v))
    stats: dict[str, tuple[float, float]] = {}
    edges: dict[str, list[float]] = {}
    for feature in spec.numeric:
        values = _transformed(frame.columns[feature.name][train], feature.transform)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if len(finite) else 0.0
        std = float(finite.std()) if len(finite) else 1.0
        stats[feature.name] = (mean, std if std > 1e-12 else 1.0)
        if numeric_buckets and len(finite):
            qs = np.quantile(finite, np.linspace(0, 1, numeric_buckets + 1)[1:-1])
            edges[feature.name] = np.unique(qs).tolist()
        else:
            edges[feature.name] = []
    return Encoders(vocabularies, stats, edges)


@dataclass
class Encoded:
    """Model inputs: categorical indices (incl. numeric buckets), numerics, labels."""

    categorical: torch.Tensor  # int64 [n, n_categorical + n_bucketed]
    numeric: torch.Tensor  # float32 [n, n_numeric + n_nullable]
    label: torch.Tensor  # float32 [n]

    def __len__(self) -> int:
        return len(self.label)

    def to(self, device: torch.device) -> Encoded:
        return Encoded(self.categorical.to(device), self.numeric.to(device), self.label.to(device))


def categorical_slots(spec: FeatureSpec, encoders: Encoders) -> list[tuple[str, int]]:
    """(name, cardinality) of every embedded input: categoricals, then numeric buckets."""
    slots = [(f.name, encoders.cardinality(f.name)) for f in spec.categorical]
    slots += [
        (f"{f.name}__bucket", len(encoders.bucket_edges[f.name]) + 2)
        for f in spec.numeric
        if encoders.bucket_edges.get(f.name)
    ]
    return slots


def numeric_width(spec: FeatureSpec) -> int:
    return len(spec.numeric) + sum(f.nullable for f in spec.numeric)


def encode_category(values: np.ndarray, vocabulary: list[Any]) -> np.ndarray:
    """Index of each value in the vocabulary, + 1; unseen values and NULL map to 0."""
    index = pd.Index(vocabulary, dtype=object)
    return index.get_indexer(pd.Index(values, dtype=object)) + 1


def encode(
    columns: dict[str, np.ndarray],
    spec: FeatureSpec,
    encoders: Encoders,
    label: np.ndarray | None = None,
) -> Encoded:
    n = len(next(iter(columns.values())))
    cats: list[np.ndarray] = [
        encode_category(columns[f.name], encoders.vocabularies[f.name]) for f in spec.categorical
    ]
    nums: list[np.ndarray] = []
    missing: list[np.ndarray] = []
    for feature in spec.numeric:
        values = _transformed(
            np.asarray(columns[feature.name], dtype=np.float64), feature.transform
        )
        isnan = ~np.isfinite(values)
        mean, std = encoders.numeric_stats[feature.name]
        edges = encoders.bucket_edges.get(feature.name)
        if edges:
            # bucket 0 is "missing", buckets 1..len(edges)+1 the quantile ranges
            bucket = np.searchsorted(np.asarray(edges), values, side="right") + 1
            cats.append(np.where(isnan, 0, bucket))
        nums.append(np.where(isnan, 0.0, (values - mean) / std))
        if feature.nullable:
            missing.append(isnan.astype(np.float64))
    categorical = (
        torch.from_numpy(np.stack(cats, axis=1).astype(np.int64))
        if cats
        else torch.zeros((n, 0), dtype=torch.int64)
    )
    numeric = (
        torch.from_numpy(np.stack(nums + missing, axis=1).astype(np.float32))
        if nums
        else torch.zeros((n, 0), dtype=torch.float32)
    )
    y = (
        torch.from_numpy(np.asarray(label, dtype=np.float32))
        if label is not None
        else torch.zeros(n, dtype=torch.float32)
    )
    return Encoded(categorical, numeric, y)
