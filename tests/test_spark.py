"""The Spark target: the same dbt models, unchanged, on local Spark (session mode)
over raw tables registered from Parquet, give the same feature table as SQLite,
and training on the Spark-built tables gives the same test metrics.

Needs the `spark` extra (pyspark is ~490 MB), so `make test` leaves these out
(marker `spark`) and `make test-spark` installs the extra and runs them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import dbt, generate, one_error_line, recsys, run_cli

pytestmark = pytest.mark.spark

READ_SPARK_TABLE = """
import sys
from pyspark.sql import SparkSession
data, table, out = sys.argv[1:4]
spark = (
    SparkSession.builder.enableHiveSupport()
    .config("spark.sql.warehouse.dir", f"{data}/spark/warehouse")
    .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={data}/spark")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
spark.table(table).toPandas().to_pickle(out)
spark.stop()
"""


def spark_table(data: Path, table: str, tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / f"{table}.pkl"
    result = run_cli(
        [sys.executable, "-c", READ_SPARK_TABLE, str(data), table, str(out)],
        data,
        SPARK_LOCAL_IP="127.0.0.1",
    )
    assert result.returncode == 0
    return pd.read_pickle(out)


def sqlite_table(data: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(data / "warehouse.db") as conn:
        return pd.read_sql(f"select * from {table}", conn)


def assert_same_rows(spark: pd.DataFrame, sqlite: pd.DataFrame, key: list[str]) -> None:
    assert sorted(spark.columns) == sorted(sqlite.columns)
    spark = spark[sqlite.columns].sort_values(key).reset_index(drop=True)
    sqlite = sqlite.sort_values(key).reset_index(drop=True)
    assert len(spark) == len(sqlite)
    for column in sqlite.columns:
        left, right = spark[column], sqlite[column]
        if pd.api.types.is_numeric_dtype(right) and right.dtype != object:
            np.testing.assert_allclose(
                left.astype(float), right.astype(float), rtol=0, atol=1e-9, err_msg=column
            )
        else:
            assert left.astype(str).tolist() == right.astype(str).tolist(), column


def test_spark_builds_the_same_features_as_sqlite(tmp_path):
    data = (tmp_path / "data").resolve()
    generate(data, impressions=6000, users=300, items=120, seed=11)
    # a few bad rows, so the quarantine is compared too
    with sqlite3.connect(data / "raw.db") as conn:
        conn.execute(
            "insert into interactions (interaction_id, user_id, item_id, event_ts, clicked, "
            "position) values (900001, 1, 1, 'soon', 0, 1), (900002, 99999, 1, 1704100000, 1, 2)"
        )
    env = {"DBT_TARGET_PATH": str(tmp_path / "target-sqlite")}
    dbt(["build"], data, **env)
    run_cli([sys.executable, "-m", "seeds_gen", "parquet"], data)
    spark_env = {"DBT_TARGET_PATH": str(tmp_path / "target-spark"), "SPARK_LOCAL_IP": "127.0.0.1"}
    built = dbt(["build"], data, target="spark", **spark_env)
    assert "ERROR=0" in built.stdout

    for table, key in (
        ("fct_impression_features", ["interaction_id"]),
        ("int_interactions_rejected", ["interaction_id"]),
        ("user_features_latest", ["user_id"]),
        ("item_features_latest", ["item_id"]),
    ):
        assert_same_rows(
            spark_table(data, f"main.{table}", tmp_path), sqlite_table(data, table), key
        )
    assert not Path("metastore_db").exists()  # Spark's metastore stays in the data dir

    # Training reads the Spark-built tables (their Parquet files, no Spark needed)
    # and gets the test metrics that the SQLite-built ones give.
    metrics, runs = {}, {}
    for target in ("sqlite", "spark"):
        recsys(
            [
                "train",
                "--target",
                target,
                "--epochs",
                "2",
                "--batch-size",
                "256",
                "--quiet",
                "--no-track",
            ],
            data,
            DBT_TARGET_PATH=str(tmp_path / f"target-{target}"),
        )
        runs[target] = (data / "runs" / "latest").resolve()
        metrics[target] = json.loads((runs[target] / "metrics.json").read_text())
    builds = {t: json.loads((runs[t] / "config.json").read_text())["feature_build"] for t in runs}
    assert builds["spark"] != builds["sqlite"]  # each run read its own engine's build
    for name in ("test", "baselines"):
        assert_same_numbers(metrics["spark"][name], metrics["sqlite"][name], name)
    refused = recsys(
        ["score", "--target", "spark", "--run", str(runs["spark"])],
        data,
        check=False,
        DBT_TARGET_PATH=str(tmp_path / "target-spark"),
    )
    assert refused.returncode != 0
    assert "Spark, whose tables only Spark writes" in one_error_line(refused)


def assert_same_numbers(left: object, right: object, where: str) -> None:
    """Every number of two nested metric records equal to 1e-6."""
    if isinstance(right, dict):
        assert isinstance(left, dict) and sorted(left) == sorted(right), where
        for key in right:
            assert_same_numbers(left[key], right[key], f"{where}.{key}")
    elif isinstance(right, int | float) and not isinstance(right, bool):
        assert left == pytest.approx(right, abs=1e-6), where


def test_parquet_export_keeps_every_value_as_text(tmp_path):
    data = tmp_path / "data"
    generate(data, impressions=500, users=40, items=20, seed=3)
    run_cli([sys.executable, "-m", "seeds_gen", "parquet"], data)
    import pyarrow.parquet as pq

    table = pq.read_table(data / "raw_parquet" / "interactions").to_pandas()
    with sqlite3.connect(data / "raw.db") as conn:
        raw = pd.read_sql("select * from interactions", conn)
    assert len(table) == len(raw)
    assert table["event_ts"].tolist() == raw["event_ts"].astype(str).tolist()
    schema = pq.read_schema(data / "raw_parquet" / "interactions" / "part-0.parquet")
    assert all(str(t) == "string" for t in schema.types)
    assert set(os.listdir(data / "raw_parquet")) == {"users", "items", "interactions"}
