"""Negative downsampling with recalibration, and experiment tracking in MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models_py import metrics
from tests.conftest import copy_world, recsys


def test_recalibration_inverts_negative_downsampling():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.3, size=200_000)
    y = (rng.random(len(p)) < p).astype(int)
    w = 0.1
    downsampled_world = p / (p + (1 - p) * w)  # what a model trained on the sample learns
    q = metrics.recalibrate(downsampled_world, w)
    np.testing.assert_allclose(q, p, rtol=1e-12)
    assert metrics.calibration(y, downsampled_world) > 3
    assert metrics.calibration(y, q) == pytest.approx(1.0, abs=0.02)
    assert metrics.recalibrate(np.array([0.5]), 0.1)[0] == pytest.approx(0.5 / (0.5 + 5.0))
    assert metrics.recalibrate(p, 1.0) is p


def test_downsampled_training_reports_calibration_with_and_without(built_world, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world)
    recsys(
        [
            "train",
            "--negative-rate",
            "0.25",
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--no-baselines",
            "--no-track",
            "--quiet",
        ],
        world,
    )
    m = json.loads((world / "runs" / "latest" / "metrics.json").read_text())
    raw, fixed = m["test"]["calibration_without_recalibration"], m["test"]["calibration"]
    assert raw > 2, "a model trained on 1/4 of the negatives over-predicts ~3x"
    assert abs(fixed - 1) < abs(raw - 1) / 3
    assert m["train"]["rows"] < 0.4 * m["split_rows"]["train"]


def test_training_runs_are_logged_to_the_local_mlflow_store(built_world, trained_run):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{built_world / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("recsys")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"attributes.run_name = '{trained_run.name}'"
    )
    assert len(runs) == 1
    run = runs[0]
    m = json.loads((trained_run / "metrics.json").read_text())
    assert run.data.metrics["test.auc"] == pytest.approx(m["test"]["auc"])
    assert run.data.params["embedding_dim"] == "8"
    assert len(run.data.tags["git_commit"]) in (7, 40) or run.data.tags["git_commit"] == "unknown"
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert len(history) >= 2 and sorted(h.step for h in history) == [h.step for h in history]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "roc.png", "metrics.json", "features.json"} <= artifacts


def test_a_broken_tracking_store_never_loses_the_training_run(built_world, tmp_path):
    world = tmp_path / "world"
    copy_world(built_world, world)
    (world / "mlflow.db").write_text("this is not a database\n")  # a corrupt store
    result = recsys(
        ["train", "--max-steps", "6", "--batch-size", "256", "--no-baselines", "--quiet"], world
    )
    assert "warning: MLflow tracking disabled for this run" in result.stderr
    assert (world / "runs" / "latest" / "metrics.json").exists()
