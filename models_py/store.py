"""The on-disk column cache of a feature table build, written and read in chunks.

The first read of a dbt build streams the table out of the warehouse,
``READ_CHUNK_ROWS`` rows at a time, into one flat binary file per column:
categoricals as int32 codes (their values in ``columns.json``, -1 for NULL),
numerics as float64, in id order. The table is read in storage order (a large
SQLite table by one thread per rowid range, as its driver releases the GIL) and
put in id order after, when the parts are joined: sorting the ids in NumPy is
cheaper than an ``order by`` in any engine. Memory holds one chunk per reading thread,
then one column while joining, whatever the table's size.
Later reads take any row range of any column with a plain file read (no
memory map, whose touched pages would count as resident), so both the
in-memory path and the streaming path (models_py.stream) read from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sqlite3
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models_py.registry import FeatureSpec
from models_py.warehouse import Warehouse, quote_identifier
from recsys_core.errors import UserError

T = TypeVar("T")

READ_CHUNK_ROWS = 100_000
# SQLite tables of at least this many rows are read by one thread per core
PARALLEL_READ_ROWS = 200_000
READ_THREADS = min(os.cpu_count() or 1, 4)
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
        parts = _parts(warehouse, spec)
        folders = [tmp / f"part-{k}" for k in range(len(parts))]
        with ThreadPoolExecutor(len(parts)) as pool:
            written = list(pool.map(_write_part, repeat(warehouse), repeat(spec), folders, parts))
        rows, values = _join(tmp, spec, folders, written)
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


# How one thread reads its part of the table, in storage order (put in id order
# when the parts are joined): None, the whole table; a (low, high) pair, the
# SQLite rows whose rowid is >= low and < high.
Part = tuple[int, int] | None


def _parts(warehouse: Warehouse, spec: FeatureSpec) -> list[Part]:
    """How to split the read. A SQLite table is read by rowid ranges (a rowid
    range is a B-tree seek; an id range scans the table unless the id is
    indexed, and ``order by`` sorts it), one per core once it is large (the
    driver decodes rows without the GIL). DuckDB scans in parallel and hands over
    Arrow itself, in one part; so is a SQLite view (its rowids are NULL) or a
    table without rowids, and an empty table."""
    if warehouse.engine != "sqlite":
        return [None]
    conn = warehouse.connect()
    try:
        rows, low, high = conn.execute(
            f"select count(*), min(rowid), max(rowid) from {warehouse.qualified(spec.table)}"
        ).fetchone()
    except sqlite3.OperationalError:  # "no such column: rowid": a without rowid table
        return [None]
    finally:
        conn.close()
    if not isinstance(low, int) or not isinstance(high, int):
        return [None]
    workers = READ_THREADS if rows >= PARALLEL_READ_ROWS else 1
    bounds = [low + (high - low + 1) * k // workers for k in range(workers + 1)]
    return list(pairwise(bounds))


def _write_part(
    warehouse: Warehouse, spec: FeatureSpec, folder: Path, part: Part
) -> tuple[int, dict[str, list[Any]]]:
    """The rows of ``part`` into ``folder``: one file per column, categoricals as
    codes numbered in order of first appearance. Returns the row count and each
    categorical's values in code order."""
    names = spec.columns()
    categorical = {f.name for f in spec.categorical}
    folder.mkdir(parents=True, exist_ok=True)
    codes: dict[str, dict[Any, int]] = {n: {} for n in names if n in categorical}
    files = {n: open(folder / f"{n}.bin", "wb") for n in names}  # noqa: SIM115 - closed below
    rows = 0
    chunks = (
        read_ahead(lambda: _whole_table_chunks(warehouse, spec, names))
        if part is None
        else _sqlite_chunks(warehouse, spec, part)  # one thread per part already
    )
    try:
        for chunk in chunks:
            for name in names:
                values = chunk[name]
                if name in categorical:
                    out = _encode_codes(values, codes[name])
                else:
                    out = _as_float(values, name)
                files[name].write(np.ascontiguousarray(out).tobytes())
            rows += len(chunk[names[0]])
    finally:
        chunks.close()  # its connections, closed in the thread that opened them
        for handle in files.values():
            handle.close()
    return rows, {n: list(dictionary) for n, dictionary in codes.items()}


def read_ahead(open_items: Callable[[], Generator[T, None, None]]) -> Generator[T, None, None]:
    """The items of ``open_items()``, made by another thread one item ahead, in
    order. Here: the engine scans and converts the next chunk (outside the GIL)
    while this thread encodes and writes the last one (a 1M-row DuckDB read: 1.8
    to 1.3 s; SQLite's rowid parts already read in parallel, and a thread more
    each made them slower). models_py.stream encodes the next buffer of
    training rows the same way while the loop trains on the last. The other
    thread opens and closes what ``open_items`` opens (connections) itself; its
    error is raised here; closing this generator early stops it."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            with contextlib.closing(open_items()) as items:
                for item in items:
                    if not hand_over(("item", item)):
                        return
        except BaseException as exc:  # raised again in the consuming thread
            hand_over(("error", exc))
            return
        hand_over(("done", None))

    reader = threading.Thread(target=read, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join()


def _join(
    folder: Path,
    spec: FeatureSpec,
    parts: list[Path],
    written: list[tuple[int, dict[str, list[Any]]]],
) -> tuple[int, dict[str, list[Any]]]:
    """Join the parts' files in order into ``folder``, in id order, each
    categorical's codes renumbered by first appearance in that order: the files
    a one-part read in id order writes, byte for byte, whatever order the engine
    stored the rows in and however many parts read them."""
    ids = np.concatenate([np.fromfile(p / f"{spec.id_column}.bin", np.float64) for p in parts])
    order = None if (ids[1:] >= ids[:-1]).all() else np.argsort(ids, kind="stable")
    del ids
    joined: dict[str, list[Any]] = {}
    for name in spec.columns():
        target = folder / f"{name}.bin"
        if order is None and len(parts) == 1:  # already as it should be
            os.replace(parts[0] / f"{name}.bin", target)
            if name in written[0][1]:
                joined[name] = written[0][1][name]
            continue
        if name not in written[0][1]:
            data = np.concatenate([np.fromfile(p / f"{name}.bin", np.float64) for p in parts])
            (data if order is None else data[order]).tofile(target)
            continue
        dictionary: dict[Any, int] = {}  # numbered by first appearance in part order
        pieces = []
        for part, (_, values) in zip(parts, written, strict=True):
            recode = np.array(
                [dictionary.setdefault(v, len(dictionary)) for v in values[name]] + [-1],
                dtype=np.int32,
            )
            pieces.append(recode[np.fromfile(part / f"{name}.bin", np.int32)])
        codes, joined[name] = np.concatenate(pieces), list(dictionary)
        if order is not None:
            codes, joined[name] = _by_first_appearance(codes[order], joined[name])
        codes.tofile(target)
    for part in parts:
        shutil.rmtree(part)
    return sum(rows for rows, _ in written), joined


def _whole_table_chunks(
    warehouse: Warehouse, spec: FeatureSpec, names: list[str]
) -> Generator[dict, None, None]:
    """The whole table in storage order (put in id order when the parts are
    joined), one dict of column values per chunk. DuckDB hands over Arrow record
    batches (typed, column-wise, no pandas) from a parallel scan: an ``order by``
    there took 1.7 s of a 1M-row read whose scan takes 0.5 s, against 0.2 s to
    sort the ids in NumPy. A SQLite view's rows are turned into columns by one
    ``zip``."""
    table = warehouse.qualified(spec.table)
    conn = warehouse.connect()
    try:
        if warehouse.engine == "duckdb":
            select = _duckdb_select(conn, spec, table)
            for batch in conn.execute(f"select {select} from {table}").fetch_record_batch(
                READ_CHUNK_ROWS
            ):
                yield dict(zip(names, batch.columns, strict=True))
            return
        select = ", ".join(quote_identifier(n) for n in names)
        cursor = conn.execute(f"select {select} from {table}")
        while rows := cursor.fetchmany(READ_CHUNK_ROWS):
            yield dict(zip(names, zip(*rows, strict=True), strict=True))
    finally:
        conn.close()


def _duckdb_select(conn: Any, spec: FeatureSpec, table: str) -> str:
    """The spec's columns, numeric ones of a decimal type (DuckDB's ``sum`` of
    integers is a 128-bit HUGEINT where a model does not cast it, as ours do)
    cast to DOUBLE by DuckDB: as Arrow decimals they cost more to hand over than
    every other column together (1.2 s of 1.5 s for 1M rows)."""
    names = spec.columns()
    categorical = {f.name for f in spec.categorical}
    quoted = [quote_identifier(n) for n in names]
    schema = conn.execute(f"select {', '.join(quoted)} from {table} limit 0").arrow().schema
    return ", ".join(
        f"cast({q} as double) as {q}"
        if n not in categorical and pa.types.is_decimal(schema.field(n).type)
        else q
        for n, q in zip(names, quoted, strict=True)
    )


def _sqlite_chunks(
    warehouse: Warehouse, spec: FeatureSpec, part: tuple[int, int]
) -> Generator[dict, None, None]:
    """The rows of a rowid range in storage order, ``READ_CHUNK_ROWS`` rowids at
    a time, as Arrow columns through the ADBC SQLite driver: SQLite's values
    straight into typed arrays, no Python object per value (the sqlite3 module
    makes one for each, which capped reads near 80k rows/s).

    The driver types each column by the chunk's values and converts values of
    another storage class silently (an integer in a text column becomes its
    text; a real among text, six digits of it). A chunk whose numeric column did
    not come out as numbers, or whose text categorical also holds non-text
    values (flagged per row by ``typeof``), is read again through the sqlite3
    module, which keeps each value as stored."""
    import adbc_driver_sqlite.dbapi

    names = spec.columns()
    categorical = [f.name for f in spec.categorical]
    select = ", ".join(quote_identifier(n) for n in names)
    flags = " | ".join(
        f"((typeof({quote_identifier(n)}) = 'text') << {k})" for k, n in enumerate(categorical)
    )
    table = warehouse.qualified(spec.table)
    uri = f"file:{warehouse.path}?mode=ro"
    with (
        adbc_driver_sqlite.dbapi.connect(uri) as adbc,
        contextlib.closing(warehouse.connect()) as plain,
        adbc.cursor() as cursor,
    ):
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(READ_CHUNK_ROWS)})
        low, high = part
        for start in range(low, high, READ_CHUNK_ROWS):
            where = f"where rowid >= {start} and rowid < {min(start + READ_CHUNK_ROWS, high)}"
            cursor.execute(f"select {select}, {flags or 0} from {table} {where}")
            batch = cursor.fetch_arrow_table().combine_chunks()
            if batch.num_rows == 0:
                continue
            columns = dict(zip(names, (c.chunk(0) for c in batch.columns[:-1]), strict=True))
            text = batch.columns[-1].chunk(0).to_numpy(zero_copy_only=False)
            if _as_stored(columns, categorical, text):
                yield columns
            else:
                rows = plain.execute(f"select {select} from {table} {where}").fetchall()
                yield dict(zip(names, zip(*rows, strict=True), strict=True))


def _as_stored(columns: dict[str, pa.Array], categorical: list[str], text: np.ndarray) -> bool:
    """Whether the driver kept every value as SQLite stored it: numeric columns
    as numbers (or all NULL), text categoricals holding text only (bit k of
    ``text`` says the row's k-th categorical is text)."""
    for name, values in columns.items():
        kind = values.type
        if name in categorical:
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                k = categorical.index(name)
                valid = values.is_valid().to_numpy(zero_copy_only=False)
                if not ((text[valid] >> k) & 1).all():
                    return False
            elif not (
                pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
            ):
                return False
        elif not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
        ):
            return False
    return True


def _by_first_appearance(codes: np.ndarray, values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes renumbered 0, 1, ... in order of first appearance (-1, NULL, kept)."""
    in_order = pd.unique(codes)
    in_order = in_order[in_order >= 0]
    mapping = np.full(len(values) + 1, -1, dtype=np.int32)  # the last slot maps -1
    mapping[in_order] = np.arange(len(in_order), dtype=np.int32)
    return mapping[codes], [values[k] for k in in_order]


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
        # integers and text are already what _normal_value makes of them, and NumPy
        # hands them over faster than Arrow's to_pylist: the ids' tens of thousands
        # of distinct values a chunk took 0.9 s of a 1M-row read that way
        plain = pa.types.is_integer(values.type) or pa.types.is_string(values.type)
        dictionary_values = encoded.dictionary
        uniques = (
            dictionary_values.to_numpy(zero_copy_only=False).tolist()
            if plain
            else dictionary_values.to_pylist()
        )
    else:
        values = pd.Series(values, dtype=object)
        local, found = pd.factorize(values, use_na_sentinel=True)
        uniques, plain = found.tolist(), False
    keys = uniques if plain else [_normal_value(value) for value in uniques]
    mapping = np.array(
        [dictionary.setdefault(key, len(dictionary)) for key in keys] + [-1], dtype=np.int32
    )  # local -1 (NULL) indexes the last slot
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
