"""Import the public MovieLens-100K folder (u.data, u.user, u.item, u.genre,
u.occupation) into the raw tables.

Mapping (declared for dbt as the ``movielens`` data set in dbt_project.yml):
- interactions: one per rating line of u.data; interaction_id = its line
  number, clicked = rating >= ``min_rating``, event_ts = the timestamp. The
  rating itself is kept in raw for lineage; it is the label's source, so no
  model may read it.
- users: age band, gender, occupation, the first character of the zip code;
  signup_ts = the user's first rating (known at every later rating).
- items: release year, one 0/1 column per genre (genre_<name>, in u.genre
  order), category = the first of the item's genres (its primary genre),
  created_ts = the release date; title, video release date and IMDb URL are
  kept in raw.

u.user and u.item are lookups and must be well formed: a bad line stops the
import with its file, line and column. A malformed rating line is loaded as it
is (fields that are not integers stay text, missing ones NULL), so the dbt
quarantine rejects it with a reason and nothing is lost.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_core.errors import UserError
from seeds_gen.delimited import read_lines, where
from seeds_gen.load import Table

ENCODING = "latin-1"  # u.item holds Latin-1 titles; the other files are ASCII
AGE_BANDS = ((18, "under_18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"))
MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}


@dataclass
class Import:
    tables: list[Table]
    ratings: int
    clicks: int
    malformed: list[str]  # "u.data line N: why", for the summary


def genre_column(name: str) -> str:
    """``Children's`` -> ``genre_childrens``, ``Sci-Fi`` -> ``genre_sci_fi``."""
    slug = re.sub(r"[^0-9a-z]+", "_", name.lower().replace("'", "")).strip("_")
    return f"genre_{slug}"


def age_band(age: int) -> str:
    for upper, band in AGE_BANDS:
        if age < upper:
            return band
    return "50-55" if age < 56 else "56+"


def _int(path: Path, line: int, column: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"{where(path, line, column)}: {text!r} is not an integer") from None


def release_ts(path: Path, line: int, text: str) -> int | None:
    """``01-Jan-1995`` -> epoch seconds at UTC midnight; empty -> None."""
    text = text.strip()
    if not text:
        return None
    parts = text.split("-")
    if len(parts) != 3 or parts[1] not in MONTHS or not (parts[0] + parts[2]).isdigit():
        raise UserError(
            f"{where(path, line, 'release_date')}: {text!r} is not a date like 01-Jan-1995"
        )
    return calendar.timegm((int(parts[2]), MONTHS[parts[1]], int(parts[0]), 0, 0, 0))


def _genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    names: list[tuple[int, str]] = []
    for line, text in read_lines(path, ENCODING):
        fields = text.split("|")
        if len(fields) != 2:
            raise UserError(f"{where(path, line)}: expected 'name|index', got {text!r}")
        names.append((_int(path, line, "index", fields[1]), fields[0]))
    if sorted(i for i, _ in names) != list(range(len(names))):
        raise UserError(f"{path}: genre indexes must be 0..{len(names) - 1}")
    return [name for _, name in sorted(names)]


def _occupations(folder: Path) -> set[str]:
    return {text.strip() for _, text in read_lines(folder / "u.occupation", ENCODING)}


def _ratings(path: Path, min_rating: int) -> tuple[dict[str, list[Any]], list[str]]:
    """Every line of u.data as a raw interaction; malformed ones kept as they are."""
    columns: dict[str, list[Any]] = {
        "interaction_id": [],
        "user_id": [],
        "item_id": [],
        "event_ts": [],
        "clicked": [],
        "rating": [],
    }
    malformed: list[str] = []
    for line, text in read_lines(path, ENCODING):
        fields = text.split("\t")
        problem = None if len(fields) == 4 else f"{len(fields)} fields, expected 4"
        fields = (fields + [None] * 4)[:4]
        values: list[Any] = []
        for name, field in zip(("user_id", "item_id", "rating", "event_ts"), fields, strict=True):
            try:
                values.append(int(field) if field is not None else None)
            except ValueError:
                problem = problem or f"column {name}: {field!r} is not an integer"
                values.append(field)  # text: staging rejects it with a reason
        user, item, rating, ts = values
        if problem:
            malformed.append(f"{where(path, line)}: {problem}")
        columns["interaction_id"].append(line)
        columns["user_id"].append(user)
        columns["item_id"].append(item)
        columns["event_ts"].append(ts)
        columns["rating"].append(rating)
        columns["clicked"].append(int(rating >= min_rating) if isinstance(rating, int) else None)
    return columns, malformed


def _users(folder: Path, first_rating: dict[int, int]) -> Table:
    path = folder / "u.user"
    occupations = _occupations(folder)
    data: dict[str, list[Any]] = {
        k: [] for k in ("user_id", "signup_ts", "age_band", "gender", "occupation", "zip_prefix")
    }
    seen: dict[int, int] = {}
    for line, text in read_lines(path, ENCODING):
        fields = text.split("|")
        if len(fields) != 5:
            raise UserError(f"{where(path, line)}: {len(fields)} fields, expected 5")
        user_id = _int(path, line, "user_id", fields[0])
        if user_id in seen:
            raise UserError(
                f"{where(path, line, 'user_id')}: {user_id} repeats line {seen[user_id]}"
            )
        seen[user_id] = line
        age = _int(path, line, "age", fields[1])
        if fields[2] not in ("M", "F"):
            raise UserError(f"{where(path, line, 'gender')}: {fields[2]!r} is not M or F")
        if fields[3] not in occupations:
            raise UserError(
                f"{where(path, line, 'occupation')}: {fields[3]!r} is not listed in u.occupation"
            )
        data["user_id"].append(user_id)
        data["signup_ts"].append(first_rating.get(user_id))
        data["age_band"].append(age_band(age))
        data["gender"].append(fields[2])
        data["occupation"].append(fields[3])
        data["zip_prefix"].append(fields[4].strip()[:1].upper() or None)
    types = {"user_id": int, "signup_ts": int, **{k: str for k in list(data)[2:]}}
    return Table("users", types, data, pk="user_id")


def _items(folder: Path, genres: list[str]) -> Table:
    path = folder / "u.item"
    genre_columns = [genre_column(g) for g in genres]
    base = ["item_id", "title", "created_ts", "release_year", "category", "video_release_date"]
    data: dict[str, list[Any]] = {k: [] for k in [*base, "imdb_url", *genre_columns]}
    seen: dict[int, int] = {}
    for line, text in read_lines(path, ENCODING):
        fields = text.split("|")
        if len(fields) != 5 + len(genres):
            raise UserError(
                f"{where(path, line)}: {len(fields)} fields, expected {5 + len(genres)} "
                f"(5 + one flag per genre of u.genre)"
            )
        item_id = _int(path, line, "movie_id", fields[0])
        if item_id in seen:
            raise UserError(
                f"{where(path, line, 'movie_id')}: {item_id} repeats line {seen[item_id]}"
            )
        seen[item_id] = line
        flags = []
        for genre, flag in zip(genre_columns, fields[5:], strict=True):
            if flag not in ("0", "1"):
                raise UserError(f"{where(path, line, genre)}: {flag!r} is not 0 or 1")
            flags.append(int(flag))
        created = release_ts(path, line, fields[2])
        primary = next((g for g, f in zip(genres, flags, strict=True) if f), "unknown")
        data["item_id"].append(item_id)
        data["title"].append(fields[1])
        data["created_ts"].append(created)
        data["release_year"].append(time.gmtime(created).tm_year if created is not None else None)
        data["category"].append(primary)
        data["video_release_date"].append(fields[3] or None)
        data["imdb_url"].append(fields[4] or None)
        for genre, flag in zip(genre_columns, flags, strict=True):
            data[genre].append(flag)
    types: dict[str, type] = {k: str for k in data}
    types.update({"item_id": int, "created_ts": int, "release_year": int})
    types.update({g: int for g in genre_columns})
    return Table("items", types, data, pk="item_id")


def load_movielens(folder: Path, min_rating: int = 4) -> Import:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected the ml-100k folder with u.data)")
    genres = _genres(folder)
    ratings, malformed = _ratings(folder / "u.data", min_rating)
    first: dict[int, int] = {}
    for user, ts in zip(ratings["user_id"], ratings["event_ts"], strict=True):
        if isinstance(user, int) and isinstance(ts, int):
            first[user] = min(ts, first.get(user, ts))
    users = _users(folder, first)
    items = _items(folder, genres)
    interactions = Table(
        "interactions",
        {
            "interaction_id": int,
            "user_id": int,
            "item_id": int,
            "event_ts": int,
            "clicked": int,
            "rating": int,
        },
        ratings,
        indexes=["interaction_id"],
    )
    clicks = sum(1 for c in ratings["clicked"] if c == 1)
    return Import([users, items, interactions], len(ratings["rating"]), clicks, malformed)
