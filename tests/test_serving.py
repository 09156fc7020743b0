"""Serving: recommendations for one user, top-K lists written back atomically."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from models_py import serving
from tests.conftest import copy_world, dbt, recsys


def _heavy_clicker(world) -> int:
    with sqlite3.connect(world / "warehouse.db") as conn:
        return conn.execute(
            "select user_id from stg_interactions where clicked = 1 "
            "group by user_id order by count(*) desc limit 1"
        ).fetchone()[0]


def test_recommend_excludes_items_the_user_clicked(built_world, trained_run):
    user = _heavy_clicker(built_world)
    with sqlite3.connect(built_world / "warehouse.db") as conn:
        clicked = {
            r[0]
            for r in conn.execute(
                "select item_id from stg_interactions where clicked = 1 and user_id = ?", [user]
            )
        }
        n_items = conn.execute("select count(*) from stg_items").fetchone()[0]
    k = n_items - len(clicked)
    out = recsys(["recommend", "--user", str(user), "-k", str(k)], built_world).stdout
    items = {int(line.split()[1]) for line in out.splitlines()[1:]}
    assert len(items) == k and not items & clicked

    everything = recsys(
        ["recommend", "--user", str(user), "-k", str(n_items), "--include-clicked"], built_world
    ).stdout
    assert clicked <= {int(line.split()[1]) for line in everything.splitlines()[1:]}


def test_an_unknown_user_gets_a_cold_start_ranking_and_a_notice(built_world, trained_run):
    result = recsys(["recommend", "--user", "987654321", "-k", "3"], built_world)
    assert "notice: user 987654321 is unknown" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 2 + 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--user", "alice"], "--user must be an integer user id, got 'alice'"),
        (["--user", "1", "-k", "-2"], "-k must be >= 1, got -2"),
    ],
)
def test_recommend_validates_its_arguments(built_world, trained_run, args, message):
    result = recsys(["recommend", *args], built_world, check=False)
    assert result.returncode == 2 and message in result.stderr


def test_score_writes_top_k_lists_that_join_in_sql(built_world, trained_run, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world, runs=True)
    result = recsys(["score", "-k", "3", "--candidates", "20", "--quiet"], world)
    assert "pairs/s" in result.stdout
    with sqlite3.connect(world / "warehouse.db") as conn:
        table = pd.read_sql("select * from predictions", conn)
        n_users = conn.execute("select count(*) from stg_users").fetchone()[0]
    assert table.groupby("user_id")["rank"].apply(sorted).map(lambda r: r == [1, 2, 3]).all()
    assert table.user_id.nunique() == n_users
    assert (table.run_id == trained_run.name).all()

    shown = dbt(
        [
            "show",
            "--inline",
            "select count(*) as n from {{ source('serving', 'predictions') }} p "
            "join {{ ref('stg_items') }} i on i.item_id = p.item_id",
        ],
        world,
    )
    assert str(len(table)) in shown.stdout


def test_a_failed_score_leaves_the_previous_predictions_intact(
    built_world, trained_run, tmp_path, monkeypatch
):
    world = tmp_path / "world"
    copy_world(built_world, world, runs=True)
    recsys(["score", "-k", "2", "--candidates", "10", "--quiet"], world)
    with sqlite3.connect(world / "warehouse.db") as conn:
        before = pd.read_sql("select * from predictions", conn)

    monkeypatch.setenv("RECSYS_DATA_DIR", str(world))
    scorer = serving.load_scorer(trained_run)
    rows, _ = serving.score_top_k(scorer, 2, 10, progress=False)
    broken = rows.astype({"score": object})
    broken.loc[broken.index[len(broken) // 2], "score"] = "not a number"
    with pytest.raises(ValueError):  # raised mid-insert, after half the rows went in
        serving.write_predictions(scorer.warehouse, broken, "broken-run")
    with sqlite3.connect(world / "warehouse.db") as conn:
        after = pd.read_sql("select * from predictions", conn)
    pd.testing.assert_frame_equal(before, after)
