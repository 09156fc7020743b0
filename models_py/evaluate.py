"""Judge a trained model on the test split: metrics, cold vs warm rows, same-run
baselines, the oracle on synthetic data, plots and a report in the run directory."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from models_py import metrics
from models_py.baselines import fit_lightgbm, fit_logistic
from models_py.config import TrainConfig
from models_py.data import FeatureFrame
from models_py.model import CTRModel, pick_device, predict
from models_py.pipeline import Prepared, sample_rows
from models_py.registry import FeatureSpec
from models_py.runs import write_json, write_text
from models_py.train import TrainState
from recsys_core.atomic import replacing

ORACLE_CHUNK_ROWS = 200_000


def _oracle(raw_path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """True click probabilities of ``ids`` from raw.click_truth (synthetic data only),
    read in chunks and kept only for ``ids``: memory follows the test split."""
    if not raw_path.exists():
        return None
    wanted = np.sort(ids.astype(np.int64))
    found: list[np.ndarray] = []
    with sqlite3.connect(f"file:{raw_path}?mode=ro", uri=True) as conn:
        has_truth = conn.execute(
            "select count(*) from sqlite_master where type = 'table' and name = 'click_truth'"
        ).fetchone()[0]
        if not has_truth:
            return None
        cursor = conn.execute(
            "select interaction_id, p_click, p_click_nonpersonal from click_truth"
        )
        while rows := cursor.fetchmany(ORACLE_CHUNK_ROWS):
            chunk = np.array(rows, dtype=np.float64)
            pos = np.minimum(np.searchsorted(wanted, chunk[:, 0]), len(wanted) - 1)
            found.append(chunk[wanted[pos] == chunk[:, 0]])
    truth = np.concatenate(found) if found else np.zeros((0, 3))
    order = np.argsort(truth[:, 0])
    keys = truth[order, 0]
    pos = np.minimum(np.searchsorted(keys, ids.astype(np.float64)), max(len(keys) - 1, 0))
    if len(keys) == 0 or not np.all(keys[pos] == ids):
        return None
    return truth[order][pos, 1], truth[order][pos, 2]


def fit_baselines(
    config: TrainConfig, data: Prepared, test_frame: FeatureFrame
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Logistic regression (on up to ``baseline_max_rows`` sampled training rows) and
    LightGBM (on up to ``lightgbm_max_rows``, all by default), on the model's split.
    With ``config.refit`` both also learn from the validation rows, as the model's
    wide path does: LR's sample is drawn from training + validation rows, and the
    trees are grown again on those for the rounds validation chose."""
    spec, encoders, split = data.spec, data.encoders, data.split
    labelled = np.concatenate([split.train, split.validation]) if config.refit else split.train
    rows = sample_rows(labelled, config.baseline_max_rows, config.seed)
    logistic = fit_logistic(data.frame.take(rows), test_frame, spec, encoders)
    tree_rows = sample_rows(split.train, config.lightgbm_max_rows, config.seed)
    trees = fit_lightgbm(
        data.frame.take(tree_rows),
        data.frame.take(split.validation),
        test_frame,
        spec,
        encoders,
        config.seed,
        refit=config.refit,
    )
    summary: dict[str, Any] = {
        "logistic_regression": {
            "auc": logistic["auc"],
            "logloss": logistic["logloss"],
            "train_rows": int(len(rows)),
        },
        "lightgbm": {
            "auc": trees["auc"],
            "logloss": trees["logloss"],
            "train_rows": int(len(tree_rows) + (len(split.validation) if config.refit else 0)),
            "rounds": int(trees["rounds"]),
        },
    }
    curves = {"logistic_regression": np.asarray(logistic["p"]), "lightgbm": np.asarray(trees["p"])}
    return summary, curves


def evaluate(
    model: CTRModel,
    state: TrainState,
    config: TrainConfig,
    data: Prepared,
    run_dir: Path,
    baselines: bool = True,
    refit: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Judge ``model`` on the test split (beside the baselines), write metrics.json,
    report.md and the plots. ``refit``: what the wide path's refit on training +
    validation rows recorded (models_py.train.refit_wide; empty or None: none)."""
    spec: FeatureSpec = data.spec
    device = pick_device(config)
    test_frame = data.frame.take(data.split.test)
    y = np.asarray(test_frame.columns[spec.label_column], dtype=np.int64)
    p = predict(model.to(device), data.test, device).astype(np.float64)

    user_col = spec.entity_column("user")
    item_col = spec.entity_column("item")
    users = test_frame.columns[user_col] if user_col else None
    result: dict[str, Any] = {"test": metrics.summary(y, p, users)}
    if not np.isfinite(result["test"]["auc"]):
        warnings.warn(
            f"the test split ({len(y):,} rows) holds one label only: AUC and the metrics "
            f"built on it are undefined (null in metrics.json); the data is too small "
            f"to judge the model",
            stacklevel=2,
        )
    scale, shift = (float(v) for v in model.calibration)
    result["calibration_fit"] = {"scale": scale, "shift": shift}
    p_raw = predict(model, data.test, device, raw=True).astype(np.float64)
    result["test"]["calibration_without_recalibration"] = metrics.calibration(y, p_raw)

    cold = np.zeros(len(y), dtype=bool)
    for column in (user_col, item_col):
        if column:
            cold |= ~data.frame.seen(column, data.split.train, data.split.test)
    for name, mask in (("cold", cold), ("warm", ~cold)):
        result["test"][name] = {"auc": metrics.auc(y[mask], p[mask]), "rows": int(mask.sum())}

    curves: dict[str, np.ndarray] = {"model": p}
    if baselines:
        result["baselines"], scored = fit_baselines(config, data, test_frame)
        curves.update(scored)

    truth = _oracle(
        data.warehouse.raw_path, np.asarray(test_frame.columns[spec.id_column], dtype=np.int64)
    )
    if truth is not None:
        p_true, p_nonpersonal = truth
        result["oracle"] = {"auc": metrics.auc(y, p_true), "logloss": metrics.logloss(y, p_true)}
        result["oracle_nonpersonal"] = {
            "auc": metrics.auc(y, p_nonpersonal),
            "logloss": metrics.logloss(y, p_nonpersonal),
        }
        lift = result["oracle"]["auc"] - 0.5
        result["share_of_oracle_lift"] = (result["test"]["auc"] - 0.5) / lift if lift else None
        curves["oracle"] = p_true

    result["train"] = {
        "seconds": state.train_seconds,
        "samples_per_s": state.samples_seen / state.train_seconds if state.train_seconds else 0,
        "best_step": state.best_step,
        "best_val_auc": state.best_auc,
        "wide_l2": state.wide_l2,
        "wide_fit_seconds": state.wide_fit_seconds,
        "refit_rows": int((refit or {}).get("rows", 0)),
        "refit_seconds": float((refit or {}).get("seconds", 0.0)),
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "rows": int(len(data.train_rows)),
        "streaming": data.stream is not None,
    }
    result["split_rows"] = {
        "train": int(len(data.split.train)),
        "validation": int(len(data.split.validation)),
        "test": int(len(data.split.test)),
    }
    result["features"] = [f.name for f in spec.features]

    write_json(run_dir / "metrics.json", result)
    _plots(run_dir, y, curves, p, state)
    write_text(run_dir / "report.md", report(result, config))
    return result


def _plots(
    run_dir: Path, y: np.ndarray, curves: dict[str, np.ndarray], p: np.ndarray, state: TrainState
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc(y, scores):.4f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "roc.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, 20)
    ax.plot([np.mean(p[b]) for b in bins], [np.mean(y[b]) for b in bins], "o-", label="model")
    top = max(float(np.max(p)), 1e-3)
    ax.plot([0, top], [0, top], "k:", lw=0.8, label="perfect")
    ax.set(
        xlabel="mean predicted click rate",
        ylabel="observed click rate",
        title="Calibration, test split (20 equal-count bins)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "calibration.png")
    plt.close(fig)

    fig, ax1 = plt.subplots(figsize=(6, 4))
    steps = [h["step"] for h in state.history]
    ax1.plot(steps, [h["train_loss"] for h in state.history], "C0-", label="train loss")
    ax1.set(xlabel="step", ylabel="train loss (EMA)")
    ax2 = ax1.twinx()
    ax2.plot(steps, [h["val_auc"] for h in state.history], "C1o-", label="validation AUC")
    ax2.axvline(state.best_step, color="C1", ls=":", lw=0.8)
    ax2.set(ylabel="validation AUC")
    fig.legend(loc="lower center", ncol=2, fontsize=8)
    ax1.set_title("Learning curve")
    fig.tight_layout()
    save_figure(fig, run_dir / "learning_curve.png")
    plt.close(fig)


def save_figure(fig: Any, path: Path) -> None:
    """Atomically, like every run file: a reader never sees half a PNG."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, AUC, log loss) rows shared by the terminal table and the report."""
    test = result["test"]
    rows = [("model", _fmt(test["auc"]), _fmt(test["logloss"]))]
    for name, b in result.get("baselines", {}).items():
        if isinstance(b, dict):
            rows.append((name, _fmt(b["auc"]), _fmt(b["logloss"])))
    if "oracle" in result:
        rows.append(
            ("oracle (true p)", _fmt(result["oracle"]["auc"]), _fmt(result["oracle"]["logloss"]))
        )
        rows.append(
            (
                "oracle, non-personal",
                _fmt(result["oracle_nonpersonal"]["auc"]),
                _fmt(result["oracle_nonpersonal"]["logloss"]),
            )
        )
    return rows


def terminal_table(result: dict[str, Any]) -> str:
    test = result["test"]
    lines = [f"{'':24}{'AUC':>10}{'log loss':>12}"]
    lines += [f"{a:24}{b:>10}{c:>12}" for a, b, c in table_rows(result)]
    lines.append(
        f"test: PR-AUC {_fmt(test['pr_auc'])}  NE {_fmt(test['ne'])}  calibration "
        f"{_fmt(test['calibration'])}  ECE {_fmt(test['ece'])}  GAUC {_fmt(test.get('gauc'))}"
    )
    lines.append(
        f"cold rows {test['cold']['rows']:,} AUC {_fmt(test['cold']['auc'])}; "
        f"warm rows {test['warm']['rows']:,} AUC {_fmt(test['warm']['auc'])}"
    )
    if result.get("share_of_oracle_lift") is not None:
        lines.append(
            f"share of the oracle's lift over 0.5: {100 * result['share_of_oracle_lift']:.1f}%"
        )
    train = result["train"]
    lines.append(
        f"train: {train['seconds']:.1f}s, {train['samples_per_s']:,.0f} samples/s, "
        f"best step {train['best_step']:,} of {train['steps']:,}"
        + (
            f"; wide path fitted first: {train['wide_fit_seconds']:.1f}s, L2 {train['wide_l2']:g}"
            if train.get("wide_l2")
            else ""
        )
    )
    return "\n".join(lines)


def report(result: dict[str, Any], config: TrainConfig) -> str:
    test = result["test"]
    lines = [
        "# Run report",
        "",
        "## Test split",
        "",
        "| model | AUC | log loss |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(result)]
    lines += ["", "| metric | value |", "| --- | --- |"]
    for key in ("auc", "logloss", "pr_auc", "ne", "calibration", "ece", "gauc", "rows"):
        lines.append(f"| {key} | {_fmt(test.get(key))} |")
    if "calibration_without_recalibration" in test:
        lines.append(
            f"| calibration without recalibration | "
            f"{_fmt(test['calibration_without_recalibration'])} |"
        )
    lines.append(
        f"| cold-start AUC ({test['cold']['rows']:,} rows) | {_fmt(test['cold']['auc'])} |"
    )
    lines.append(f"| warm AUC ({test['warm']['rows']:,} rows) | {_fmt(test['warm']['auc'])} |")
    if result.get("share_of_oracle_lift") is not None:
        lines.append(f"| share of oracle lift | {100 * result['share_of_oracle_lift']:.1f}% |")
    train = result["train"]
    lines += [
        "",
        "## Training",
        "",
        f"{train['rows']:,} training rows, {train['steps']:,} steps, best at step "
        f"{train['best_step']:,} (validation AUC {_fmt(train['best_val_auc'])}), "
        f"{train['seconds']:.1f}s, {train['samples_per_s']:,.0f} samples/s"
        + (
            f"; the wide path was fitted first (L2 {train['wide_l2']:g}, "
            f"{train['wide_fit_seconds']:.1f}s)."
            if train.get("wide_l2")
            else "."
        )
        + (
            f" Then the wide path was fitted again at that L2 on {train['refit_rows']:,} "
            f"training + validation rows ({train['refit_seconds']:.1f}s); the validation "
            f"AUC is the model's before that refit."
            if train.get("refit_rows")
            else ""
        ),
        "",
        "Features: " + ", ".join(result["features"]),
        "",
        "![ROC](roc.png) ![calibration](calibration.png) ![learning curve](learning_curve.png)",
        "",
        "Configuration: see config.json.",
        "",
    ]
    return "\n".join(lines)
