"""Load any data set from three CSV files (with a header line) into the raw tables.

Columns (names are case-sensitive; order is free):
- users.csv:        user_id (required), signup_ts (optional)
- items.csv:        item_id (required), category, created_ts (optional)
- interactions.csv: user_id, item_id, event_ts, clicked (required),
                    interaction_id (optional: the line number when absent)
Times are integer epoch seconds (UTC); clicked is 0 or 1; an empty field is
NULL. Every other column is loaded as text and becomes a model feature once
dbt_project.yml declares it under vars.datasets.csv (user_attributes,
item_attributes or context_attributes).

Users and items are lookups: a missing required column, a bad or repeated id,
or a line with the wrong number of fields stops the load with the file, line
and column. Interactions are facts: a value that is not what staging expects
is loaded as it is, counted, and left to the dbt quarantine, which rejects the
row with a reason - so nothing is lost and the rejection report says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_core.errors import UserError
from seeds_gen.delimited import read_csv, where
from seeds_gen.load import Table

CORE = {
    "users": {"user_id": True, "signup_ts": False},
    "items": {"item_id": True, "category": False, "created_ts": False},
    "interactions": {
        "interaction_id": False,
        "user_id": True,
        "item_id": True,
        "event_ts": True,
        "clicked": True,
    },
}
INTEGER_COLUMNS = {"user_id", "item_id", "signup_ts", "created_ts", "interaction_id", "event_ts"}
SHOWN_PROBLEMS = 5


@dataclass
class CsvImport:
    tables: list[Table]
    extra_columns: dict[str, list[str]]  # table -> attribute columns loaded as text
    suspect_rows: int  # interactions staging will reject (bad values)
    problems: list[str]  # the first few, "file line N column C: why"


def _check_header(path: Path, table: str, header: list[str]) -> list[str]:
    missing = [c for c, required in CORE[table].items() if required and c not in header]
    if missing:
        raise UserError(
            f"{where(path, 1)}: missing required column {missing[0]!r} "
            f"(the header has: {', '.join(header)})"
        )
    return [c for c in header if c not in CORE[table]]


def _value(text: str) -> str | None:
    text = text.strip()
    return text or None


ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")


def _integer(text: str | None) -> int | None:
    """ASCII digits only: Python's int() would also read '１', '१२' and '1_5'."""
    if text is None or not ASCII_INTEGER.fullmatch(text):
        return None
    return int(text)


def _lookup(path: Path, table: str, key: str) -> tuple[Table, list[str]]:
    """users.csv or items.csv: every id an integer, unique; other core columns typed."""
    header, rows = read_csv(path, "utf-8")
    extra = _check_header(path, table, header)
    columns = [*CORE[table], *extra]  # optional core columns absent: NULL
    data: dict[str, list[Any]] = {c: [] for c in columns}
    seen: dict[int, int] = {}
    for line, fields in rows:
        record = dict(zip(header, (_value(f) for f in fields), strict=True))
        for column in columns:
            value = record.get(column)
            if column in INTEGER_COLUMNS and value is not None:
                parsed = _integer(value)
                if parsed is None:
                    raise UserError(
                        f"{where(path, line, column)}: {value!r} is not an integer "
                        f"(times are epoch seconds)"
                    )
                value = parsed
            data[column].append(value)
        ident = data[key][-1]
        if ident is None or ident < 0:
            raise UserError(f"{where(path, line, key)}: ids must be integers >= 0")
        if ident in seen:
            raise UserError(f"{where(path, line, key)}: {ident} repeats line {seen[ident]}")
        seen[ident] = line
    types = {c: int if c in INTEGER_COLUMNS else str for c in columns}
    return Table(table, types, data, pk=key), extra


def _interactions(path: Path) -> tuple[Table, list[str], int, list[str]]:
    header, rows = read_csv(path, "utf-8")
    extra = _check_header(path, "interactions", header)
    columns = ["interaction_id", "user_id", "item_id", "event_ts", "clicked", *extra]
    data: dict[str, list[Any]] = {c: [] for c in columns}
    suspect, problems = 0, []
    for line, fields in rows:
        record = dict(zip(header, (_value(f) for f in fields), strict=True))
        if "interaction_id" not in header:
            record["interaction_id"] = str(line)
        problem = None
        for column in columns:
            value = record[column]
            if column in INTEGER_COLUMNS or column == "clicked":
                parsed = _integer(value)
                if parsed is None:
                    problem = problem or (column, "empty" if value is None else repr(value))
                elif column == "clicked" and parsed not in (0, 1):
                    problem = problem or (column, f"{parsed} (not 0 or 1)")
                value = parsed if parsed is not None else value  # bad text stays as is
            data[column].append(value)
        if problem:
            suspect += 1
            if len(problems) < SHOWN_PROBLEMS:
                problems.append(f"{where(path, line, problem[0])}: {problem[1]}")
    types = {c: int if c in INTEGER_COLUMNS or c == "clicked" else str for c in columns}
    table = Table("interactions", types, data, indexes=["interaction_id"])
    return table, extra, suspect, problems


def load_csv(users: Path, items: Path, interactions: Path) -> CsvImport:
    user_table, user_extra = _lookup(Path(users), "users", "user_id")
    item_table, item_extra = _lookup(Path(items), "items", "item_id")
    fact_table, fact_extra, suspect, problems = _interactions(Path(interactions))
    return CsvImport(
        [user_table, item_table, fact_table],
        {"users": user_extra, "items": item_extra, "interactions": fact_extra},
        suspect,
        problems,
    )
