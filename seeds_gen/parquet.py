"""Copy the raw tables of raw.db to Parquet, for engines that read files (Spark).

Every column is written as text, NULLs kept, like DuckDB's all-varchar view of
raw.db: bad values must reach the staging quarantine, not fail the load. Each
table goes to ``<data dir>/raw_parquet/<table>/part-0.parquet`` through a
temporary folder renamed into place, so a failed export leaves the last one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys_core.errors import UserError

TABLES = ("users", "items", "interactions")
BATCH_ROWS = 200_000


def export_parquet(raw_db: Path, folder: Path) -> dict[str, int]:
    """Write each raw table as Parquet under ``folder``; rows written per table."""
    if not raw_db.exists():
        raise UserError(f"{raw_db} not found: run `make data` first")
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{raw_db}?mode=ro", uri=True) as conn:
        return {table: _export_table(conn, raw_db, table, folder) for table in TABLES}


def _export_table(conn: sqlite3.Connection, raw_db: Path, table: str, folder: Path) -> int:
    columns = [r[1] for r in conn.execute(f'pragma table_info("{table}")')]
    if not columns:
        raise UserError(f"{raw_db} has no table {table!r}")
    schema = pa.schema([(c, pa.string()) for c in columns])
    tmp = folder / f".{table}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    names = ", ".join(f'cast("{c}" as text)' for c in columns)
    cursor = conn.execute(f'select {names} from "{table}"')
    rows = 0
    try:
        with pq.ParquetWriter(tmp / "part-0.parquet", schema) as writer:
            while batch := cursor.fetchmany(BATCH_ROWS):
                arrays = [pa.array(list(c), pa.string()) for c in zip(*batch, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows += len(batch)
        final, old = folder / table, folder / f".{table}.old-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows
