"""Score (user, item) pairs with a trained run and the ``*_features_latest`` marts,
rank candidates for one user, and write top-K lists back to the warehouse.

Features come from SQL only: user columns from user_features_latest, item
columns from item_features_latest, user x category columns from
user_category_features_latest, and context columns (no value before an
impression exists) from their ``meta.serving_value``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models_py import checkpoint
from models_py.config import TrainConfig
from models_py.data import Encoders, encode
from models_py.model import CTRModel, predict
from models_py.pipeline import load_checked_spec
from models_py.registry import SLOT_COLUMN_PREFIX, SLOTS_TABLE, FeatureSpec, category_slots
from models_py.warehouse import Warehouse, quote_identifier
from models_py.workspace import Workspace
from recsys_core.errors import UserError

USER_TABLE = "user_features_latest"
ITEM_TABLE = "item_features_latest"
USER_CATEGORY_TABLE = "user_category_features_latest"
CLICKED_TABLE = "user_clicked_items"  # left out of a user's lists
PREDICTIONS = "predictions"
AS_OF_SUFFIX = "__as_of"  # the marts as of an earlier moment (models_py.ranking)


@dataclass
class Scorer:
    run_dir: Path
    run_id: str
    config: TrainConfig
    spec: FeatureSpec
    encoders: Encoders
    model: CTRModel
    warehouse: Warehouse
    users: pd.DataFrame
    items: pd.DataFrame
    user_categories: pd.DataFrame

    def features(self, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        """The model's input columns for each (user_id, item_id) row of ``pairs``, as
        the training mart would hold them for an impression at the marts' moment.
        An unknown user or item gets missing values (the model's unseen slot)."""
        user_col = self.spec.entity_column("user") or "user_id"
        item_col = self.spec.entity_column("item") or "item_id"
        frame = pairs.rename(columns={"user_id": user_col, "item_id": item_col})
        frame = frame.merge(self.users, how="left", on=user_col)
        frame = frame.merge(self.items, how="left", on=item_col)
        if "category" in frame.columns and not self.user_categories.empty:
            frame = frame.merge(self.user_categories, how="left", on=[user_col, "category"])
        columns: dict[str, np.ndarray] = {}
        for feature in self.spec.features:
            if feature.serving_value is not None:
                columns[feature.name] = np.full(len(frame), feature.serving_value, dtype=object)
            else:  # load_scorer checked that a mart serves it
                columns[feature.name] = frame[feature.name].to_numpy(dtype=object)
        return columns

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        """Click probability for each (user_id, item_id) row of ``pairs``."""
        encoded = encode(self.features(pairs), self.spec, self.encoders)
        return predict(self.model, encoded, torch.device("cpu")).astype(np.float64)


def _read(conn: Any, warehouse: Warehouse, table: str) -> pd.DataFrame:
    sql = f"select * from {warehouse.qualified(table)}"
    if warehouse.engine == "duckdb":
        return conn.execute(sql).df()
    return pd.read_sql(sql, conn)


def load_scorer(workspace: Workspace, run_dir: Path, suffix: str = "") -> Scorer:
    """The run's best checkpoint with the serving marts (``suffix``: their ``__as_of``
    build, for ranking on the test period)."""
    restored = checkpoint.restore(run_dir)
    config, spec, encoders = restored.config, restored.spec, restored.encoders
    torch.set_num_threads(config.threads)
    model = restored.model()
    warehouse = workspace.warehouse
    # the same gate as training: no serving from a failed, missing or stale build
    load_checked_spec(workspace)
    _check_same_slots(spec, restored.category_slots, category_slots(warehouse), run_dir.name)
    conn = warehouse.connect()
    try:
        tables = [
            _read(conn, warehouse, t + suffix)
            for t in (USER_TABLE, ITEM_TABLE, USER_CATEGORY_TABLE)
        ]
    except Exception as exc:  # a missing mart: the engines raise different errors
        raise UserError(
            f"serving marts missing in {warehouse.path} ({exc}): run `make features`"
        ) from None
    finally:
        conn.close()
    users, items, user_categories = tables
    users = users.drop(columns=["as_of_ts"], errors="ignore")
    items = items.drop(columns=["as_of_ts"], errors="ignore")
    _check_servable(spec, [users, items, user_categories])
    return Scorer(
        run_dir,
        run_dir.name,
        config,
        spec,
        encoders,
        model,
        warehouse,
        users,
        items,
        user_categories,
    )


def _check_same_slots(
    spec: FeatureSpec, trained: list[str] | None, current: list[str] | None, run: str
) -> None:
    """Refuse a run whose category slots meant other categories than the warehouse's
    now: its slot weights would be applied to another category's history."""
    if not any(f.name.startswith(SLOT_COLUMN_PREFIX) for f in spec.features) or trained == current:
        return
    pairs = enumerate(zip_longest(trained or [], current or []), start=1)
    slot, was, now = next(((s, a, b) for s, (a, b) in pairs if a != b), (1, None, None))
    raise UserError(
        f"{run} was trained with category slot {slot} meaning "
        f"{_slot(trained, was)}, but the warehouse's {SLOTS_TABLE} now says "
        f"{_slot(current, now)}: train a new run on these features"
    )


def _slot(categories: list[str] | None, category: str | None) -> str:
    if categories is None:
        return "nothing (no slot table)"
    return repr(category) if category is not None else "no category"


def _check_servable(spec: FeatureSpec, marts: list[pd.DataFrame]) -> None:
    """Refuse a run that was trained on a feature no serving mart provides: scoring
    it as missing would silently give every pair the unseen value."""
    served = {column for mart in marts for column in mart.columns}
    missing = [f.name for f in spec.features if f.serving_value is None and f.name not in served]
    if missing:
        raise UserError(
            f"the run was trained on {', '.join(missing)}, which no serving mart "
            f"({USER_TABLE}, {ITEM_TABLE}, {USER_CATEGORY_TABLE}) provides: add "
            f"{'it' if len(missing) == 1 else 'them'} there, or give a context feature "
            f"a meta.serving_value, then `make features`"
        )


def _clicked_items(warehouse: Warehouse, user_ids: list[Any]) -> pd.DataFrame:
    conn = warehouse.connect()
    try:
        marks = ", ".join("?" for _ in user_ids)
        sql = (
            f"select user_id, item_id from {warehouse.qualified(CLICKED_TABLE)}"
            f" where user_id in ({marks})"
        )
        rows = conn.execute(sql, list(user_ids)).fetchall()
    finally:
        conn.close()
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def recommend(
    scorer: Scorer, user_id: int, k: int, include_clicked: bool = False
) -> tuple[pd.DataFrame, bool]:
    """Top ``k`` items for one user, and whether the user is unknown (cold start)."""
    if k < 1:
        raise UserError(f"-k must be >= 1, got {k}")
    known = bool((scorer.users["user_id"] == user_id).any())
    candidates = scorer.items[["item_id"]].copy()
    if not include_clicked and known:
        clicked = set(_clicked_items(scorer.warehouse, [user_id])["item_id"].tolist())
        candidates = candidates[~candidates["item_id"].isin(clicked)]
    pairs = candidates.assign(user_id=user_id)[["user_id", "item_id"]]
    pairs["score"] = scorer.score(pairs)
    top = pairs.nlargest(k, "score", keep="first").reset_index(drop=True)
    detail = ["item_id"] + [c for c in ("category",) if c in scorer.items.columns]
    return top.merge(scorer.items[detail], on="item_id", how="left"), not known


def score_top_k(
    scorer: Scorer, k: int, candidates: int, batch_users: int = 500, progress: bool = True
) -> tuple[pd.DataFrame, float]:
    """Top-``k`` lists for every user over the ``candidates`` most popular recent items
    (clicked items excluded); returns the rows and the scoring rate in pairs/s."""
    if k < 1:
        raise UserError(f"-k must be >= 1, got {k}")
    if candidates < k:
        raise UserError(f"--candidates ({candidates}) must be >= -k ({k})")
    popularity = (
        "item_recent_impressions"
        if "item_recent_impressions" in scorer.items
        else "item_prior_impressions"
    )
    pool = scorer.items.nlargest(candidates, popularity)["item_id"].to_numpy()
    user_ids = scorer.users["user_id"].to_numpy()
    from tqdm import tqdm

    lists, scored, seconds = [], 0, 0.0
    for start in tqdm(
        range(0, len(user_ids), batch_users), disable=not progress, desc="score", unit="batch"
    ):
        batch = user_ids[start : start + batch_users]
        pairs = pd.DataFrame(
            {"user_id": np.repeat(batch, len(pool)), "item_id": np.tile(pool, len(batch))}
        )
        clicked = _clicked_items(scorer.warehouse, batch.tolist())
        if not clicked.empty:
            seen = (
                pairs.merge(clicked.assign(_seen=True), how="left", on=["user_id", "item_id"])[
                    "_seen"
                ]
                .fillna(False)
                .to_numpy()
            )
            pairs = pairs[~seen.astype(bool)]
        started = time.perf_counter()
        pairs = pairs.assign(score=scorer.score(pairs))
        seconds += time.perf_counter() - started
        scored += len(pairs)
        pairs["rank"] = pairs.groupby("user_id")["score"].rank(method="first", ascending=False)
        lists.append(pairs[pairs["rank"] <= k])
    result = (
        pd.concat(lists, ignore_index=True)
        if lists
        else pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    )
    result["rank"] = result["rank"].astype(int)
    return result.sort_values(["user_id", "rank"]), scored / seconds if seconds else 0.0


def write_predictions(warehouse: Warehouse, rows: pd.DataFrame, run_id: str) -> None:
    """Replace the predictions table atomically: build it under a new name, then swap
    in one transaction. Readers see the old table or the new one, never half."""
    table = quote_identifier(PREDICTIONS)
    new = quote_identifier(f"{PREDICTIONS}__new")
    schema = quote_identifier(warehouse.schema)
    scored_at = int(time.time())
    records = (  # a generator: rows stream into the new table as they are converted
        (int(u), int(i), float(s), int(r), run_id, scored_at)
        for u, i, s, r in rows[["user_id", "item_id", "score", "rank"]].itertuples(index=False)
    )
    conn = warehouse.connect(read_only=False)
    try:
        conn.execute(f"drop table if exists {schema}.{new}")
        conn.execute(
            f"create table {schema}.{new} (user_id bigint, item_id bigint, "
            f"score double, rank integer, run_id varchar, scored_at bigint)"
        )
        conn.executemany(f"insert into {schema}.{new} values (?, ?, ?, ?, ?, ?)", records)
        if warehouse.engine == "sqlite":
            conn.commit()
            conn.execute("begin")
        else:
            conn.execute("begin transaction")
        conn.execute(f"drop table if exists {schema}.{table}")
        conn.execute(f"alter table {schema}.{new} rename to {table}")
        conn.execute("commit")
    finally:
        conn.close()
