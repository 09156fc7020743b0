"""Serving: recommendations for one user, top-K lists written back atomically."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from models_py import serving
from models_py.counterfactual import TRUTH_RANKINGS, TruthTally
from models_py.ranking import build_as_of_marts
from models_py.serving import AS_OF_SUFFIX
from recsys_core.truth import TRUTH_TABLES, Truth
from tests.conftest import copy_world, dbt, recsys, world_workspace


def _heavy_clicker(world) -> int:
    with sqlite3.connect(world / "warehouse.db") as conn:
        return conn.execute(
            "select user_id from int_interactions where clicked = 1 "
            "group by user_id order by count(*) desc limit 1"
        ).fetchone()[0]


def test_recommend_excludes_items_the_user_clicked(built_world, trained_run):
    user = _heavy_clicker(built_world)
    with sqlite3.connect(built_world / "warehouse.db") as conn:
        clicked = {
            r[0]
            for r in conn.execute(
                "select item_id from int_interactions where clicked = 1 and user_id = ?", [user]
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


def test_a_run_whose_category_slots_changed_meaning_is_not_served(
    built_world, trained_run, tmp_path
):
    """The slot columns are a user's history per category slot: served against a
    warehouse whose slots now mean other categories, the run's slot weights would
    apply to the wrong history, so recommend refuses in one line."""
    world = copy_world(built_world, tmp_path / "world", runs=True)
    with sqlite3.connect(world / "warehouse.db") as conn:
        first, second = conn.execute(
            "select category from category_history_slots where slot in (1, 2) order by slot"
        ).fetchall()
        conn.execute("update category_history_slots set slot = 3 - slot where slot in (1, 2)")
    result = recsys(["recommend", "--user", str(_heavy_clicker(world))], world, check=False)
    assert result.returncode == 2
    assert (
        f"was trained with category slot 1 meaning {first[0]!r}, but the warehouse's "
        f"category_history_slots now says {second[0]!r}: train a new run"
    ) in result.stderr
    assert recsys(["recommend", "--user", "1"], built_world).returncode == 0


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
            "--quiet",
            "--output",
            "json",
            "--inline",
            "select count(*) as n from {{ source('serving', 'predictions') }} p "
            "join {{ ref('stg_items') }} i on i.item_id = p.item_id",
        ],
        world,
    )
    assert json.loads(shown.stdout) == {"show": [{"n": len(table)}]}


def test_a_failed_score_leaves_the_previous_predictions_intact(built_world, trained_run, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world, runs=True)
    recsys(["score", "-k", "2", "--candidates", "10", "--quiet"], world)
    with sqlite3.connect(world / "warehouse.db") as conn:
        before = pd.read_sql("select * from predictions", conn)

    scorer = serving.load_scorer(world_workspace(world), world / "runs" / trained_run.name)
    rows, _ = serving.score_top_k(scorer, 2, 10, progress=False)
    broken = rows.astype({"score": object})
    broken.loc[broken.index[len(broken) // 2], "score"] = "not a number"
    with pytest.raises(ValueError):  # raised mid-insert, after half the rows went in
        serving.write_predictions(scorer.warehouse, broken, "broken-run")
    with sqlite3.connect(world / "warehouse.db") as conn:
        after = pd.read_sql("select * from predictions", conn)
    pd.testing.assert_frame_equal(before, after)


def test_recall_and_ndcg_match_hand_computed_values():
    from models_py.ranking import recall_ndcg

    # relevant {a, c}; list a, b, c: hits at ranks 1 and 3
    recall, ndcg = recall_ndcg(["a", "b", "c"], {"a", "c"}, 3)
    assert recall == 1.0
    assert ndcg == pytest.approx((1 + 1 / 2) / (1 + 1 / np.log2(3)))
    recall, ndcg = recall_ndcg(["b", "a", "c"], {"a", "c", "d"}, 2)
    assert recall == pytest.approx(1 / 3)
    assert ndcg == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_rank_scores_the_test_period_from_marts_built_before_it(built_world, trained_run, tmp_path):
    world = copy_world(built_world, tmp_path / "world", runs=True)
    target = world / "target"  # the copied world's own dbt artifacts
    results_before = (target / "run_results.json").read_bytes()
    with sqlite3.connect(world / "warehouse.db") as conn:
        serving_before = pd.read_sql("select * from user_features_latest", conn)

    out = recsys(["rank", "-k", "5", "-k", "20", "--quiet", "--no-track"], world).stdout
    assert "Recall@5" in out and "NDCG@20" in out and "popularity" in out
    result = json.loads(((world / "runs" / "latest") / "ranking.json").read_text())
    for name in ("model", "popularity", "model_x_exposure"):
        assert set(result[name]) == {"recall_at_5", "recall_at_20", "ndcg_at_5", "ndcg_at_20"}
        assert all(0 <= v <= 1 for v in result[name].values())
    assert result["popularity"]["recall_at_20"] > 0 and result["users_evaluated"] > 10

    with sqlite3.connect(world / "warehouse.db") as conn:
        events = pd.read_sql("select user_id, item_id, event_ts from int_interactions", conn)
        as_of = pd.read_sql("select * from user_features_latest__as_of", conn)
        items_as_of = pd.read_sql("select item_id from item_features_latest__as_of", conn)
        created = pd.read_sql("select item_id, created_ts from stg_items", conn)
        serving_after = pd.read_sql("select * from user_features_latest", conn)
    cut = result["as_of_ts"]
    assert (as_of["as_of_ts"] == cut).all()
    # the as-of marts count only events before the cut: no test-period leak
    before = events[events["event_ts"] < cut].groupby("user_id").size()
    counts = as_of.set_index("user_id")["user_prior_impressions"]
    assert (counts == before.reindex(counts.index, fill_value=0)).all()
    assert events["event_ts"].max() >= cut  # the cut really is inside the data
    # candidates are the items that existed before the cut
    existing = set(created.loc[created["created_ts"] < cut, "item_id"])
    assert set(items_as_of["item_id"]) == existing
    # serving tables and dbt's artifacts are untouched
    pd.testing.assert_frame_equal(serving_before, serving_after)
    assert (target / "run_results.json").read_bytes() == results_before

    # the same lists judged against the world's click model
    assert "Against the truth" in out
    truth = result["truth"]
    assert set(truth) == set(TRUTH_RANKINGS)
    for name, values in truth.items():
        for k in (5, 20):
            assert values[f"true_p_at_{k}"] <= truth["oracle"][f"true_p_at_{k}"] + 1e-12, name
            assert 1 <= values[f"coverage_at_{k}"] <= result["candidates"]
        assert -1 <= values["spearman"] <= 1
    assert truth["oracle"]["uplift_share_at_5"] == 1 and truth["random"]["uplift_share_at_5"] == 0
    assert truth["oracle"]["spearman"] == pytest.approx(1)
    assert (world / "runs" / "latest" / "ranking_truth.png").stat().st_size > 0


def test_rank_without_a_click_model_says_what_logged_clicks_can_show(
    built_world, trained_run, tmp_path
):
    world = copy_world(built_world, tmp_path / "world", runs=True)
    raw = world / "raw.db"
    stamp = raw.stat().st_mtime
    with sqlite3.connect(raw) as conn:  # as imported data: no truth tables
        for name in TRUTH_TABLES:
            conn.execute(f"drop table {name}")
    os.utime(raw, (stamp, stamp))  # the same raw data, so the features stay fresh
    out = recsys(["rank", "--users", "20", "--quiet", "--no-track"], world).stdout
    assert "reward rankings that copy the past exposure" in out
    assert "Against the truth" not in out
    result = json.loads(((world / "runs" / "latest") / "ranking.json").read_text())
    assert result["truth"] is None and result["model"]["recall_at_10"] >= 0


def test_truth_tally_scores_lists_by_the_true_probability():
    """Two users, four items: each ranking's top-K mean true p, the uplift share
    against the expected random value, coverage, and the rank correlation."""
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    truth = Truth(  # the taste term alone carries the logit: user row . item one-hot
        user_ids=np.array([1, 2]),
        user_effect=np.zeros(2),
        user_age=np.zeros(2, dtype=int),
        user_taste=np.log(p / (1 - p)),
        item_ids=np.array([10, 20, 30, 40]),
        item_effect=np.zeros(4),
        item_category=np.zeros(4, dtype=int),
        item_trait=np.eye(4),
        age_x_category=np.zeros((1, 1)),
        intercept=0.0,
        position_slope=0.0,
        taste_scale=1.0,
    )
    candidates = np.array([10, 20, 30, 40])
    tally = TruthTally(truth, candidates, ks=[1, 2], depth=4)
    tally.add(1, {n: np.array([4.0, 3, 2, 1]) for n in TRUTH_RANKINGS[:3]}, excluded=[])
    tally.add(2, {n: np.array([4.0, 3, 2, 1]) for n in TRUTH_RANKINGS[:3]}, excluded=[1])
    result = tally.result()
    # user 1 gets items 10, 20 (worst first); user 2 gets 10, 30 (20 excluded)
    assert result["model"]["true_p_at_1"] == pytest.approx((p[0, 0] + p[1, 0]) / 2)
    assert result["model"]["true_p_at_2"] == pytest.approx(
        ((p[0, 0] + p[0, 1]) / 2 + (p[1, 0] + p[1, 2]) / 2) / 2
    )
    assert result["oracle"]["true_p_at_1"] == pytest.approx((p[0, 3] + p[1, 0]) / 2)
    random = (p[0].mean() + p[1, [0, 2, 3]].mean()) / 2
    assert result["random"]["true_p_at_1"] == pytest.approx(random)
    share = (result["model"]["true_p_at_1"] - random) / (result["oracle"]["true_p_at_1"] - random)
    assert result["model"]["uplift_share_at_1"] == pytest.approx(share)
    assert result["model"]["coverage_at_2"] == 3  # 10, 20, 30
    assert result["model"]["spearman"] == pytest.approx((-1 + 1) / 2)


@pytest.mark.parametrize("target", ["sqlite", "duckdb"])
def test_serving_computes_the_training_features_at_the_same_moment(
    built_world, trained_run, tmp_path, target
):
    """Serving equals training, value for value. Hypothetical impressions of many
    (user, item) pairs are logged at one moment T; dbt builds their training rows
    with the window SQL, and the serving marts as of T; the features a scorer
    assembles for those pairs must equal the training rows."""
    world = copy_world(built_world, tmp_path / "world", runs=True)
    raw = world / "raw.db"
    with sqlite3.connect(raw) as conn:
        times = np.sort([r[0] for r in conn.execute("select event_ts from interactions")])
        moment = int(times[len(times) * 2 // 3])
        users = conn.execute("select user_id from users where signup_ts < ?", (moment,))
        items = conn.execute("select item_id from items where created_ts < ?", (moment,))
        rng = np.random.default_rng(0)
        pairs = pd.DataFrame(
            {
                "user_id": rng.choice([r[0] for r in users], 300),
                "item_id": rng.choice([r[0] for r in items], 300),
            }
        ).drop_duplicates()
        first_id = conn.execute("select max(interaction_id) + 1 from interactions").fetchone()[0]
        ids = np.arange(first_id, first_id + len(pairs))
        rows = zip(ids.tolist(), pairs.user_id.tolist(), pairs.item_id.tolist(), strict=True)
        conn.executemany(
            "insert into interactions values (?, ?, ?, ?, 0, 1)",
            [(*row, moment) for row in rows],
        )
    dbt(["run"], world, target=target)  # the tests ran on this world already
    workspace = world_workspace(world, target)
    warehouse = workspace.warehouse
    build_as_of_marts(workspace, moment)
    scorer = serving.load_scorer(workspace, world / "runs" / trained_run.name, suffix=AS_OF_SUFFIX)
    served = scorer.features(pairs)

    conn = warehouse.connect()
    try:
        table = warehouse.qualified("fct_impression_features")
        sql = f"select * from {table} where interaction_id >= {first_id}"
        trained = conn.execute(sql).df() if target == "duckdb" else pd.read_sql(sql, conn)
    finally:
        conn.close()
    trained = trained.set_index("interaction_id").loc[ids]
    compared = [f for f in scorer.spec.features if f.serving_value is None]
    assert len(compared) >= 15 and any(f.type == "categorical" for f in compared)
    for feature in compared:
        want, got = trained[feature.name].to_numpy(dtype=object), served[feature.name]
        if feature.type == "numeric":
            np.testing.assert_allclose(
                got.astype(float), want.astype(float), rtol=1e-9, atol=1e-12, err_msg=feature.name
            )
        else:
            assert [str(v) for v in got] == [str(v) for v in want], feature.name
