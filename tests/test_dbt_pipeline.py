"""The dbt project through real dbt on real SQLite (and DuckDB): quarantine,
point-in-time features, safe rebuilds, portability."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models_py import checkpoint
from tests.conftest import copy_project, copy_world, dbt, generate, recsys


def _query(db: Path, sql: str, attach_raw: Path | None = None) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        if attach_raw is not None:
            conn.execute(f"attach '{attach_raw}' as raw")
        return pd.read_sql(sql, conn)


def test_build_passes_and_every_staged_impression_has_features(built_world):
    wh = built_world / "warehouse.db"
    counts = _query(
        wh,
        """
        select (select count(*) from int_interactions) as staged,
               (select count(*) from fct_impression_features) as features,
               (select count(*) from int_interactions_rejected) as rejected""",
    )
    assert counts.staged[0] == counts.features[0] == 20_000
    assert counts.rejected[0] == 0


def test_features_count_only_strictly_earlier_events(built_world):
    """Recompute every point-in-time value in pandas, on every row, same-second
    events excluded: prior counts per user, item, user and category and over
    all events (the global prior), the item's trailing-window impressions and
    the seconds since the user's last impression and last click."""
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
        running = per_second.groupby(level=list(range(len(keys)))) if keys else per_second
        cum = running.cumsum() - per_second
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

    impressions, clicks = prior([])  # the global prior: every key, earlier seconds
    history = _query(
        built_world / "warehouse.db",
        "select interaction_id, global_prior_impressions, global_prior_clicks "
        "from int_impression_history",
    ).set_index("interaction_id")
    aligned = history.loc[f["interaction_id"]]
    np.testing.assert_array_equal(aligned["global_prior_impressions"], impressions)
    np.testing.assert_array_equal(aligned["global_prior_clicks"], clicks)

    events = f[["user_id", "item_id", "event_ts", "clicked"]].to_numpy(dtype=np.int64)
    user, item, ts, clicked = events.T
    window = 604_800  # var item_popularity_window_s: [t - window, t - 1]
    np.testing.assert_array_equal(
        f["item_recent_impressions"],
        _count_in(item, ts, item, ts - window, ts),
    )
    np.testing.assert_array_equal(
        f["user_seconds_since_last_impression"], _seconds_since_last(user, ts, user, ts)
    )
    np.testing.assert_array_equal(
        f["user_seconds_since_last_click"],
        _seconds_since_last(user[clicked == 1], ts[clicked == 1], user, ts),
    )


_KEY = 10**10  # key * _KEY + epoch second orders events by key, then time


def _count_in(event_keys, event_ts, keys, start, stop) -> np.ndarray:
    """Events of each row's key with start <= time < stop, by binary search."""
    sorted_events = np.sort(event_keys * _KEY + event_ts)
    upper = np.searchsorted(sorted_events, keys * _KEY + stop, side="left")
    return upper - np.searchsorted(sorted_events, keys * _KEY + start, side="left")


def _seconds_since_last(event_keys, event_ts, keys, ts) -> np.ndarray:
    """Seconds from each row back to its key's latest event strictly before it
    (NaN when there is none): same-second events do not count."""
    sorted_events = np.sort(event_keys * _KEY + event_ts)
    before = np.searchsorted(sorted_events, keys * _KEY + ts, side="left") - 1
    found = sorted_events[np.maximum(before, 0)]
    same_key = (before >= 0) & (found // _KEY == keys)
    return np.where(same_key, ts - found % _KEY, np.nan)


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

    rejected = _query(tmp_path / "warehouse.db", "select * from int_interactions_rejected")
    by_id = dict(zip(rejected.interaction_id.fillna("<null>"), rejected.reason, strict=True))
    for row in BAD_ROWS:
        key = "<null>" if row[0] is None else str(row[0])
        assert by_id[key] == row[5], row
    assert by_id["17"] == "duplicate_interaction_id"
    assert rejected.reason.eq("duplicate_interaction_id").sum() == 1

    staged = _query(tmp_path / "warehouse.db", "select * from int_interactions")
    assert len(staged) + len(rejected) == n_raw
    kept = staged[staged.interaction_id == 17]
    assert len(kept) == 1, "the first copy of a duplicated id is kept"
    with sqlite3.connect(raw) as conn:
        first_ts = conn.execute(
            "select min(event_ts) from interactions where interaction_id = 17"
        ).fetchone()[0]
    assert kept.event_ts.iloc[0] == first_ts

    recsys(["train", "--epochs", "1", "--batch-size", "256", "--no-baselines", "--quiet"], tmp_path)
    metrics = json.loads((tmp_path / "runs" / "latest" / "metrics.json").read_text())
    assert sum(metrics["split_rows"].values()) == len(staged), "exactly the clean rows train"


def test_a_load_rejected_above_the_limit_stops_the_build_and_training(tmp_path):
    """Staging fails: nothing downstream is rebuilt, the last good mart stays, and
    training refuses it even after unrelated dbt commands have run since."""
    generate(tmp_path, impressions=3000, users=100, items=50, seed=4)
    dbt(["build"], tmp_path)
    before = _query(tmp_path / "warehouse.db", "select * from fct_impression_features")
    _inject(
        tmp_path / "raw.db", [(800000 + i, 999999, 1, 1704100000, 0, "") for i in range(40)]
    )  # 1.3%
    result = dbt(["build"], tmp_path, check=False)
    assert result.returncode != 0
    assert "FAIL 1 rejected_share_within_limit" in result.stdout
    assert "SKIP relation main.fct_impression_features" in result.stdout
    after = _query(tmp_path / "warehouse.db", "select * from fct_impression_features")
    pd.testing.assert_frame_equal(before, after)
    rejected = _query(
        tmp_path / "warehouse.db",
        "select count(*) as n from int_interactions_checked where reason = 'unknown_user'",
    )
    assert rejected.n[0] == 40, "the rejected rows are kept, with their reason"

    dbt(["compile"], tmp_path)  # replaces run_results.json, executes nothing
    dbt(["test", "-s", "stg_users"], tmp_path)  # passes, other nodes
    refused = recsys(["train", "--quiet"], tmp_path, check=False)
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: dbt recorded a failure of rejected_share_within_limit in its latest run: "
        "fix it and run `make features` before training\n"
    )

    with sqlite3.connect(tmp_path / "warehouse.db") as conn:  # a log from before vars_json
        conn.execute("alter table feature_builds drop column vars_json")
    relaxed = dbt(["build", "--vars", "{max_rejected_share: 0.05}"], tmp_path, check=False)
    assert relaxed.returncode == 0, relaxed.stdout[-2000:]
    rebuilt = _query(tmp_path / "warehouse.db", "select count(*) as n from fct_impression_features")
    assert rebuilt.n[0] == 3000
    # the failed node ran again and passed: its latest verdict unlocks training
    recsys(["train", "--epochs", "1", "--batch-size", "512", "--no-baselines", "--quiet"], tmp_path)
    # and the run says which vars its features were computed with
    run_config = json.loads((tmp_path / "runs" / "latest" / "config.json").read_text())
    assert run_config["feature_vars"]["max_rejected_share"] == 0.05
    assert run_config["feature_vars"]["ctr_smoothing_m"] == 20
    best = checkpoint.restore(tmp_path / "runs" / "latest")  # the checkpoint says so too
    assert best.feature_vars == run_config["feature_vars"]
    assert best.feature_build == run_config["feature_build"]


def test_times_in_milliseconds_fail_the_build(tmp_path):
    generate(tmp_path, impressions=2000, users=80, items=40, seed=3)
    with sqlite3.connect(tmp_path / "raw.db") as conn:
        conn.execute("update items set created_ts = created_ts * 1000 where item_id = 5")
        conn.execute("update users set signup_ts = -signup_ts * 1000 where user_id = 7")
    result = dbt(["build"], tmp_path, check=False)
    assert result.returncode != 0
    assert "FAIL 1 plausible_epoch_seconds_stg_items_created_ts" in result.stdout
    assert "FAIL 1 plausible_epoch_seconds_stg_users_signup_ts" in result.stdout
    assert "SKIP relation main.fct_impression_features" in result.stdout


def test_one_scan_checks_every_feature_columns_nulls_and_range(built_world, tmp_path):
    """The mart's NULL and range checks run as one test (one scan): each failed
    check is a failing row that names it, with its count of rows."""
    world = copy_world(built_world, tmp_path / "world")
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute("update fct_impression_features set user_ctr = 1.5 where interaction_id <= 2")
        conn.execute(
            "update fct_impression_features set item_prior_clicks = null where interaction_id = 3"
        )
    (world / "schemas").mkdir(exist_ok=True)
    result = dbt(["test", "-s", "fct_impression_features", "--store-failures"], world, check=False)
    assert result.returncode != 0
    assert "FAIL 2 fct_impression_features_columns_in_range" in result.stdout, result.stdout
    with sqlite3.connect(world / "schemas" / "main_dbt_test__audit.db") as conn:
        failed = conn.execute(
            "select failed_check, failing_rows from fct_impression_features_columns_in_range"
        ).fetchall()
    assert sorted(failed) == [
        ("item_prior_clicks is null or item_prior_clicks < 0", 1),
        ("user_ctr is null or user_ctr < 0 or user_ctr > 1", 2),
    ]


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
    verdicts = _query(
        data / "warehouse.db",
        "select status from dbt_node_results "
        "where unique_id = 'model.recsys.fct_impression_features' order by recorded_at_ms",
    )
    assert list(verdicts.status) == ["success", "error"]

    after = _query(data / "warehouse.db", "select * from fct_impression_features")
    pd.testing.assert_frame_equal(before, after)
    leftovers = _query(
        data / "warehouse.db",
        "select name from sqlite_master where name like '%__dbt_new' or name like '%__dbt_backup'",
    )
    assert leftovers.empty


@pytest.mark.slow
def test_duckdb_target_builds_the_same_features(duckdb_world):
    import duckdb

    with duckdb.connect(str(duckdb_world / "warehouse.duckdb"), read_only=True) as conn:
        duck = conn.execute(
            "select * from main.fct_impression_features order by interaction_id"
        ).df()
    lite = _query(
        duckdb_world / "warehouse.db",
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


@pytest.mark.slow
def test_duckdb_feature_tables_hold_no_hugeint(duckdb_world):
    """DuckDB sums integers to a 128-bit HUGEINT, which it stores bit-packed and
    scans about 100x slower than a BIGINT: uncast click counts made the mart's
    build 3x and the cache's cold read 1.4x slower at 1M rows (docs/experiments.md)."""
    import duckdb

    with duckdb.connect(str(duckdb_world / "warehouse.duckdb"), read_only=True) as conn:
        wide = conn.execute(
            "select table_name, column_name from information_schema.columns "
            "where data_type in ('HUGEINT', 'UHUGEINT') and table_schema = 'main' "
            "order by all"
        ).fetchall()
        tables = {
            row[0] for row in conn.execute("select table_name from duckdb_tables()").fetchall()
        }
    assert {
        "int_impression_history",
        "int_impression_exposure",
        "fct_impression_features",
    } <= tables
    assert wide == []


def test_docs_generate_describes_the_feature_mart(built_world):
    dbt(["docs", "generate"], built_world)
    catalog = json.loads((built_world / "target" / "catalog.json").read_text())
    node = catalog["nodes"]["model.recsys.fct_impression_features"]
    assert "user_ctr" in {c.lower() for c in node["columns"]}
