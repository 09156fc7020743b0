"""The on-disk column cache of a feature table build, written and read in chunks.

The first read of a dbt build streams the table out of the warehouse in id
order, ``READ_CHUNK_ROWS`` rows at a time, into one flat binary file per
column: categoricals as int32 codes (their values in ``columns.json``, -1 for
NULL), numerics as float64 (a large SQLite table in one id range per core, by
parallel processes, joined after). Memory holds one chunk per reading process,
then one column of one range while joining, whatever the table's size.
Later reads take any row range of any column with a plain file read (no
memory map, whose touched pages would count as resident), so both the
in-memory path and the streaming path (models_py.stream) read from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models_py.registry import FeatureSpec
from models_py.warehouse import Warehouse, quote_identifier
from recsys_core.errors import UserError

READ_CHUNK_ROWS = 100_000
# SQLite tables of at least this many rows are read by one process per core
PARALLEL_READ_ROWS = 200_000
READ_PROCESSES = min(os.cpu_count() or 1, 4)
INDEX = "columns.json"


@dataclass
class ColumnStore:
    """A finished cache: ``rows`` rows of the named columns, in id order.

    Every column file is opened once, when the store is opened, and read through
    that descriptor: a newer build that deletes this build's folder (or another
    process that rebuilds it) cannot take the data from under a running reader,
    because an open file outlives its name (POSIX)."""

    folder: Path
    rows: int
    kinds: dict[str, str]  # name -> categorical | numeric
    values: dict[str, list[Any]]  # categorical name -> value of each code
    descriptors: dict[str, int] = field(default_factory=dict, repr=False)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of a column: values (object, None for NULL) for
        categoricals, float64 for numerics."""
        if self.kinds[name] == "categorical":
            lookup = np.array(self.values[name] + [None], dtype=object)
            return lookup[self.codes(name, start, stop)]  # code -1 -> None
        return self._raw(name, np.float64, start, stop)

    def codes(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._raw(name, np.int32, start, stop)

    def _raw(self, name: str, dtype: Any, start: int, stop: int | None) -> np.ndarray:
        stop = self.rows if stop is None else min(stop, self.rows)
        out = np.empty(max(0, stop - start), dtype=dtype)
        buffer = memoryview(out).cast("B")
        offset, done = start * out.itemsize, 0
        while done < len(buffer):  # pread may return less than asked for
            got = os.preadv(self.descriptors[name], [buffer[done:]], offset + done)
            if got == 0:
                raise UserError(f"feature cache {self.folder / name}.bin is truncated: delete it")
            done += got
        return out

    def chunks(self, size: int) -> Iterator[tuple[int, int]]:
        for start in range(0, self.rows, size):
            yield start, min(start + size, self.rows)


def open_store(
    warehouse: Warehouse, spec: FeatureSpec, build_id: str, cache_root: Path
) -> ColumnStore:
    """The cache of this build, built from the warehouse first when missing."""
    names = spec.columns()
    folder = cache_root / spec.table / build_id
    store = _load(folder, names)
    if store is None:
        _build(warehouse, spec, folder)
        store = _load(folder, names)
    if store is None:  # a newer build's cache replaced it while we built it
        raise UserError(f"the feature cache {folder} was replaced by a newer build: run again")
    return store


def _load(folder: Path, names: list[str]) -> ColumnStore | None:
    index_file = folder / INDEX
    try:
        index = json.loads(index_file.read_text())
    except FileNotFoundError:
        return None
    columns = index.get("columns", {})
    if index.get("format") != 2 or any(n not in columns for n in names):
        return None
    kinds = {n: columns[n]["kind"] for n in columns}
    values = {n: columns[n]["values"] for n in columns if columns[n]["kind"] == "categorical"}
    descriptors: dict[str, int] = {}
    try:
        for name in columns:
            descriptors[name] = os.open(folder / f"{name}.bin", os.O_RDONLY)
    except FileNotFoundError:  # replaced between reading the index and opening
        _close(descriptors)
        return None
    store = ColumnStore(folder, int(index["rows"]), kinds, values, descriptors)
    weakref.finalize(store, _close, descriptors)
    return store


def _close(descriptors: dict[str, int]) -> None:
    for fd in descriptors.values():
        os.close(fd)
    descriptors.clear()


def _build(warehouse: Warehouse, spec: FeatureSpec, folder: Path) -> None:
    """Stream the table into a temporary folder, then rename it into place."""
    names = spec.columns()
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        ranges = _id_ranges(warehouse, spec)
        if len(ranges) == 1:
            rows, values = _write_part(warehouse, spec, tmp, ranges[0])
        else:
            # spawn: the parent may hold threads (torch, BLAS) that fork would copy
            with ProcessPoolExecutor(len(ranges), mp_context=get_context("spawn")) as pool:
                parts = [tmp / f"part-{k}" for k in range(len(ranges))]
                written = list(
                    pool.map(_write_part, repeat(warehouse), repeat(spec), parts, ranges)
                )
            rows, values = _concatenate(tmp, names, parts, written)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = {
        "format": 2,
        "rows": rows,
        "columns": {
            n: {"kind": "categorical", "values": values[n]} if n in values else {"kind": "numeric"}
            for n in names
        },
    }
    (tmp / INDEX).write_text(json.dumps(index, default=_plain))
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)
    for stale in folder.parent.iterdir():  # caches of older builds of this table
        if stale != tmp and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, folder)


IdRange = tuple[int, int | None] | None  # ids >= low and < high (None: no bound)


def _id_ranges(warehouse: Warehouse, spec: FeatureSpec) -> list[IdRange]:
    """How to split the read: one part per core for a large SQLite table, by
    ranges of the id, so that the parts follow each other in id order. The
    sqlite3 module turns every value into a Python object while holding the
    GIL, so only processes read in parallel (1M rows: docs/experiments.md);
    DuckDB and small tables are read in one part."""
    workers = READ_PROCESSES
    if warehouse.engine != "sqlite" or workers < 2:
        return [None]
    conn = warehouse.connect()
    try:
        rows, low, high = conn.execute(
            f"select count(*), min({quote_identifier(spec.id_column)}), "
            f"max({quote_identifier(spec.id_column)}) from {warehouse.qualified(spec.table)}"
        ).fetchone()
    finally:
        conn.close()
    if rows < PARALLEL_READ_ROWS or not isinstance(low, int) or not isinstance(high, int):
        return [None]
    bounds = [low + (high - low + 1) * k // workers for k in range(workers + 1)]
    return [(a, b if k < workers - 1 else None) for k, (a, b) in enumerate(pairwise(bounds))]


def _write_part(
    warehouse: Warehouse, spec: FeatureSpec, folder: Path, ids: IdRange
) -> tuple[int, dict[str, list[Any]]]:
    """The rows in ``ids`` (all when None), in id order, into ``folder``: one file
    per column, categoricals as codes numbered in order of first appearance.
    Returns the row count and each categorical's values in code order."""
    names = spec.columns()
    categorical = {f.name for f in spec.categorical}
    folder.mkdir(parents=True, exist_ok=True)
    codes: dict[str, dict[Any, int]] = {n: {} for n in names if n in categorical}
    files = {n: open(folder / f"{n}.bin", "wb") for n in names}  # noqa: SIM115 - closed below
    rows = 0
    try:
        for chunk in _chunks(warehouse, spec, names, ids):
            for name in names:
                values = chunk[name]
                if name in categorical:
                    out = _encode_codes(values, codes[name])
                else:
                    out = _as_float(values, name)
                files[name].write(np.ascontiguousarray(out).tobytes())
            rows += len(chunk[names[0]])
    finally:
        for handle in files.values():
            handle.close()
    return rows, {n: list(dictionary) for n, dictionary in codes.items()}


def _concatenate(
    folder: Path,
    names: list[str],
    parts: list[Path],
    written: list[tuple[int, dict[str, list[Any]]]],
) -> tuple[int, dict[str, list[Any]]]:
    """Join the parts' files in order into ``folder``, renumbering each part's
    codes into one numbering by first appearance: the files a one-part read
    writes, byte for byte."""
    merged: dict[str, dict[Any, int]] = {n: {} for n in written[0][1]}
    for name in names:
        with open(folder / f"{name}.bin", "wb") as out:
            for part, (_, values) in zip(parts, written, strict=True):
                data = (part / f"{name}.bin").read_bytes()
                if name in merged:
                    dictionary = merged[name]
                    recode = np.array(
                        [dictionary.setdefault(v, len(dictionary)) for v in values[name]] + [-1],
                        dtype=np.int32,
                    )
                    data = recode[np.frombuffer(data, dtype=np.int32)].tobytes()
                out.write(data)
    for part in parts:
        shutil.rmtree(part)
    return sum(rows for rows, _ in written), {n: list(d) for n, d in merged.items()}


def _chunks(
    warehouse: Warehouse, spec: FeatureSpec, names: list[str], ids: IdRange = None
) -> Iterator[dict]:
    """The table (the rows in ``ids``) in id order, one dict of column values per
    chunk. One canonical order makes splits, batches and results the same
    whichever engine built it.

    Each engine hands over columns its own fastest way: DuckDB as Arrow record
    batches (typed, column-wise, no pandas), SQLite as rows turned into columns
    by one ``zip`` (Python objects are unavoidable through the sqlite3 module; a
    loop per column is not)."""
    select = ", ".join(quote_identifier(n) for n in names)
    id_column = quote_identifier(spec.id_column)
    where = ""
    if ids is not None:
        low, high = ids
        where = f" where {id_column} >= {int(low)}"
        where += "" if high is None else f" and {id_column} < {int(high)}"
    sql = f"select {select} from {warehouse.qualified(spec.table)}{where} order by {id_column}"
    conn = warehouse.connect()
    try:
        cursor = conn.execute(sql)
        if warehouse.engine == "duckdb":
            for batch in cursor.fetch_record_batch(READ_CHUNK_ROWS):
                yield dict(zip(names, batch.columns, strict=True))
            return
        while rows := cursor.fetchmany(READ_CHUNK_ROWS):
            yield dict(zip(names, zip(*rows, strict=True), strict=True))
    finally:
        conn.close()


def _normal_value(value: Any) -> Any:
    """One category value as str or int (engines differ: 7, 7.0, np.int64(7))."""
    if isinstance(value, int | np.integer) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return str(value)


def _encode_codes(values: Sequence[Any] | pa.Array, dictionary: dict[Any, int]) -> np.ndarray:
    """Global int32 codes for a chunk (-1 for NULL), growing ``dictionary`` as new
    values appear. Only the chunk's distinct values go through Python. A typed
    column is factorised as it is; Python values stay objects (as floats, large
    integer ids would lose digits)."""
    if isinstance(values, pa.Array):  # numbered by first appearance, as factorize does
        encoded = values.dictionary_encode()
        local = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        uniques = encoded.dictionary.to_pylist()
    else:
        values = pd.Series(values, dtype=object)
        local, found = pd.factorize(values, use_na_sentinel=True)
        uniques = found.tolist()
    mapping = np.empty(len(uniques) + 1, dtype=np.int32)
    mapping[-1] = -1  # local -1 (NULL) indexes the last slot
    for i, value in enumerate(uniques):
        key = _normal_value(value)
        code = dictionary.get(key)
        if code is None:
            code = dictionary[key] = len(dictionary)
        mapping[i] = code
    return mapping[local]


def _as_float(values: Sequence[Any] | pa.Array, name: str) -> np.ndarray:
    """float64, NULL as NaN; numbers stored as text are parsed, other text refused."""
    try:
        if isinstance(values, pa.Array):  # unsafe: ids beyond 2**53 round, as NumPy's do
            cast = pc.cast(values, pa.float64(), safe=False)
            return cast.to_numpy(zero_copy_only=False)  # NULL -> NaN
        return np.asarray(values, dtype=np.float64)  # None -> NaN
    except (ValueError, TypeError, NotImplementedError):
        raise UserError(
            f"feature column {name!r} holds non-numeric values but the dbt YAML "
            f"says numeric: fix the model or its meta.type"
        ) from None


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, np.integer) else value
