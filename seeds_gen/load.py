"""Write raw tables into a SQLite file atomically.

The schema is created with sqlite-utils (types, keys, indexes) and rows go in
with one-transaction ``executemany`` (~340k rows/s here, against ~27k for
``insert_all``). Everything is written to a temporary file in the target
folder and renamed over the old one at the end, so a load that fails or is
killed leaves the previous database untouched.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from recsys_core.atomic import replacing
from recsys_core.errors import UserError


@dataclass
class Table:
    """One raw table: column types in order, rows as column sequences, keys and indexes.

    ``pk`` is declared only where no staging rule depends on seeing duplicates:
    interactions carry no primary key so duplicate ids reach the quarantine.
    """

    name: str
    columns: dict[str, type]
    data: dict[str, Sequence[Any]]
    pk: str | None = None
    indexes: list[str] = field(default_factory=list)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        cols = [_as_list(self.data[c]) for c in self.columns]
        return zip(*cols, strict=True)

    def __len__(self) -> int:
        first = next(iter(self.columns))
        return len(self.data[first])


def _as_list(values: Sequence[Any]) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    return tolist() if tolist is not None else list(values)


def check_writable(folder: Path) -> None:
    """Fail early, with one line, when the data folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create data directory {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise UserError(f"data directory {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"data directory {folder} is not writable")


def write_tables_atomically(path: Path, tables: list[Table]) -> None:
    """Create ``path`` holding exactly ``tables``; the old file survives any failure."""
    path = Path(path)
    check_writable(path.parent)
    with replacing(path) as tmp:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("pragma journal_mode = off")
            conn.execute("pragma synchronous = off")
            db = sqlite_utils.Database(conn)
            for table in tables:
                _write_table(db, table)
            conn.commit()
            conn.execute("pragma synchronous = full")
        finally:
            conn.close()


def _write_table(db: sqlite_utils.Database, table: Table) -> None:
    db[table.name].create(table.columns, pk=table.pk)
    names = ", ".join(f'"{c}"' for c in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    db.conn.executemany(f'insert into "{table.name}" ({names}) values ({marks})', table.rows())
    for column in table.indexes:
        db[table.name].create_index([column], index_name=f"idx_{table.name}_{column}")
