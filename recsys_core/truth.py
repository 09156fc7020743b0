"""A synthetic world's click model, read back from ``raw.db``: the true click
probability of any (user, item, position), not only of the logged impressions.

Logged clicks follow exposure, so they cannot say whether a ranking puts first
the items a user would click; the truth can. ``seeds_gen.truth`` writes the
model's parameters into the ``truth_*`` tables (no dbt model may read them, like
``click_truth``); ``Truth`` computes from them

    logit = intercept + user effect + item effect + age band x category effect
            + position slope * (position - 1) + taste scale * (user taste . item trait)

exactly as the generator drew every logged click. The world is stationary: the
probability does not depend on the time, only on who, what and where shown.
It lives here because both halves read it: the generator's tests and the
ranking judge in ``models_py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRUTH_TABLES = ("truth_users", "truth_items", "truth_age_category", "truth_constants")


@dataclass(frozen=True)
class Truth:
    """The click model, indexed by id: ``p_click`` for any users, items and positions."""

    user_ids: np.ndarray  # sorted
    user_effect: np.ndarray
    user_age: np.ndarray  # row of age_x_category
    user_taste: np.ndarray  # [users, factors]
    item_ids: np.ndarray  # sorted
    item_effect: np.ndarray
    item_category: np.ndarray  # column of age_x_category
    item_trait: np.ndarray  # [items, factors]
    age_x_category: np.ndarray
    intercept: float
    position_slope: float
    taste_scale: float

    def logit(
        self,
        user_id: np.ndarray,
        item_id: np.ndarray,
        position: np.ndarray | int = 1,
        personal: bool = True,
    ) -> np.ndarray:
        """The true click logit of each (user, item, position), broadcast together;
        ``personal=False`` leaves out the taste term (the oracle without taste)."""
        u = _rows(self.user_ids, np.asarray(user_id), "user")
        i = _rows(self.item_ids, np.asarray(item_id), "item")
        logit = (
            self.intercept
            + self.user_effect[u]
            + self.item_effect[i]
            + self.age_x_category[self.user_age[u], self.item_category[i]]
            + self.position_slope * (np.asarray(position) - 1)
        )
        if personal:
            logit = logit + self.taste_scale * (self.user_taste[u] * self.item_trait[i]).sum(-1)
        return logit

    def p_click(
        self,
        user_id: np.ndarray,
        item_id: np.ndarray,
        position: np.ndarray | int = 1,
        personal: bool = True,
    ) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(user_id, item_id, position, personal)))


def has_truth(raw_path: Path) -> bool:
    """Whether ``raw_path`` holds a click model (synthetic worlds do; imported data not)."""
    with contextlib.closing(_read_only(raw_path)) as conn:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    return set(TRUTH_TABLES) <= names


def load_truth(raw_path: Path) -> Truth:
    """Read the click model back from ``raw_path`` (see ``has_truth``)."""
    with contextlib.closing(_read_only(raw_path)) as conn:
        users = _table(conn, "truth_users", "user_id")
        items = _table(conn, "truth_items", "item_id")
        cells = conn.execute("select age_band, category, effect from truth_age_category").fetchall()
        constants = dict(conn.execute("select name, value from truth_constants").fetchall())
    ages = sorted({a for a, _, _ in cells})
    categories = sorted({c for _, c, _ in cells})
    age_x_category = np.zeros((len(ages), len(categories)))
    for a, c, effect in cells:
        age_x_category[ages.index(a), categories.index(c)] = effect
    return Truth(
        user_ids=users["user_id"].astype(np.int64),
        user_effect=users["effect"].astype(np.float64),
        user_age=np.searchsorted(ages, users["age_band"]),
        user_taste=_factors(users, "taste_"),
        item_ids=items["item_id"].astype(np.int64),
        item_effect=items["effect"].astype(np.float64),
        item_category=np.searchsorted(categories, items["category"]),
        item_trait=_factors(items, "trait_"),
        age_x_category=age_x_category,
        intercept=float(constants["intercept"]),
        position_slope=float(constants["position_slope"]),
        taste_scale=float(constants["taste_scale"]),
    )


def _read_only(raw_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{raw_path}?mode=ro", uri=True)


def _table(conn: sqlite3.Connection, name: str, key: str) -> dict[str, np.ndarray]:
    cursor = conn.execute(f"select * from {name} order by {key}")
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    return {c: np.array([r[j] for r in rows]) for j, c in enumerate(columns)}


def _factors(table: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    names = sorted((c for c in table if c.startswith(prefix)), key=lambda c: int(c[len(prefix) :]))
    return np.stack([table[c].astype(np.float64) for c in names], axis=1)


def _rows(ids: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    rows = np.searchsorted(ids, wanted)
    rows = np.minimum(rows, len(ids) - 1)
    unknown = ids[rows] != wanted
    if unknown.any():
        raise KeyError(f"{what} {np.asarray(wanted)[unknown].flat[0]} is not in the world's truth")
    return rows
