"""The synthetic world: deterministic, consistent, realistic enough to learn from."""

from __future__ import annotations

import sqlite3
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recsys_core.truth import TRUTH_TABLES, has_truth, load_truth
from seeds_gen.synthetic import WorldSpec, generate
from tests.conftest import generate as generate_cli
from tests.conftest import run_cli


def _table(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_same_flags_and_seed_give_identical_tables(tmp_path):
    for name in ("a", "b"):
        generate_cli(tmp_path / name, impressions=5000, users=300, items=100, seed=3)
    for table in ("users", "items", "interactions", "click_truth", *TRUTH_TABLES):
        sql = f"select * from {table} order by 1"
        assert _table(tmp_path / "a" / "raw.db", sql) == _table(tmp_path / "b" / "raw.db", sql)


def test_different_seeds_give_different_worlds(tmp_path):
    generate_cli(tmp_path / "a", impressions=5000, users=300, items=100, seed=1)
    generate_cli(tmp_path / "b", impressions=5000, users=300, items=100, seed=2)
    sql = "select clicked from interactions order by 1"
    assert _table(tmp_path / "a" / "raw.db", "select * from interactions") != _table(
        tmp_path / "b" / "raw.db", "select * from interactions"
    ) or _table(tmp_path / "a" / "raw.db", sql) != _table(tmp_path / "b" / "raw.db", sql)


def test_interactions_reference_existing_users_and_items(tmp_path):
    generate_cli(tmp_path, impressions=8000, users=400, items=150)
    db = tmp_path / "raw.db"
    orphans = _table(
        db,
        """
        select count(*) from interactions i
        left join users u on u.user_id = i.user_id
        left join items t on t.item_id = i.item_id
        where u.user_id is null or t.item_id is null""",
    )
    assert orphans == [(0,)]
    early = _table(
        db,
        """
        select count(*) from interactions i join users u on u.user_id = i.user_id
        where i.event_ts < u.signup_ts""",
    )
    assert early == [(0,)], "impressions happen only after the user signed up"


def test_click_rate_is_about_five_percent():
    world = generate(WorldSpec(impressions=50_000, users=2000, items=500, seed=11))
    assert 0.03 <= world.click_rate <= 0.08


def test_truth_table_aligns_one_to_one_with_interactions(tmp_path):
    generate_cli(tmp_path, impressions=6000, users=300, items=100)
    db = tmp_path / "raw.db"
    counts = _table(
        db,
        """
        select (select count(*) from interactions), (select count(*) from click_truth),
               (select count(*) from interactions i join click_truth t
                  on t.interaction_id = i.interaction_id),
               (select count(*) from click_truth where p_click <= 0 or p_click >= 1)""",
    )
    n, n_truth, n_joined, n_out_of_range = counts[0]
    assert n == n_truth == n_joined == 6000
    assert n_out_of_range == 0


def test_the_stored_click_model_gives_every_logged_probability(tmp_path):
    """seeds_gen.truth, reading only raw.db's truth_* tables, recomputes the true
    probability of every logged impression, with and without the taste term."""
    generate_cli(tmp_path, impressions=6000, users=300, items=100, seed=4)
    db = tmp_path / "raw.db"
    rows = np.array(
        _table(
            db,
            """
            select i.user_id, i.item_id, i.position, t.p_click, t.p_click_nonpersonal
            from interactions as i inner join click_truth as t using (interaction_id)""",
        )
    )
    assert has_truth(db) and len(rows) == 6000
    assert len(np.unique(rows[:, 2])) == 10, "every position is exercised"
    truth = load_truth(db)
    user, item, position = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]
    np.testing.assert_allclose(truth.p_click(user, item, position), rows[:, 3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        truth.p_click(user, item, position, personal=False), rows[:, 4], rtol=0, atol=1e-12
    )
    # any pair, not only logged ones: one user against every item at position 1
    everything = truth.p_click(np.full(100, 7), np.arange(1, 101))
    assert everything.shape == (100,) and ((everything > 0) & (everything < 1)).all()
    with pytest.raises(KeyError, match="item 101 is not in the world's truth"):
        truth.p_click(np.array([1]), np.array([101]))


def test_personalised_part_matters_on_the_last_tenth_of_time():
    world = generate(WorldSpec(impressions=200_000, users=5000, items=1500, seed=5))
    assert world.test_auc - world.test_auc_nonpersonal >= 0.03
    # and the printed figures are the real ones
    ts = np.asarray(world.interactions.data["event_ts"])
    test = ts >= np.quantile(ts, 0.9)
    y = np.asarray(world.interactions.data["clicked"])[test]
    p = np.asarray(world.click_truth.data["p_click"])[test]
    assert abs(roc_auc_score(y, p) - world.test_auc) < 1e-12


def test_exposure_is_zipf_like_and_activity_heavy_tailed():
    world = generate(WorldSpec(impressions=100_000, users=4000, items=1000, seed=9))
    items = np.bincount(np.asarray(world.interactions.data["item_id"]))
    users = np.sort(np.bincount(np.asarray(world.interactions.data["user_id"])))[::-1]
    top_items = np.sort(items)[::-1][: len(items) // 100].sum() / items.sum()
    top_users = users[: len(users) // 10].sum() / users.sum()
    assert top_items > 0.2, "the top 1% of items get a large share of impressions"
    assert top_users > 0.4, "the top 10% of users make a large share of impressions"
    assert users.max() >= 200, "a core of heavy users has hundreds of impressions"


def test_users_and_items_arrive_during_the_period():
    spec = WorldSpec(impressions=50_000, users=2000, items=500, days=30, seed=4)
    world = generate(spec)
    ts = np.asarray(world.interactions.data["event_ts"])
    signup = np.asarray(world.users.data["signup_ts"])
    created = np.asarray(world.items.data["created_ts"])
    assert (signup > ts.min()).mean() > 0.1
    assert (created > ts.min()).mean() > 0.1


def test_failed_load_leaves_the_previous_database_intact(tmp_path, monkeypatch):
    from seeds_gen import load

    generate_cli(tmp_path, impressions=3000, users=100, items=50, seed=1)
    db = tmp_path / "raw.db"
    before = _table(db, "select * from interactions order by 1")

    world = generate(WorldSpec(impressions=4000, users=100, items=50, seed=2))
    original = load._write_table
    calls = []

    def failing_write(database, table):
        calls.append(table.name)
        if table.name == "interactions":
            raise RuntimeError("disk full (simulated)")
        original(database, table)

    monkeypatch.setattr(load, "_write_table", failing_write)
    try:
        load.write_tables_atomically(db, world.tables())
    except RuntimeError:
        pass
    else:
        raise AssertionError("the simulated failure did not happen")
    assert "interactions" in calls
    assert _table(db, "select * from interactions order by 1") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".raw.db")] == []


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cases = [
        (["--impressions", "-5"], "--impressions must be a positive integer, got -5"),
        (["--users", "0"], "--users must be a positive integer, got 0"),
        (["--days", "0"], "--days must be a positive integer, got 0"),
        (["--impressions", "100", "--users", "500"], "--users (500) must not exceed"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--impressions", "ten"], "invalid int value: 'ten'"),
        (["--data-dir", str(blocker / "sub")], "cannot create data directory"),
    ]
    for args, message in cases:
        result = run_cli(
            [sys.executable, "-m", "seeds_gen", "synthetic", *args], tmp_path, check=False
        )
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_slates_show_several_items_to_one_user_in_one_second(tmp_path):
    generate_cli(tmp_path, impressions=3001, users=150, items=80, seed=4, slate_size=3)
    rows = _table(
        tmp_path / "raw.db",
        "select user_id, event_ts, count(*), min(position), max(position) "
        "from interactions group by user_id, event_ts",
    )
    sizes = sorted(r[2] for r in rows)
    assert sum(sizes) == 3001
    assert sizes.count(3) >= 990, "nearly every request is a full slate in one second"
    assert all(r[3] == 1 and r[4] == r[2] for r in rows if r[2] == 3)
