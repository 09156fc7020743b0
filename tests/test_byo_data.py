"""Bring your own data: the MovieLens-100K importer (on a fixture in its format)
and the CSV loader, from files to a trained run."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BIN, ML100K_MINI, REPO, copy_project, dbt, recsys, run_cli


def seeds_gen(args: list[str], data_dir: Path, check: bool = True):
    return run_cli([sys.executable, "-m", "seeds_gen", *args], data_dir, check=check)


def query(db: Path, sql: str) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        return pd.read_sql(sql, conn)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory) -> Path:
    """The fixture imported and built, with its own dbt target (shared, read-only)."""
    data = tmp_path_factory.mktemp("movielens")
    seeds_gen(["movielens", str(ML100K_MINI)], data)
    dbt(["build"], data, RECSYS_DATASET="movielens", DBT_TARGET_PATH=str(data / "target"))
    return data


def test_movielens_import_maps_every_file(movielens):
    raw = movielens / "raw.db"
    users = query(raw, "select * from users")
    assert len(users) == 60
    bands = {"under_18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    assert set(users["age_band"]) <= bands
    assert set(users["gender"]) == {"M", "F"}
    assert users["zip_prefix"].str.len().eq(1).all()

    items = query(raw, "select * from items")
    genre_columns = [c for c in items.columns if c.startswith("genre_")]
    assert len(genre_columns) == 19 and "genre_childrens" in genre_columns
    assert "genre_sci_fi" in genre_columns and "genre_film_noir" in genre_columns
    assert items["title"].str.contains("Café Society").any()  # Latin-1 decoded
    multi = items[items[genre_columns].sum(axis=1) > 1]
    assert len(multi) > 10
    # the category is the first flagged genre in u.genre order
    genres = [line.split("|")[0] for line in (ML100K_MINI / "u.genre").read_text().split()]
    for _, row in multi.iterrows():
        first = next(g for g, c in zip(genres, genre_columns, strict=True) if row[c] == 1)
        assert row["category"] == first
    undated = items[items["item_id"] == 7].iloc[0]
    assert pd.isna(undated["created_ts"]) and pd.isna(undated["release_year"])

    ratings = query(raw, "select * from interactions")
    assert len(ratings) == len((ML100K_MINI / "u.data").read_text().splitlines())
    clean = ratings.dropna(subset=["event_ts"])
    assert ((clean["rating"] >= 4).astype(int) == clean["clicked"]).all()
    # signup = the user's first rating, so tenure is never negative
    first = clean.groupby("user_id")["event_ts"].min()
    assert (users.set_index("user_id")["signup_ts"].loc[first.index] == first).all()


def test_movielens_malformed_line_is_quarantined_not_lost(movielens):
    rejected = query(movielens / "warehouse.db", "select * from int_interactions_rejected")
    assert rejected["reason"].tolist() == ["invalid_event_time"]
    raw_rows = query(movielens / "raw.db", "select count(*) as n from interactions")["n"][0]
    staged = query(movielens / "warehouse.db", "select count(*) as n from int_interactions")
    assert staged["n"][0] + len(rejected) == raw_rows


def test_movielens_features_use_every_genre_and_handle_same_second_ties(movielens):
    fct = query(movielens / "warehouse.db", "select * from fct_impression_features")
    assert "rating" not in fct.columns  # the label's source never becomes a feature
    assert {"gender", "occupation", "zip_prefix", "release_year", "genre_drama"} <= set(fct)
    manifest = json.loads((movielens / "target" / "manifest.json").read_text())
    node = next(n for n in manifest["nodes"].values() if n.get("name") == "fct_impression_features")
    groups = {a["name"]: a["group"] for a in node["config"]["meta"]["attributes"]}
    assert sum(1 for g in groups.values() if g == "item_genres") == 19

    # Many ratings share a user and a second: none of them may count the others.
    tied = fct.groupby(["user_id", "event_ts"])["interaction_id"].transform("count") > 1
    assert tied.mean() > 0.3
    for row in fct.itertuples():
        earlier = fct[(fct["user_id"] == row.user_id) & (fct["event_ts"] < row.event_ts)]
        assert row.user_prior_impressions == len(earlier)
        assert row.user_prior_clicks == earlier["clicked"].sum()


def test_make_all_runs_the_whole_job_on_movielens(tmp_path):
    data = tmp_path / "data"
    result = subprocess.run(
        [
            "make",
            "all",
            "DATASET=movielens",
            f"ML100K_DIR={ML100K_MINI}",
            f"RECSYS_DATA_DIR={data}",
            "TRAIN_ARGS=--no-track --quiet --epochs 2",
            f"PYTHON={sys.executable}",
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DBT_TARGET_PATH"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = (data / "runs" / "latest").resolve()
    for name in ("metrics.json", "report.md", "roc.png", "calibration.png", "best.pt"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert "oracle" not in metrics  # no truth table for real data
    assert 0.5 < metrics["test"]["auc"] <= 1
    assert any(f.startswith("genre_") for f in metrics["features"])
    assert (data / "target" / "manifest.json").exists()  # kept apart from target/


def test_features_built_for_the_wrong_data_set_say_which_to_set(movielens, tmp_path):
    result = dbt(
        ["build"],
        movielens,
        check=False,
        RECSYS_DATASET="synthetic",
        DBT_TARGET_PATH=str(tmp_path / "target"),
    )
    assert result.returncode != 0
    assert "has no column 'region', an attribute of dataset 'synthetic'" in result.stdout
    assert "set RECSYS_DATASET" in result.stdout


@pytest.mark.parametrize(
    ("file", "line_no", "new_line", "message"),
    [
        ("u.item", 3, None, "u.item line 3: 5 fields, expected 24"),
        ("u.item", 4, "bad-flag", "u.item line 4 column genre_unknown: '2' is not 0 or 1"),
        ("u.item", 5, "bad-date", "u.item line 5 column release_date: '1995-01-01' is not a date"),
        ("u.user", 2, "x|20|M|writer|12345", "u.user line 2 column user_id: 'x' is not an integer"),
        ("u.user", 3, "3|20|M|astronaut|12345", "'astronaut' is not listed in u.occupation"),
    ],
)
def test_movielens_bad_lookup_lines_name_file_line_and_column(
    tmp_path, file, line_no, new_line, message
):
    folder = shutil.copytree(ML100K_MINI, tmp_path / "ml")
    lines = (folder / file).read_bytes().decode("latin-1").splitlines()
    fields = lines[line_no - 1].split("|")
    if new_line is None:
        lines[line_no - 1] = "|".join(fields[:5])
    elif new_line == "bad-flag":
        lines[line_no - 1] = "|".join(fields[:5] + ["2"] + fields[6:])
    elif new_line == "bad-date":
        lines[line_no - 1] = "|".join(fields[:2] + ["1995-01-01"] + fields[3:])
    else:
        lines[line_no - 1] = new_line
    (folder / file).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    result = seeds_gen(["movielens", str(folder)], tmp_path / "data", check=False)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "raw.db").exists()  # nothing half-written


def test_movielens_missing_folder_or_file(tmp_path):
    result = seeds_gen(["movielens", str(tmp_path / "nowhere")], tmp_path, check=False)
    assert result.returncode == 2 and "not a folder" in result.stderr
    folder = shutil.copytree(ML100K_MINI, tmp_path / "ml")
    (folder / "u.user").unlink()
    result = seeds_gen(["movielens", str(folder)], tmp_path, check=False)
    assert result.returncode == 2 and "u.user: file not found" in result.stderr


# ---------------------------------------------------------------------------
# CSV


def write_csv_world(folder: Path, bad_rows: bool = True) -> Path:
    """A small CSV data set with extra columns (color, channel) and, optionally,
    two interactions staging must reject."""
    folder.mkdir(parents=True, exist_ok=True)
    users = ["user_id,signup_ts,plan"] + [f"{u},{1_700_000_000 + u},p{u % 3}" for u in range(40)]
    items = ["item_id,category,created_ts,color"] + [
        f"{i},c{i % 4},1699000000,{'red' if i % 2 else 'blue'}" for i in range(30)
    ]
    rows = ["user_id,item_id,event_ts,clicked,channel"]
    for n in range(1500):
        user, item = n % 40, (n * 7) % 30
        clicked = int((user + item) % 5 == 0 or (item % 2 == 1 and n % 3 == 0))
        rows.append(f"{user},{item},{1_701_000_000 + n * 600},{clicked},web")
    if bad_rows:
        rows[20] = "3,4,yesterday,0,web"
        rows[30] = '5,6,1701020000,2,"app, ios"'
    for name, lines in (("users", users), ("items", items), ("interactions", rows)):
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return folder


def csv_args(folder: Path) -> list[str]:
    return [
        "csv",
        "--users",
        str(folder / "users.csv"),
        "--items",
        str(folder / "items.csv"),
        "--interactions",
        str(folder / "interactions.csv"),
    ]


def test_csv_loads_reports_bad_rows_and_declared_extras_become_features(tmp_path):
    files = write_csv_world(tmp_path / "csv")
    data = tmp_path / "data"
    loaded = seeds_gen(csv_args(files), data)
    assert "raw.items: extra columns color loaded as text" in loaded.stdout
    assert "2 interactions with bad values" in loaded.stderr
    assert "interactions.csv line 21 column event_ts: 'yesterday'" in loaded.stderr
    assert "interactions.csv line 31 column clicked: 2 (not 0 or 1)" in loaded.stderr

    project = copy_project(tmp_path / "project")
    config = project / "dbt_project.yml"
    config.write_text(
        config.read_text().replace(
            "    csv:\n      user_attributes: []\n      item_attributes: []\n"
            "      context_attributes: []\n",
            "    csv:\n      user_attributes: [{name: plan, type: categorical}]\n"
            "      item_attributes: [{name: color, type: categorical}]\n"
            "      context_attributes: [{name: channel, type: categorical, serving_value: web}]\n",
        )
    )
    env = {"RECSYS_DATASET": "csv", "DBT_TARGET_PATH": str(tmp_path / "target")}
    dbt(["build"], data, project_dir=project, **env)
    rejected = query(data / "warehouse.db", "select * from int_interactions_rejected order by 1")
    assert sorted(rejected["reason"]) == ["invalid_event_time", "invalid_label"]
    assert "yesterday" in rejected["event_ts"].tolist()  # kept exactly as it came
    # interaction ids default to the line number, so a rejection points at its line
    assert sorted(rejected["interaction_id"].tolist()) == ["21", "31"]

    recsys(
        ["train", "--epochs", "2", "--batch-size", "128", "--quiet", "--no-track"],
        data,
        RECSYS_PROJECT_DIR=str(project),
        **env,
    )
    metrics = json.loads(((data / "runs" / "latest") / "metrics.json").read_text())
    assert {"plan", "color", "channel"} <= set(metrics["features"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: (f / "interactions.csv").write_text("user_id,item_id,event_ts\n1,2,3\n"),
            "interactions.csv line 1: missing required column 'clicked'",
        ),
        (
            lambda f: (f / "users.csv").write_text("user_id,signup_ts\n1,5\nx1,6\n"),
            "users.csv line 3 column user_id: 'x1' is not an integer",
        ),
        (
            lambda f: (f / "items.csv").write_text("item_id,category\n1,a\n2,b,extra\n"),
            "items.csv line 3: 3 fields, the header has 2",
        ),
        (
            lambda f: (f / "items.csv").write_text("item_id,category\n1,a\n1,b\n"),
            "items.csv line 3 column item_id: 1 repeats line 2",
        ),
        (
            lambda f: (f / "users.csv").write_bytes(b"user_id,name\n1,Jos\xe9\n"),
            "users.csv line 2: not valid utf-8",
        ),
        (
            lambda f: (f / "users.csv").write_text("user_id,signup_ts\n1,5\n\uff12,6\n"),
            "users.csv line 3 column user_id: '\uff12' is not an integer",
        ),
        (
            lambda f: (f / "items.csv").write_text("item_id,category\n1_5,a\n"),
            "items.csv line 2 column item_id: '1_5' is not an integer",
        ),
    ],
)
def test_csv_problems_name_file_line_and_column(tmp_path, edit, message):
    files = write_csv_world(tmp_path / "csv", bad_rows=False)
    data = tmp_path / "data"
    seeds_gen(csv_args(files), data)
    before = (data / "raw.db").read_bytes()
    edit(files)
    result = seeds_gen(csv_args(files), data, check=False)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (data / "raw.db").read_bytes() == before  # the last good load is untouched


def test_csv_with_a_byte_order_mark_loads(tmp_path):
    files = write_csv_world(tmp_path / "csv", bad_rows=False)
    for name in ("users", "items", "interactions"):
        path = files / f"{name}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = tmp_path / "data"
    seeds_gen(csv_args(files), data)
    users = query(data / "raw.db", "select * from users")
    assert "user_id" in users.columns and len(users) == 40


def test_seeds_gen_help_lists_the_importers():
    result = subprocess.run(
        [str(BIN / "python"), "-m", "seeds_gen", "--help"], capture_output=True, text=True
    )
    assert "movielens" in result.stdout and "csv" in result.stdout
