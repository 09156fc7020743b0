"""Faults and bad input: killed processes, missing or outdated inputs, lineage."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models_py import checkpoint
from recsys_core.truth import TRUTH_TABLES
from tests.conftest import (
    BIN,
    REPO,
    copy_world,
    dbt,
    generate,
    one_error_line,
    recsys,
    world_env,
    world_workspace,
)


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    """Poll ``predicate``; fail at once if ``proc`` (the process that should make
    it true) has already exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_generator_killed_mid_write_leaves_the_previous_database_usable(tmp_path):
    generate(tmp_path, impressions=3000, users=100, items=50, seed=1)
    raw = tmp_path / "raw.db"
    with sqlite3.connect(raw) as conn:
        before = conn.execute("select count(*), sum(clicked) from interactions").fetchone()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seeds_gen",
            "synthetic",
            "--impressions",
            "2000000",
            "--users",
            "20000",
            "--items",
            "5000",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(
        lambda: any(p.name.startswith(".raw.db.tmp") for p in tmp_path.iterdir()),
        120,
        "the generator to start writing",
        proc,
    )
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(raw) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        after = conn.execute("select count(*), sum(clicked) from interactions").fetchone()
    assert after == before
    dbt(["build"], tmp_path)  # and the old world still builds


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_training_killed_mid_epoch_resumes_to_the_same_final_metrics(built_world, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world)
    args = ["train", "--epochs", "2", "--batch-size", "256", "--no-baselines", "--quiet"]
    recsys(args, world)
    full = (world / "runs" / "latest").resolve()

    proc = subprocess.Popen(
        [str(BIN / "recsys"), *args],
        cwd=REPO,
        env=world_env(world),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = world / "runs"

    def second_checkpoint_written() -> bool:
        current = (
            [p for p in runs.iterdir() if p.is_dir() and p.name != full.name and not p.is_symlink()]
            if runs.exists()
            else []
        )
        if not current or not (current[0] / "last.pt").exists():
            return False
        try:
            return checkpoint.load(current[0] / "last.pt")["state"]["step"] >= 2 * 16
        except Exception:
            return False

    _wait_for(second_checkpoint_written, 300, "two evaluations of the second run", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cut = next(
        p for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and p.name != full.name
    )
    for name in ("last.pt", "best.pt"):  # never half-written
        checkpoint.load(cut / name)
    step = checkpoint.load(cut / "last.pt")["state"]["step"]
    total = checkpoint.load(full / "last.pt")["state"]["step"]
    assert 0 < step < total, "the kill landed mid-training"

    recsys(["train", "--resume", str(cut), "--no-baselines", "--quiet"], world)
    a, b = _metrics(full), _metrics(cut)
    for key in ("auc", "logloss", "gauc", "calibration"):
        assert b["test"][key] == pytest.approx(a["test"][key], abs=1e-6), key
    assert b["train"]["best_step"] == a["train"]["best_step"]


def test_missing_raw_data_stops_dbt_with_a_clear_line(tmp_path):
    result = dbt(["build"], tmp_path, check=False)
    assert result.returncode != 0
    assert "raw table 'users' not found" in result.stdout
    assert "run `make data`" in result.stdout


def test_an_older_feature_table_is_refused(built_world, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world)
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute("alter table fct_impression_features drop column user_category_ctr")
    result = recsys(["train", "--quiet"], world, check=False)
    assert "lacks column 'user_category_ctr'" in one_error_line(result)


def _train_on_edited_manifest(world: Path, tmp_path: Path, edit) -> subprocess.CompletedProcess:
    """``recsys train`` on ``world`` reading a copy of its manifest changed by ``edit``."""
    manifest = json.loads((world / "target" / "manifest.json").read_text())
    edit(manifest)
    copy = tmp_path / "target"
    copy.mkdir()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return recsys(["train", "--quiet"], world, check=False, DBT_TARGET_PATH=str(copy))


def test_a_manifest_without_feature_meta_is_refused(built_world, tmp_path):
    def drop_meta(manifest: dict) -> None:
        for node in manifest["nodes"].values():
            for column in node.get("columns", {}).values():
                column["meta"] = {}

    result = _train_on_edited_manifest(built_world, tmp_path, drop_meta)
    assert "must mark exactly one column with meta.role: id" in one_error_line(result)


def test_a_cross_with_a_column_that_is_not_a_categorical_feature_is_refused(built_world, tmp_path):
    def cross_with_nothing(manifest: dict) -> None:
        node = manifest["nodes"]["model.recsys.fct_impression_features"]
        for attribute in node["config"]["meta"]["attributes"]:
            if attribute.get("crossed_with"):
                attribute["crossed_with"] = "user_ctr"

    result = _train_on_edited_manifest(built_world, tmp_path, cross_with_nothing)
    assert "meta.crossed_with names 'user_ctr', which is not a categorical feature" in (
        one_error_line(result)
    )


def test_no_dbt_model_reads_the_truth_tables(built_world):
    manifest = json.loads((built_world / "target" / "manifest.json").read_text())
    names = ("click_truth", *TRUTH_TABLES)
    assert {f"source.recsys.raw.{name}" for name in names} <= set(manifest["sources"])
    readers = [
        uid
        for uid, node in manifest["nodes"].items()
        for source in node.get("depends_on", {}).get("nodes", [])
        if source.startswith("source.recsys.raw.") and source.split(".")[-1] in names
    ]
    assert readers == []
    for sql in (REPO / "dbt_project").rglob("*.sql"):
        text = sql.read_text().lower()
        assert not [name for name in names if name in text], sql


def test_empty_raw_tables_build_and_training_says_why_it_cannot_run(tmp_path):
    generate(tmp_path, impressions=2000, users=80, items=40, seed=2)
    with sqlite3.connect(tmp_path / "raw.db") as conn:
        conn.execute("delete from interactions")
    dbt(["build"], tmp_path)
    result = recsys(["train", "--quiet"], tmp_path, check=False)
    assert result.returncode == 2
    assert "the feature table has 0 rows: too few to split" in result.stderr


def test_score_killed_mid_write_leaves_the_previous_predictions(built_world, trained_run, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world, runs=True)
    recsys(["score", "-k", "2", "--candidates", "10", "--quiet"], world)
    db = world / "warehouse.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("select * from predictions order by user_id, rank").fetchall()

    def new_table_exists() -> bool:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.01) as conn:
                return (
                    conn.execute(
                        "select count(*) from sqlite_master where name = 'predictions__new'"
                    ).fetchone()[0]
                    == 1
                )
        except sqlite3.OperationalError:  # locked by the writer: it is writing
            return False

    proc = subprocess.Popen(
        [str(BIN / "recsys"), "score", "-k", "150", "--candidates", "300", "--quiet"],
        cwd=REPO,
        env=world_env(world),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(new_table_exists, 300, "the new predictions table to appear", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        after = conn.execute("select * from predictions order by user_id, rank").fetchall()
    assert after == before
    recsys(["score", "-k", "2", "--candidates", "10", "--quiet"], world)  # and it recovers


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_training_data_is_refused_before_training(built_world, tmp_path, label):
    world = copy_world(built_world, tmp_path / "world")
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute("update fct_impression_features set clicked = ?", [label])
    result = recsys(["train", "--quiet", "--no-track"], world, check=False)
    kind = "no clicks" if label == 0 else "only clicks"
    assert kind in one_error_line(result)
    assert not (world / "runs").exists() or not any((world / "runs").iterdir())  # no orphan run


def test_diverging_training_stops_with_one_line(built_world, tmp_path):
    world = copy_world(built_world, tmp_path / "world")
    args = ["train", "--lr", "1e30", "--wide-lr", "1e30", "--embedding-lr", "1e30", "--quiet"]
    result = recsys([*args, "--no-track", "--no-baselines"], world, check=False)
    assert "training diverged at step" in one_error_line(result)


def test_metrics_json_writes_undefined_values_as_null(tmp_path):
    import numpy as np

    from models_py.runs import write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"auc": float("nan"), "x": np.float64("inf"), "list": [1.0, np.nan]})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "auc": None,
        "x": None,
        "list": [1.0, None],
    }


def test_sigterm_during_training_says_how_to_resume(built_world, tmp_path):
    world = copy_world(built_world, tmp_path / "world")
    proc = subprocess.Popen(
        [str(BIN / "recsys"), "train", "--batch-size", "256", "--quiet", "--no-track"],
        cwd=REPO,
        env=world_env(world),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = world / "runs"
    _wait_for(lambda: any(runs.glob("*/last.pt")) if runs.exists() else False, 300, "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert stderr.strip().startswith("terminated:") and "--resume" in stderr


def test_evaluate_refuses_a_rebuilt_feature_table(built_world, trained_run, tmp_path):
    world = copy_world(built_world, tmp_path / "world", runs=True)
    run = world / "runs" / trained_run.name
    config = json.loads((run / "config.json").read_text())
    assert config["feature_build"] == checkpoint.load(run / "best.pt")["feature_build"]
    recsys(["evaluate", "--run", str(run), "--no-baselines", "--no-track"], world)  # same build
    dbt(["run", "-s", "fct_impression_features"], world)  # a new build: another invocation
    result = recsys(["evaluate", "--run", str(run), "--no-track"], world, check=False)
    assert "was trained on feature build" in one_error_line(result)
    result = recsys(["train", "--resume", str(run), "--quiet"], world, check=False)
    assert "was trained on feature build" in one_error_line(result)


@pytest.mark.parametrize("command", [["recommend", "--user", "1"], ["score", "--quiet"]])
def test_serving_refuses_stale_features_like_training(built_world, trained_run, tmp_path, command):
    world = copy_world(built_world, tmp_path / "world", runs=True)
    later = time.time() + 5
    os.utime(world / "raw.db", (later, later))  # raw data changed after the build
    result = recsys(command, world, check=False)
    assert "changed after the features were built" in one_error_line(result)


@pytest.mark.parametrize(
    "command", [["train", "--quiet"], ["evaluate", "--no-track"], ["rank"], ["score", "--quiet"]]
)
def test_a_truncated_warehouse_is_one_line_naming_the_file(
    built_world, trained_run, tmp_path, command
):
    world = copy_world(built_world, tmp_path / "world", runs=True)
    warehouse = world / "warehouse.db"
    with open(warehouse, "r+b") as f:
        f.truncate(warehouse.stat().st_size // 2)
    result = recsys(command, world, check=False)
    line = one_error_line(result)
    assert f"{warehouse} is damaged" in line and "make features" in line


def test_a_reader_keeps_its_cache_when_a_newer_build_replaces_it(built_world, tmp_path):
    """A streaming run reads its build's column cache for hours; a newer build
    opened meanwhile deletes that folder, and the reader must not notice."""
    from models_py.pipeline import load_checked_spec
    from models_py.store import open_store

    workspace = world_workspace(built_world)
    warehouse = workspace.warehouse
    spec, build = load_checked_spec(workspace)
    reader = open_store(warehouse, spec, build, tmp_path / "cache")
    column = spec.numeric[0].name
    before = reader.read(column)
    open_store(warehouse, spec, "a-newer-build", tmp_path / "cache")
    assert not reader.folder.exists(), "the newer build removed the old cache"
    assert (reader.read(column) == before).all()
    assert (reader.read(column, 100, 200) == before[100:200]).all()
    assert len(reader.read(spec.categorical[0].name)) == reader.rows


def test_the_cache_is_the_same_whatever_order_the_engine_stores_rows_in(
    built_world, tmp_path, monkeypatch
):
    """A table's rows may be stored in any order (window functions write them in
    partition order), and a large SQLite table is read in storage order by one
    thread per rowid range: the cache is the same, byte for byte, as a table
    stored in id order read by one thread, or a view (no rowid) read through
    ``order by``, so splits, batches and category codes depend on none of it."""
    from models_py import store
    from models_py.pipeline import load_checked_spec
    from models_py.store import open_store

    world = copy_world(built_world, tmp_path / "world")
    workspace = world_workspace(world)
    spec, build = load_checked_spec(workspace)
    table = spec.table
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute(f"create table in_order as select * from {table} order by {spec.id_column}")
        conn.execute(f"create table shuffled as select * from {table} order by random()")
    monkeypatch.setattr(store, "PARALLEL_READ_ROWS", 0)
    caches = {}
    for layout, threads in (("in_order", 1), ("shuffled", 1), ("shuffled", 3), ("view", 3)):
        monkeypatch.setattr(store, "READ_THREADS", threads)
        with sqlite3.connect(world / "warehouse.db") as conn:
            conn.execute(f"drop table if exists {table}")
            conn.execute(f"drop view if exists {table}")
            if layout == "view":
                conn.execute(f"create view {table} as select * from shuffled")
            else:
                conn.execute(f"create table {table} as select * from {layout}")
        folder = tmp_path / f"{layout}-{threads}"
        cache = open_store(workspace.warehouse, spec, build, folder)
        caches[folder.name] = {p.name: p.read_bytes() for p in sorted(cache.folder.iterdir())}
    assert caches["shuffled-1"] == caches["in_order-1"]
    assert caches["shuffled-3"] == caches["in_order-1"]
    assert caches["view-3"] == caches["in_order-1"]
    ids = np.frombuffer(caches["shuffled-3"][f"{spec.id_column}.bin"], dtype=np.float64)
    assert (np.diff(ids) > 0).all()


def test_a_duckdb_table_is_cached_the_same_in_any_storage_order(duckdb_world, tmp_path):
    """dbt stores DuckDB's feature table in id order, so its reader takes the
    table as scanned; a table stored in another order (rebuilt by hand, or
    appended to late) is put in id order by the reader: the same cache, byte
    for byte, with the same category codes."""
    import duckdb

    from models_py.pipeline import load_checked_spec
    from models_py.store import open_store

    world = copy_world(duckdb_world, tmp_path / "world")
    workspace = world_workspace(world, "duckdb")
    spec, build = load_checked_spec(workspace)
    table, path = spec.table, str(workspace.warehouse.path)
    with duckdb.connect(path) as conn:
        ids = np.array(conn.execute(f"select {spec.id_column} from {table}").fetchall()).ravel()
    assert (np.diff(ids) > 0).all()  # as dbt built it, scanned without an order by

    def cache_bytes(name: str) -> dict[str, bytes]:
        cache = open_store(workspace.warehouse, spec, build, tmp_path / name)
        return {p.name: p.read_bytes() for p in sorted(cache.folder.iterdir())}

    in_order = cache_bytes("in-order")
    with duckdb.connect(path) as conn:
        conn.execute(f"create table shuffled as select * from {table} order by random()")
        conn.execute(f"drop table {table}")
        conn.execute(f"create table {table} as select * from shuffled")
        scanned = np.array(conn.execute(f"select {spec.id_column} from {table}").fetchall())
    assert not (np.diff(scanned.ravel()) > 0).all()
    assert cache_bytes("shuffled") == in_order


def test_the_cache_read_ahead_keeps_order_raises_the_readers_error_and_stops_early():
    """The thread that reads the warehouse one chunk ahead hands chunks over in
    order, an error it meets is raised where the chunks are consumed, and a
    consumer that stops early (an encoding error) stops it and closes its
    connection, instead of leaving a thread blocked on a full queue."""
    import threading

    from models_py.store import read_ahead

    def failing():
        yield from ({"k": k} for k in range(5))
        raise ValueError("warehouse gone")

    seen = []
    with pytest.raises(ValueError, match="warehouse gone"):
        for chunk in read_ahead(failing):
            seen.append(chunk["k"])
    assert seen == [0, 1, 2, 3, 4]

    closed = threading.Event()

    def endless():
        try:
            k = 0
            while True:
                yield {"k": k}
                k += 1
        finally:
            closed.set()

    chunks = read_ahead(endless)
    assert next(chunks) == {"k": 0}
    chunks.close()
    assert closed.is_set()
    assert not any(t.name == "read-ahead" for t in threading.enumerate())


def test_the_cache_keeps_each_sqlite_value_as_stored(built_world, tmp_path, monkeypatch):
    """SQLite lets a column mix storage classes. The fast reader's driver types a
    chunk's column by its values and would turn an integer among text into its
    text (so 7 and '7' would share a code that serving, which reads 7, never
    finds): such a chunk is read again value by value. The cache equals the
    plain sqlite3 read of the same rows (a view), byte for byte."""
    from models_py import store
    from models_py.pipeline import load_checked_spec
    from models_py.store import open_store

    world = copy_world(built_world, tmp_path / "world")
    workspace = world_workspace(world)
    spec, build = load_checked_spec(workspace)
    table, column = spec.table, "category"
    assert column in {f.name for f in spec.categorical}
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute(f"update {table} set {column} = 7 where {spec.id_column} % 5 = 0")
        conn.execute(f"update {table} set user_ctr = 0 where {spec.id_column} % 3 = 0")
        conn.execute(f"create table mixed as select * from {table}")
    monkeypatch.setattr(store, "PARALLEL_READ_ROWS", 0)
    monkeypatch.setattr(store, "READ_THREADS", 2)
    fast = open_store(workspace.warehouse, spec, build, tmp_path / "fast")
    with sqlite3.connect(world / "warehouse.db") as conn:
        conn.execute(f"drop table {table}")
        conn.execute(f"create view {table} as select * from mixed")
    plain = open_store(workspace.warehouse, spec, build, tmp_path / "plain")
    assert 7 in fast.values[column] and "7" not in fast.values[column]
    ids = fast.read(spec.id_column)
    assert (fast.read(column)[ids % 5 == 0] == 7).all()
    assert (fast.read("user_ctr")[ids % 3 == 0] == 0).all()
    for name in spec.columns():
        assert (fast.folder / f"{name}.bin").read_bytes() == (
            plain.folder / f"{name}.bin"
        ).read_bytes(), name
    assert fast.values == plain.values


@pytest.mark.parametrize("target", ["sqlite", "duckdb"])
def test_text_in_a_numeric_feature_is_one_error_naming_the_column(duckdb_world, tmp_path, target):
    """Each engine's reader (SQLite rows, DuckDB Arrow batches) parses numbers
    stored as text and refuses other text in a numeric column, naming it."""
    import duckdb

    from models_py.pipeline import load_checked_spec
    from models_py.store import open_store
    from recsys_core.errors import UserError

    world = copy_world(duckdb_world, tmp_path / "world")
    workspace = world_workspace(world, target)
    spec, build = load_checked_spec(workspace)
    table, column = spec.table, "user_ctr"
    connect = sqlite3.connect if target == "sqlite" else duckdb.connect

    def change(*statements: str) -> None:
        conn = connect(str(workspace.warehouse.path))
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()

    if target == "duckdb":  # SQLite keeps whatever a column is given
        change(
            f"create table typed as select * from {table}",
            f"drop table {table}",
            f"create table {table} as select * replace (cast({column} as varchar) as {column}) "
            "from typed",
        )
    change(f"update {table} set {column} = '0.25' where interaction_id % 7 = 0")
    store = open_store(workspace.warehouse, spec, build, tmp_path / "parsed")
    ids = store.read(spec.id_column)
    assert (store.read(column)[ids % 7 == 0] == 0.25).all()
    change(f"update {table} set {column} = 'high' where interaction_id % 7 = 0")
    with pytest.raises(UserError, match=f"feature column '{column}' holds non-numeric values"):
        open_store(workspace.warehouse, spec, build, tmp_path / "refused")


HOSTILE_NAMES = [
    'user_ctr"; drop table fct_impression_features; --',
    "user ctr",
    "user_ctr\n",
    "user_ctr;",
    "ｕser_ctr",  # fullwidth u
    "usеr_ctr",  # Cyrillic e
    "user-ctr",
    "1user_ctr",
    "",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_identifiers_are_refused_before_any_sql(name):
    from models_py.warehouse import quote_identifier
    from recsys_core.errors import UserError

    with pytest.raises(UserError, match="refusing SQL identifier"):
        quote_identifier(name)


def test_a_manifest_with_a_hostile_column_name_is_refused(built_world, tmp_path):
    def rename_a_feature(manifest: dict) -> None:
        node = manifest["nodes"]["model.recsys.fct_impression_features"]
        node["columns"] = {
            (HOSTILE_NAMES[0] if name == "user_ctr" else name): column
            for name, column in node["columns"].items()
        }

    before = (built_world / "warehouse.db").read_bytes()
    result = _train_on_edited_manifest(built_world, tmp_path, rename_a_feature)
    assert "refusing SQL identifier" in one_error_line(result)
    assert (built_world / "warehouse.db").read_bytes() == before


def test_spark_tables_read_from_their_parquet_files_without_spark(tmp_path):
    """A Spark target's tables are Parquet folders: models_py reads them through
    DuckDB (files appended after a column was added included), tells a user
    without them what to run, and refuses to write there."""
    import duckdb

    from recsys_core.errors import UserError

    warehouse = world_workspace(tmp_path, "spark").warehouse
    assert warehouse.path == tmp_path / "spark" / "warehouse" / "main.db"
    with pytest.raises(UserError, match=r"run `make features TARGET=spark`"):
        warehouse.connect()

    builds = warehouse.path / "feature_builds"
    builds.mkdir(parents=True)
    (builds / "_SUCCESS").write_text("")  # Spark's marker files are not tables
    (warehouse.path / "not_written_yet").mkdir()  # a folder without Parquet is no table
    writer = duckdb.connect()
    writer.execute(
        f"copy (select 'fct' as relation_name, 'b1' as invocation_id, 1 as built_at_ms) "
        f"to '{builds / 'part-00000.parquet'}'"
    )
    writer.execute(
        f"copy (select 'fct' as relation_name, 'b2' as invocation_id, 2 as built_at_ms, "
        f"'{{}}' as vars_json) to '{builds / 'part-00001.parquet'}'"
    )
    conn = warehouse.connect()
    try:
        rows = conn.execute(
            f"select invocation_id, vars_json from {warehouse.qualified('feature_builds')} "
            f"order by built_at_ms"
        ).fetchall()
        tables = conn.execute("select table_name from information_schema.tables").fetchall()
    finally:
        conn.close()
    assert rows == [("b1", None), ("b2", "{}")]
    assert tables == [("feature_builds",)]
    with pytest.raises(UserError, match="whose tables only Spark writes"):
        warehouse.connect(read_only=False)
