"""Read delimited text files line by line, keeping line numbers for error messages.

Both importers (MovieLens, CSV) report problems as ``FILE line N column C: what``
so a user can open the file at the right place.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from recsys_core.errors import UserError


def where(path: Path, line: int, column: str | None = None) -> str:
    """``u.item line 7 column release_date`` - the place a message points at."""
    place = f"{path.name} line {line}"
    return f"{place} column {column}" if column else place


def read_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for each non-empty line of ``path``."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{where(path, number)}: not valid {encoding} (byte "
                    f"0x{raw[exc.start]:02x} at character {exc.start + 1}); "
                    f"re-save the file or pass its --encoding"
                ) from None
            text = text.rstrip("\r\n")
            if text.strip():
                yield number, text


def read_csv(path: Path, encoding: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, fields) for a CSV file with a header.

    Quoted fields may hold commas; a quoted field spanning lines is refused (its
    line numbers would point at the wrong place).
    """
    lines = read_lines(path, encoding)
    first = next(lines, None)
    if first is None:
        raise UserError(f"{path}: empty file (expected a header line)")
    # a UTF-8 byte-order mark (spreadsheets write one) is not part of the first name
    header = [name.strip() for name in next(csv.reader([first[1].removeprefix("\ufeff")]))]
    if any(not name for name in header):
        raise UserError(f"{where(path, first[0])}: the header has an empty column name")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise UserError(f"{where(path, first[0])}: column {name!r} appears twice")
        seen.add(name)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, text in lines:
            try:
                fields = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                raise UserError(f"{where(path, number)}: {exc}") from None
            if len(fields) != len(header):
                raise UserError(
                    f"{where(path, number)}: {len(fields)} fields, the header has {len(header)}"
                )
            yield number, fields

    return header, rows()
