"""Feature ablation: train once with every feature and once without each feature
group (groups come from the dbt YAML's meta.group), same seed and budget, and
report the test AUC each group is worth."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from models_py import checkpoint
from models_py.config import TrainConfig
from models_py.evaluate import save_figure
from models_py.metrics import auc
from models_py.model import pick_device, predict
from models_py.pipeline import Prepared, prepare, with_inputs
from models_py.runs import new_run_dir, write_text
from models_py.train import refit_wide, train
from models_py.workspace import Workspace

ALL = "(all features)"


def _without(data: Prepared, config: TrainConfig, group: str | None) -> Prepared:
    """The same rows and split with one group's columns left out. The encoders
    stay: each feature's is fitted on the training split alone, whatever else
    the spec holds."""
    if group is None:
        return data
    spec = data.spec.without_groups([group])
    return with_inputs(
        data.warehouse,
        spec,
        data.frame,
        data.split,
        data.train_rows,
        config,
        data.build,
        data.encoders,
    )


def ablate(
    config: TrainConfig, workspace: Workspace, progress: bool = True
) -> tuple[Path, list[dict[str, Any]]]:
    data = prepare(config, workspace, streaming=False)  # variants re-encode in memory
    run_dir = new_run_dir(workspace.runs_dir, prefix="ablation-")
    rows: list[dict[str, Any]] = []
    for group in [None, *data.spec.groups]:
        variant = _without(data, config, group)
        model_dir = run_dir / ("all" if group is None else f"without-{group}")
        model_dir.mkdir()
        _, state = train(config, variant, model_dir, progress=progress)
        device = pick_device(config)
        model = checkpoint.restore(model_dir).model()
        refit_wide(model, variant, config, state.wide_l2, progress=False)  # as recsys train does
        model = model.to(device)
        p = predict(model, variant.test, device)
        rows.append(
            {
                "group": ALL if group is None else group,
                "test_auc": auc(variant.test.label.numpy(), p),
                "features": len(variant.spec.features),
            }
        )
        if progress:
            print(f"{rows[-1]['group']:>24}: test AUC {rows[-1]['test_auc']:.4f}")
    full = rows[0]["test_auc"]
    for row in rows:
        row["delta_vs_all"] = row["test_auc"] - full
    _write(run_dir, rows)
    return run_dir, rows


def _write(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["group", "test_auc", "delta_vs_all", "features"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_dir / "ablation.csv", buffer.getvalue())
    lines = [
        "# Feature ablation",
        "",
        "Test AUC when one feature group is left out "
        "(same seed, split and budget). A negative delta means the group helps.",
        "",
        "| group | test AUC | delta vs all |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {r['group']} | {r['test_auc']:.4f} | {r['delta_vs_all']:+.4f} |" for r in rows]
    write_text(run_dir / "ablation.md", "\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dropped = rows[1:]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(dropped) + 1.5))
    ax.barh(
        [r["group"] for r in dropped],
        [r["delta_vs_all"] for r in dropped],
        color=["C3" if r["delta_vs_all"] < 0 else "C2" for r in dropped],
    )
    ax.axvline(0, color="k", lw=0.8)
    ax.set(
        xlabel="test AUC change when the group is left out",
        title=f"Feature ablation (all features: AUC {rows[0]['test_auc']:.4f})",
    )
    fig.tight_layout()
    save_figure(fig, run_dir / "ablation.png")
    plt.close(fig)
