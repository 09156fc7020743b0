"""Negative downsampling with calibration, and experiment tracking in MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models_py import metrics
from models_py.calibration import platt_fit
from tests.conftest import copy_world, recsys


def test_platt_scaling_undoes_negative_downsampling_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.3, size=200_000)
    y = (rng.random(len(p)) < p).astype(int)
    w = 0.1
    downsampled_world = p / (p + (1 - p) * w)  # what a model trained on the sample learns
    scale, shift = platt_fit(downsampled_world, y, w)
    logit = np.log(downsampled_world / (1 - downsampled_world))
    q = 1 / (1 + np.exp(-(scale * logit + shift)))
    assert metrics.calibration(y, downsampled_world) > 3
    assert metrics.calibration(y, q) == pytest.approx(1.0, abs=0.02)
    assert scale == pytest.approx(1.0, abs=0.05) and shift == pytest.approx(np.log(w), abs=0.1)
    assert metrics.auc(y, q) == pytest.approx(metrics.auc(y, downsampled_world), abs=1e-12)


def test_platt_scaling_without_both_classes_only_undoes_downsampling():
    assert platt_fit(np.array([0.2, 0.3]), np.array([0, 0]), 0.25) == (1.0, np.log(0.25))
    assert platt_fit(np.array([0.2, 0.3]), np.array([1, 1])) == (1.0, 0.0)


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
