"""The dbt project through real dbt on real SQLite (and DuckDB): quarantine,
point-in-time features, safe rebuilds, portability."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import copy_project, dbt, generate


def _query(db: Path, sql: str, attach_raw: Path | None = None) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        if attach_raw is not None:
            conn.execute(f"attach '{attach_raw}' as raw")
        return pd.read_sql(sql, conn)


def _run_results() -> dict[str, str]:
    results = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["status"] for r in results["results"]}


def test_build_passes_and_every_staged_impression_has_features(built_world):
    wh = built_world / "warehouse.db"
    counts = _query(
        wh,
        """
        select (select count(*) from stg_interactions) as staged,
               (select count(*) from fct_impression_features) as features,
               (select count(*) from rejected_interactions) as rejected""",
    )
    assert counts.staged[0] == counts.features[0] == 20_000
    assert counts.rejected[0] == 0


def test_features_count_only_strictly_earlier_events(built_world):
    """Recompute every prior count in pandas, same-second events excluded."""
    f = _query(
        built_world / "warehouse.db",
        """
        select f.*, i.category as item_category from fct_impression_features f
        join stg_items i on i.item_id = f.item_id""",
    )
    ties = f.duplicated(["user_id", "event_ts"], keep=False).sum()
    assert ties > 0, "the test world must hold same-second events to be meaningful"

    def prior(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        per_second = f.groupby([*keys, "event_ts"], sort=True)["clicked"].agg(["size", "sum"])
        cum = per_second.groupby(level=list(range(len(keys)))).cumsum() - per_second
        joined = f.join(cum, on=[*keys, "event_ts"])
        return joined["size"].to_numpy(), joined["sum"].to_numpy()

    for keys, prefix in (
        (["user_id"], "user"),
        (["item_id"], "item"),
        (["user_id", "item_category"], "user_category"),
    ):
        impressions, clicks = prior(keys)
        np.testing.assert_array_equal(f[f"{prefix}_prior_impressions"], impressions)
        np.testing.assert_array_equal(f[f"{prefix}_prior_clicks"], clicks)

    last = f.groupby("user_id")["event_ts"]
    first_rows = f["event_ts"] == last.transform("min")
    assert f.loc[first_rows, "user_seconds_since_last_impression"].isna().all()
    assert (f.loc[~first_rows, "user_seconds_since_last_impression"] >= 1).all()


def test_smoothed_ctr_follows_the_formula_with_a_non_leaking_prior(built_world):
    f = _query(
        built_world / "warehouse.db",
        """
        select f.*, h.global_prior_impressions, h.global_prior_clicks
        from fct_impression_features f
        join int_impression_history h on h.interaction_id = f.interaction_id""",
    )
    m, prior0 = 20, 0.05
    prior = (f.global_prior_clicks + m * prior0) / (f.global_prior_impressions + m)
    expected = (f.user_prior_clicks + m * prior) / (f.user_prior_impressions + m)
    np.testing.assert_allclose(f.user_ctr, expected, rtol=1e-12)
    earliest = f.event_ts == f.event_ts.min()
    assert (f.loc[earliest, "global_prior_impressions"] == 0).all()


BAD_ROWS = [
    # (interaction_id, user_id, item_id, event_ts, clicked, expected reason)
    (900001, 999999, 1, 1704100000, 0, "unknown_user"),
    (900002, 1, 999999, 1704100000, 0, "unknown_item"),
    (900003, 1, 1, None, 0, "invalid_event_time"),
    (900004, 1, 1, "yesterday", 0, "invalid_event_time"),
    (900005, 1, 1, 1704100000, 2, "invalid_label"),
    (900006, 1, 1, 1704100000, "yes", "invalid_label"),
    (-7, 1, 1, 1704100000, 0, "invalid_interaction_id"),
    (None, 1, 1, 1704100000, 0, "invalid_interaction_id"),
    (900009, -3, 1, 1704100000, 0, "invalid_user_id"),
    (900010, "abc", 1, 1704100000, 0, "invalid_user_id"),
    (900011, 1, None, 1704100000, 0, "invalid_item_id"),
    (900012, 1, 1, 4102444800, 0, "event_time_in_future"),
]


def _inject(raw: Path, rows: list[tuple]) -> None:
    with sqlite3.connect(raw) as conn:
        conn.executemany(
            "insert into interactions (interaction_id, user_id, item_id, event_ts, clicked, "
            "position) values (?, ?, ?, ?, ?, 1)",
            [r[:5] for r in rows],
        )


def test_bad_rows_are_quarantined_with_their_reason_and_nothing_is_lost(tmp_path):
    generate(tmp_path, impressions=5000, users=200, items=80, seed=3)
    raw = tmp_path / "raw.db"
    _inject(raw, BAD_ROWS)
    with sqlite3.connect(raw) as conn:  # a duplicate of an existing id, later in time
        conn.execute(
            "insert into interactions select interaction_id, user_id, item_id, "
            "event_ts + 10, 1 - clicked, position from interactions "
            "where interaction_id = 17"
        )
        n_raw = conn.execute("select count(*) from interactions").fetchone()[0]
    result = dbt(["build"], tmp_path)
    assert "WARN" in result.stdout  # any rejection warns, the build still passes

    rejected = _query(tmp_path / "warehouse.db", "select * from rejected_interactions")
    by_id = dict(zip(rejected.interaction_id.fillna("<null>"), rejected.reason, strict=True))
    for row in BAD_ROWS:
        key = "<null>" if row[0] is None else str(row[0])
        assert by_id[key] == row[5], row
    assert by_id["17"] == "duplicate_interaction_id"
    assert rejected.reason.eq("duplicate_interaction_id").sum() == 1

    staged = _query(tmp_path / "warehouse.db", "select * from stg_interactions")
    assert len(staged) + len(rejected) == n_raw
    kept = staged[staged.interaction_id == 17]
    assert len(kept) == 1, "the first copy of a duplicated id is kept"
    with sqlite3.connect(raw) as conn:
        first_ts = conn.execute(
            "select min(event_ts) from interactions where interaction_id = 17"
        ).fetchone()[0]
    assert kept.event_ts.iloc[0] == first_ts


def test_rejected_share_above_the_limit_fails_the_build(tmp_path):
    generate(tmp_path, impressions=3000, users=100, items=50, seed=4)
    _inject(
        tmp_path / "raw.db", [(800000 + i, 999999, 1, 1704100000, 0, "") for i in range(40)]
    )  # 1.3%
    result = dbt(["build"], tmp_path, check=False)
    assert result.returncode != 0
    assert "assert_rejected_share_within_limit" in result.stdout
    relaxed = dbt(["build", "--vars", "{max_rejected_share: 0.05}"], tmp_path, check=False)
    assert relaxed.returncode == 0, relaxed.stdout[-2000:]


def test_a_failing_rebuild_keeps_the_last_good_feature_table(tmp_path):
    project = copy_project(tmp_path / "project")
    data = tmp_path / "data"
    generate(data, impressions=3000, users=100, items=50, seed=5)
    dbt(["run"], data, project_dir=project)
    before = _query(data / "warehouse.db", "select * from fct_impression_features")

    mart = project / "dbt_project" / "models" / "marts" / "fct_impression_features.sql"
    mart.write_text(mart.read_text().replace("users.signup_ts", "users.no_such_column"))
    failed = dbt(["run", "-s", "fct_impression_features"], data, project_dir=project, check=False)
    assert failed.returncode != 0
    assert _run_results()["fct_impression_features"] == "error"

    after = _query(data / "warehouse.db", "select * from fct_impression_features")
    pd.testing.assert_frame_equal(before, after)
    leftovers = _query(
        data / "warehouse.db",
        "select name from sqlite_master where name like '%__dbt_new' or name like '%__dbt_backup'",
    )
    assert leftovers.empty


@pytest.mark.slow
def test_duckdb_target_builds_the_same_features(built_world):
    dbt(["build"], built_world, target="duckdb")
    import duckdb

    with duckdb.connect(str(built_world / "warehouse.duckdb"), read_only=True) as conn:
        duck = conn.execute(
            "select * from main.fct_impression_features order by interaction_id"
        ).df()
    lite = _query(
        built_world / "warehouse.db",
        "select * from fct_impression_features order by interaction_id",
    )
    assert list(duck.columns) == list(lite.columns)
    assert len(duck) == len(lite)
    for column in lite.columns:
        left, right = lite[column], duck[column]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            np.testing.assert_allclose(
                left.astype(float), right.astype(float), rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:
            assert left.astype(str).tolist() == right.astype(str).tolist(), column


def test_docs_generate_describes_the_feature_mart(built_world):
    dbt(["docs", "generate"], built_world)
    catalog = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "catalog.json").read_text())
    node = catalog["nodes"]["model.recsys.fct_impression_features"]
    assert "user_ctr" in {c.lower() for c in node["columns"]}
