"""Incremental daily builds: after new days of impressions arrive, `dbt build`
appends their features and gives exactly the tables a full rebuild gives; when
appending would not be exact (late data, changed vars), it rebuilds in full."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import dbt, generate, one_error_line, run_cli

HISTORY_MODELS = [
    "int_interactions_checked",
    "int_interactions",
    "int_impression_history",
    "int_impression_exposure",
    "fct_impression_features",
]
WAREHOUSE = {"sqlite": "warehouse.db", "duckdb": "warehouse.duckdb"}


def _append(data: Path, days: int = 1, seed: int = 11) -> None:
    run_cli(
        [
            sys.executable,
            "-m",
            "seeds_gen",
            "append",
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--slate-size",
            "2",
        ],
        data,
    )


def _table(data: Path, target: str, name: str) -> pd.DataFrame:
    order = (
        "interaction_id, raw_interaction_id"
        if name == "int_interactions_checked"
        else ("interaction_id")
    )
    sql = f"select * from {name} order by {order}"
    path = data / WAREHOUSE[target]
    if target == "duckdb":
        import duckdb

        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute(sql).df()
    with sqlite3.connect(path) as conn:
        return pd.read_sql(sql, conn)


def _assert_same_tables(left: Path, right: Path, target: str) -> None:
    for name in HISTORY_MODELS:
        a, b = _table(left, target, name), _table(right, target, name)
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), name
        for column in a.columns:
            x, y = a[column], b[column]
            assert (x.isna() == y.isna()).all(), f"{name}.{column}: NULLs differ"
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                np.testing.assert_allclose(
                    x.astype(float), y.astype(float), rtol=0, atol=1e-9, err_msg=f"{name}.{column}"
                )
            else:
                assert x.astype(str).tolist() == y.astype(str).tolist(), f"{name}.{column}"


def _full_build_of(data: Path, dest: Path, target: str) -> Path:
    """A fresh warehouse built in full from a copy of ``data``'s raw.db."""
    dest.mkdir()
    shutil.copy(data / "raw.db", dest / "raw.db")
    dbt(["run"], dest, target=target)
    return dest


def _plans(result) -> dict[str, str]:
    """What each history model's build was, from dbt's log ('incremental, ...' or
    'full build: <why>')."""
    plans = {}
    for line in result.stdout.splitlines():
        for name in HISTORY_MODELS:
            marker = f"  {name}: "
            if marker in line:
                plans[name] = line.split(marker, 1)[1].strip()
    return plans


@pytest.mark.slow
@pytest.mark.parametrize("target", ["sqlite", "duckdb"])
def test_appended_days_build_incrementally_to_a_full_rebuilds_tables(tmp_path, target):
    # slates of 2: every impression shares its second with another of its user,
    # on both sides of the boundary between the built days and the new ones
    data = tmp_path / "data"
    generate(data, impressions=6000, users=300, items=120, days=10, seed=3, slate_size=2)
    dbt(["run"], data, target=target)

    # a nightly `dbt build` (its tests check the appended rows)
    _append(data, seed=20)
    plans = _plans(dbt(["build"], data, target=target))
    assert set(plans) == set(HISTORY_MODELS), plans
    assert all(plan.startswith("incremental, rows after second") for plan in plans.values())
    # the build's data tests checked the appended rows; `unique` all of them
    _assert_tests_checked_appended_rows(data)

    if target == "sqlite":
        # a second night that stops halfway (as a failed or partial run would):
        # the next run's later models catch up from their own last second
        _append(data, seed=21)
        _insert(data, "1", clicked=1)  # a new copy of a clean row's id: a duplicate
        dbt(["run", "-s", "int_interactions_checked", "int_interactions"], data)
        plans = _plans(dbt(["run"], data))
        assert all(plan.startswith("incremental, rows after second") for plan in plans.values())
        assert plans["int_interactions"] != plans["int_impression_history"], plans
        with sqlite3.connect(data / "warehouse.db") as conn:
            reasons = conn.execute(
                "select reason from int_interactions_checked where interaction_id = 1"
            ).fetchall()
        assert sorted(reason or "kept" for (reason,) in reasons) == [
            "duplicate_interaction_id",
            "kept",
        ], reasons

    full = _full_build_of(data, tmp_path / "full", target)
    _assert_same_tables(data, full, target)


def _assert_tests_checked_appended_rows(data: Path) -> None:
    tests = data / "target" / "run" / "recsys" / "dbt_project" / "models" / "marts"
    in_range = (
        tests / "fct_impression_features.yml" / "fct_impression_features_columns_in_range.sql"
    )
    unique = (
        tests / "fct_impression_features.yml" / "unique_fct_impression_features_interaction_id.sql"
    )
    assert "where event_ts > " in in_range.read_text()
    assert "event_ts" not in unique.read_text()


@pytest.mark.slow
def test_late_or_changed_history_rebuilds_in_full_and_stays_exact(tmp_path):
    data = tmp_path / "data"
    generate(data, impressions=4000, users=200, items=80, days=8, seed=4, slate_size=2)
    dbt(["run"], data)
    before = _table(data, "sqlite", "fct_impression_features")
    unchanged = _plans(dbt(["run"], data))
    assert all(plan.startswith("incremental") for plan in unchanged.values()), unchanged
    pd.testing.assert_frame_equal(before, _table(data, "sqlite", "fct_impression_features"))

    # a late row: an impression at the last built second, appended after the build
    _insert(data, "max(interaction_id) + 1", clicked=1)
    _append(data, seed=5)
    late = _plans(dbt(["run"], data))
    assert late["int_interactions_checked"].startswith(
        "full build: 1 more raw interactions than judged at or before the last built second"
    ), late
    # a full rebuild upstream makes every model downstream rebuild in full
    assert late["fct_impression_features"] == (
        "full build: int_impression_exposure was rebuilt in full"
    ), late
    _assert_same_tables(data, _full_build_of(data, tmp_path / "full", "sqlite"), "sqlite")

    changed = _plans(dbt(["run", "--vars", "{ctr_smoothing_m: 10}"], data))
    assert changed["int_interactions_checked"] == "full build: feature vars changed", changed
    refreshed = _plans(dbt(["run", "--full-refresh"], data))
    assert refreshed["int_interactions_checked"] == "full build: --full-refresh", refreshed

    # a new row repeating the id of a rejected one: which copy wins depends on both
    for night in range(2):
        _append(data, seed=6 + night)
        _insert(data, "-5", clicked=0)  # a negative id: rejected
        plans = _plans(dbt(["run"], data))
    assert plans["int_interactions_checked"] == (
        "full build: 1 new interactions repeat the id of an earlier rejected one"
    ), plans


def _insert(data: Path, interaction_id: str, clicked: int) -> None:
    """One raw impression at the last second of raw.db."""
    with sqlite3.connect(data / "raw.db") as conn:
        conn.execute(
            "insert into interactions (interaction_id, user_id, item_id, event_ts, clicked, "
            f"position) select {interaction_id}, min(user_id), min(item_id), max(event_ts), "
            f"{clicked}, 1 from interactions"
        )


def test_append_continues_a_synthetic_world_and_refuses_other_data(tmp_path):
    data = tmp_path / "data"
    generate(data, impressions=2000, users=100, items=40, days=5, seed=9)
    with sqlite3.connect(data / "raw.db") as conn:
        last_ts, last_id = conn.execute(
            "select max(event_ts), max(interaction_id) from interactions"
        ).fetchone()
    _append(data, days=2)
    with sqlite3.connect(data / "raw.db") as conn:
        new = pd.read_sql(
            f"select * from interactions where interaction_id > {last_id} order by interaction_id",
            conn,
        )
        unmatched = conn.execute(
            "select count(*) from interactions left join click_truth using (interaction_id) "
            "where click_truth.interaction_id is null"
        ).fetchone()[0]
    assert len(new) == 2 * 2000 // 5  # the world's mean day, twice
    assert new.interaction_id.tolist() == list(range(last_id + 1, last_id + 1 + len(new)))
    next_midnight = (last_ts // 86400 + 1) * 86400
    assert new.event_ts.min() >= next_midnight and new.event_ts.max() < next_midnight + 2 * 86400
    assert (new.event_ts.diff().dropna() >= 0).all()
    assert unmatched == 0  # every impression keeps its true click probability

    with sqlite3.connect(data / "raw.db") as conn:
        conn.execute("drop table truth_users")
    refused = run_cli(
        [sys.executable, "-m", "seeds_gen", "append", "--days", "1"], data, check=False
    )
    assert "holds no synthetic world" in one_error_line(refused)
