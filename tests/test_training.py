"""models_py end to end through dbt on SQLite: train, evaluate, resume, refuse."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models_py import checkpoint
from models_py.config import RULES, TrainConfig
from models_py.data import encode_category, time_split
from models_py.model import build_model
from models_py.pipeline import prepare
from models_py.train import train
from recsys_core.errors import UserError
from tests.conftest import (
    REPO,
    copy_project,
    copy_world,
    dbt,
    generate,
    one_error_line,
    recsys,
    run_cli,
    world_workspace,
)

FAST = ["--epochs", "1", "--batch-size", "512", "--quiet"]


def test_train_writes_a_complete_run_directory(trained_run):
    for name in (
        "config.json",
        "best.pt",
        "last.pt",
        "metrics.json",
        "report.md",
        "roc.png",
        "calibration.png",
        "learning_curve.png",
    ):
        assert (trained_run / name).exists(), name
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in ("auc", "logloss", "pr_auc", "ne", "calibration", "ece", "gauc"):
        assert np.isfinite(m["test"][key]), key
    assert m["test"]["cold"]["rows"] + m["test"]["warm"]["rows"] == m["test"]["rows"]
    for name in ("logistic_regression", "lightgbm"):
        assert 0.5 < m["baselines"][name]["auc"] < 1
    assert m["oracle"]["auc"] > m["oracle_nonpersonal"]["auc"]
    assert m["train"]["samples_per_s"] > 0 and m["train"]["best_step"] >= 1
    labelled = m["split_rows"]["train"] + m["split_rows"]["validation"]
    assert m["train"]["refit_rows"] == labelled, "the wide path learned from validation too"
    assert m["baselines"]["lightgbm"]["train_rows"] == labelled, "and so did the baselines"
    assert m["test"]["auc"] > 0.6, "the model learns something on a learnable world"


def test_evaluate_reproduces_the_train_time_metrics(built_world, trained_run):
    before = json.loads((trained_run / "metrics.json").read_text())
    result = recsys(["evaluate", "--run", str(trained_run)], built_world)
    assert "AUC" in result.stdout
    after = json.loads((trained_run / "metrics.json").read_text())
    for key in ("auc", "logloss", "gauc", "calibration"):
        assert after["test"][key] == pytest.approx(before["test"][key], abs=1e-9), key
    assert after["baselines"]["lightgbm"]["auc"] == pytest.approx(
        before["baselines"]["lightgbm"]["auc"]
    )


def test_unseen_ids_map_to_slot_zero_and_still_score(built_world, trained_run):
    payload = checkpoint.load(trained_run / "best.pt")
    vocab = payload["encoders"]["vocabularies"]["user_id"]
    codes = encode_category(np.array([vocab[0], 10**9, None], dtype=object), vocab)
    assert codes.tolist() == [1, 0, 0]

    from models_py.data import Encoders
    from models_py.registry import FeatureSpec

    config = TrainConfig.from_dict(payload["config"])
    data = prepare(
        config,
        world_workspace(built_world),
        encoders=Encoders.from_dict(payload["encoders"]),
        spec=FeatureSpec.from_dict(payload["spec"]),
    )
    model = build_model(data.spec, data.encoders, config)
    model.load_state_dict(payload["model"])
    names = [f.name for f in data.spec.categorical]
    ids = [names.index(data.spec.entity_column(e)) for e in ("user", "item")]
    cold = data.test.categorical[:50].clone()
    cold[:, ids] = 0  # user and item never seen
    scores = model(cold, data.test.numeric[:50]).detach()
    assert torch.isfinite(scores).all()
    warm = model(data.test.categorical[:50], data.test.numeric[:50]).detach()
    assert not torch.equal(scores, warm), "the id columns reached the model"


def _small_config(**overrides) -> TrainConfig:
    base = {
        "epochs": 1,
        "batch_size": 256,
        "evals_per_epoch": 6,
        "patience": 100,
        "baseline_max_rows": 1000,
    }
    return TrainConfig.from_dict({**base, **overrides})


def test_the_refit_learns_from_validation_rows_and_never_from_test_rows(built_world, tmp_path):
    """After training, the wide path is fitted again at the chosen L2 on training +
    validation rows: its weights move, they do not depend on the test labels at
    all, a second refit ends where the first did (a finished run resumed again),
    and ``refit=False`` leaves the model as trained."""
    from models_py.data import Encoded
    from models_py.train import refit_wide

    config = _small_config(max_steps=20)
    data = prepare(config, world_workspace(built_world), streaming=False)
    _, state = train(config, data, tmp_path, progress=False)
    assert state.wide_l2 > 0

    def refitted(data, config=config) -> tuple[torch.Tensor, dict]:
        model = checkpoint.restore(tmp_path).model()
        done = refit_wide(model, data, config, state.wide_l2, progress=False)
        return model.first_order.weight.detach().clone(), done

    trained = checkpoint.restore(tmp_path).model().first_order.weight.detach()
    weights, done = refitted(data)
    assert done["rows"] == len(data.train) + len(data.validation)
    assert not torch.allclose(weights, trained, atol=1e-4)

    flipped = Encoded(data.test.categorical, data.test.numeric, 1 - data.test.label)
    assert torch.equal(refitted(dataclasses.replace(data, test=flipped))[0], weights)

    model = checkpoint.restore(tmp_path).model()
    refit_wide(model, data, config, state.wide_l2, progress=False)
    refit_wide(model, data, config, state.wide_l2, progress=False)
    assert torch.allclose(model.first_order.weight, weights, atol=1e-3)

    # the shift matched again: calibrated predictions average validation's click rate
    from models_py.calibration import rematch_shift
    from models_py.model import predict

    scale = float(model.calibration[0])
    rematch_shift(model, data.validation)
    p = predict(model, data.validation, torch.device("cpu"))
    assert float(model.calibration[0]) == scale
    assert p.mean() == pytest.approx(float(data.validation.label.mean()), rel=1e-4)

    unchanged, done = refitted(data, config.with_overrides(refit=False))
    assert done == {} and torch.equal(unchanged, trained)

    # with negative downsampling, validation's negatives are downsampled too
    _, done = refitted(data, config.with_overrides(negative_rate=0.5))
    positives = int(data.validation.label.sum())
    assert len(data.train) + positives < done["rows"] < len(data.train) + len(data.validation)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
def test_resume_after_an_interruption_ends_exactly_like_an_uninterrupted_run(
    built_world, tmp_path, monkeypatch, streaming
):
    monkeypatch.setattr("models_py.stream.BLOCK_ROWS", 1000)  # many blocks and buffers
    config = _small_config(max_steps=60)
    data = prepare(config, world_workspace(built_world), streaming=streaming)

    full_dir = tmp_path / "full"
    full_dir.mkdir()
    _, full = train(config, data, full_dir, progress=False)

    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    evals = []

    def kill_after_second_eval(entry):
        evals.append(entry)
        if len(evals) == 2:
            raise _Killed

    with pytest.raises(_Killed):
        train(config, data, cut_dir, progress=False, on_eval=kill_after_second_eval)
    last = checkpoint.load(cut_dir / checkpoint.LAST)
    assert 0 < last["state"]["step"] < full.step
    _, resumed = train(config, data, cut_dir, resume_from=last, progress=False)

    assert resumed.step == full.step
    assert resumed.best_step == full.best_step
    assert resumed.best_auc == pytest.approx(full.best_auc, abs=1e-6)
    for a, b in zip(resumed.history, full.history, strict=True):
        assert a["val_auc"] == pytest.approx(b["val_auc"], abs=1e-6)
    best_full = checkpoint.load(full_dir / checkpoint.BEST)["model"]
    best_resumed = checkpoint.load(cut_dir / checkpoint.BEST)["model"]
    for key, tensor in best_full.items():
        torch.testing.assert_close(best_resumed[key], tensor, atol=1e-6, rtol=0)


def test_resume_from_the_cli_continues_the_run(built_world, tmp_path):
    data = tmp_path / "world"
    copy_world(built_world, data)
    recsys(["train", "--max-steps", "12", "--batch-size", "256", "--no-baselines", "--quiet"], data)
    run = (data / "runs" / "latest").resolve()
    done = checkpoint.load(run / checkpoint.LAST)["state"]["step"]
    assert done == 12
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["max_steps"] == 12
    # give the interrupted run a larger budget, as if it had been cut at step 12
    for name in (checkpoint.LAST, checkpoint.BEST):
        payload = checkpoint.load(run / name)
        payload["config"]["max_steps"] = 24
        checkpoint.save(payload, run / name)
    result = recsys(["train", "--resume", str(run), "--no-baselines", "--quiet"], data)
    assert "resuming" in result.stdout and "at step 12" in result.stdout
    assert checkpoint.load(run / checkpoint.LAST)["state"]["step"] == 24, "training continued"
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 24


def test_training_refuses_stale_failed_or_missing_features(built_world, tmp_path):
    data = tmp_path / "world"
    copy_world(built_world, data)
    raw = data / "raw.db"
    future = time.time() + 5
    os.utime(raw, (future, future))
    stale = one_error_line(recsys(["train", *FAST], data, check=False))
    assert "changed after the features were built" in stale and "make features" in stale

    (data / "warehouse.db").unlink()
    missing = one_error_line(recsys(["train", *FAST], data, check=False))
    assert missing == (
        f"error: warehouse {data / 'warehouse.db'} not found: run `make features` (dbt build) first"
    )


def test_a_feature_added_in_sql_and_yaml_reaches_the_model(tmp_path):
    project = copy_project(tmp_path / "project")
    data = tmp_path / "data"
    generate(data, impressions=4000, users=150, items=60, seed=9)
    marts = project / "dbt_project" / "models" / "marts"
    sql = marts / "fct_impression_features.sql"
    sql.write_text(
        sql.read_text().replace(
            "        cast(impressions.event_ts - users.signup_ts",
            "        cast(impressions.event_ts % 86400 as double) / 3600.0 as hour_of_day,\n"
            "        cast(impressions.event_ts - users.signup_ts",
        )
    )
    yml = marts / "fct_impression_features.yml"
    yml.write_text(
        yml.read_text().replace(
            "      - name: user_tenure_days\n",
            "      - name: hour_of_day\n"
            "        description: Hour of the day of the impression (UTC).\n"
            "        meta: {role: feature, type: numeric, group: context_time}\n"
            "      - name: user_tenure_days\n",
        )
    )
    dbt(["build"], data, project_dir=project)
    recsys(["train", *FAST, "--no-baselines"], data, RECSYS_PROJECT_DIR=str(project))
    run = (data / "runs" / "latest").resolve()
    features = json.loads((run / "metrics.json").read_text())["features"]
    assert "hour_of_day" in features
    spec = checkpoint.load(run / "best.pt")["spec"]
    assert {"name": "hour_of_day", "group": "context_time"}.items() <= next(
        f for f in spec["features"] if f["name"] == "hour_of_day"
    ).items()
    # ...but no serving mart computes it: serving refuses rather than score it as missing
    refused = recsys(
        ["recommend", "--user", "1"], data, check=False, RECSYS_PROJECT_DIR=str(project)
    )
    assert one_error_line(refused).startswith(
        "error: the run was trained on hour_of_day, which no serving mart"
    )

    # ...and ablation finds the analyst's new group with no Python change.
    recsys(
        ["ablate", "--max-steps", "4", "--batch-size", "256", "--quiet"],
        data,
        RECSYS_PROJECT_DIR=str(project),
    )
    ablation = next((data / "runs").glob("ablation-*"))
    table = (ablation / "ablation.csv").read_text()
    assert "context_time" in table and "user_history" in table
    assert (ablation / "ablation.md").exists() and (ablation / "ablation.png").exists()


def test_permuted_labels_give_chance_auc(tmp_path):
    """The leak detector: with labels shuffled before dbt builds features, nothing
    in the features can predict them, so test AUC must sit at 0.5."""
    generate(tmp_path, impressions=100_000, users=3000, items=800, seed=12)
    raw = tmp_path / "raw.db"
    with sqlite3.connect(raw) as conn:
        rows = conn.execute("select interaction_id, clicked from interactions").fetchall()
        labels = np.array([r[1] for r in rows])
        shuffled = np.random.default_rng(0).permutation(labels)
        conn.executemany(
            "update interactions set clicked = ? where interaction_id = ?",
            [(int(c), r[0]) for c, r in zip(shuffled, rows, strict=True)],
        )
    dbt(["build"], tmp_path)
    recsys(["train", "--epochs", "1", "--quiet", "--no-baselines"], tmp_path)
    m = json.loads(((tmp_path / "runs" / "latest") / "metrics.json").read_text())
    assert abs(m["test"]["auc"] - 0.5) <= 0.03, m["test"]["auc"]


def test_every_config_field_has_one_declared_rule():
    """validate() checks RULES only: a field added without a rule would go unchecked."""
    assert list(RULES) == [f.name for f in dataclasses.fields(TrainConfig)]
    TrainConfig().validate()
    with pytest.raises(UserError, match=r"^hidden must be >= 1, got \[64, 0\]$"):
        TrainConfig(hidden=[64, 0]).validate()
    with pytest.raises(UserError, match=r"^numeric_buckets must be 0 or >= 2, got 1$"):
        TrainConfig(numeric_buckets=1).validate()


def test_time_split_puts_no_later_row_in_an_earlier_split():
    ts = np.array([5, 1, 3, 3, 3, 9, 7, 7, 2, 8, 4, 6])
    split = time_split(ts, (0.5, 0.25, 0.25))
    assert ts[split.train].max() < ts[split.validation].min()
    assert ts[split.validation].max() < ts[split.test].min()
    assert len(split.train) + len(split.validation) + len(split.test) == len(ts)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"epochs": 1, "colour": "red"}', "unknown key 'colour'"),
        ('{"epochs": "three"}', "epochs must be int, got str 'three'"),
        ('{"lr": -0.1}', "lr must be > 0, got -0.1"),
        ('{"embedding_lr": Infinity}', "embedding_lr must be a finite number, got inf"),
        ('{"batch_size": -1}', "batch_size must be >= 0 (0 = auto), got -1"),
        ("[1, 2]", "must hold a JSON object"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_bad_config_files_give_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    result = recsys(["train", "--config", str(path)], tmp_path, check=False)
    assert message in one_error_line(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "-1"], "batch_size must be >= 0 (0 = auto), got -1"),
        (["--wide", "tall"], "wide must be one of off, linear, crosses, got 'tall'"),
        (["--lr", "-1"], "lr must be > 0, got -1.0"),
        (["--lr", "inf"], "lr must be a finite number, got inf"),
        (["--negative-rate", "1.5"], "negative_rate must be in (0, 1], got 1.5"),
        (["--interaction", "magic"], "interaction must be one of none, dot, fm, got 'magic'"),
        (["--epochs", "x"], "invalid int value: 'x'"),
    ],
)
def test_bad_options_name_the_value(tmp_path, args, message):
    result = recsys(["train", *args], tmp_path, check=False)
    assert message in one_error_line(result)


def test_corrupt_checkpoint_is_refused_with_one_line(built_world, trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    result = recsys(["evaluate", "--run", str(run)], built_world, check=False)
    assert "is corrupt or truncated" in one_error_line(result)


def test_pickled_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "config": {}}, path)
    with pytest.raises(UserError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()


def test_help_does_not_import_torch():
    code = (
        "import sys; from models_py.cli import build_parser; build_parser(); "
        "assert 'torch' not in sys.modules"
    )
    run_cli([sys.executable, "-c", code], Path("."))


def test_training_from_duckdb_matches_training_from_sqlite(duckdb_world, tmp_path):
    world = copy_world(duckdb_world, tmp_path / "world")
    aucs = {}
    for target in ("sqlite", "duckdb"):
        recsys(
            [
                "train",
                "--target",
                target,
                "--max-steps",
                "20",
                "--batch-size",
                "256",
                "--no-baselines",
                "--no-track",
                "--quiet",
            ],
            world,
        )
        aucs[target] = json.loads((world / "runs" / "latest" / "metrics.json").read_text())
    assert aucs["duckdb"]["test"]["auc"] == pytest.approx(aucs["sqlite"]["test"]["auc"], abs=1e-9)
    assert aucs["duckdb"]["test"]["logloss"] == pytest.approx(
        aucs["sqlite"]["test"]["logloss"], abs=1e-9
    )


def test_two_processes_reach_the_validation_auc_of_one(built_world, tmp_path):
    world = copy_world(built_world, tmp_path / "world")
    env = {**os.environ, "RECSYS_DATA_DIR": str(world), "DBT_TARGET_PATH": str(world / "target")}
    # patience beyond the run's evaluations: both runs take every step, so the step
    # count checks the global batches (early stopping on a flat validation curve
    # would end either run at a point that float rounding decides)
    args = "--epochs 2 --batch-size 512 --patience 100 --quiet --no-track --no-baselines"
    best = {}
    for nproc in (1, 2):
        result = subprocess.run(
            ["make", "train", f"NPROC={nproc}", f"TRAIN_ARGS={args}", f"PYTHON={sys.executable}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        metrics = json.loads(((world / "runs" / "latest") / "metrics.json").read_text())
        best[nproc] = metrics["train"]["best_val_auc"]
        assert metrics["train"]["steps"] == 64  # same global batches, same step count
    assert "2 processes (gloo)" in result.stdout
    assert abs(best[2] - best[1]) < 0.005, best
