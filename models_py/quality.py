"""``python -m models_py.quality`` (``make quality``): how good the model is, beside
the same-run baselines, on the worlds the modelling work is judged on.

Each world is built and trained as a user would (``seeds_gen``, ``dbt build``,
``recsys train`` with default settings, in its own data dir); the table and
``quality.json`` in the data dir hold test AUC of the model, logistic
regression and LightGBM, the oracle and the model's share of its lift, and the
training time. A benchmark, not a test: it takes 5 to 12 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models_py.runs import write_json
from models_py.warehouse import REPO
from recsys_core.paths import data_dir

BIN = Path(sys.executable).parent
ML100K_FIXTURE = REPO / "tests" / "fixtures" / "ml-100k-mini"


@dataclass(frozen=True)
class World:
    name: str
    importer: list[str]  # the seeds_gen command after `python -m seeds_gen`
    dataset: str = "synthetic"


def synthetic(name: str, impressions: int, users: int, items: int, seed: int) -> World:
    args = ["--impressions", impressions, "--users", users, "--items", items, "--seed", seed]
    return World(name, ["synthetic", *map(str, args)])


WORLDS = [
    synthetic("default, seed 42", 1_000_000, 20_000, 5_000, 42),
    synthetic("default, seed 3", 1_000_000, 20_000, 5_000, 3),
    synthetic("small, seed 21", 200_000, 5_000, 1_500, 21),
    World("MovieLens fixture", ["movielens", str(ML100K_FIXTURE)], "movielens"),
]


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"quality: {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def measure(world: World, root: Path) -> dict[str, Any]:
    """Build ``world`` from scratch in its own data dir, train with defaults, and
    return the figures of its metrics.json."""
    folder = root / world.name.replace(", ", "-").replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    target = Path(tempfile.mkdtemp(prefix="recsys-quality-target-"))
    env = {
        **os.environ,
        "RECSYS_DATA_DIR": str(folder),
        "DBT_TARGET_PATH": str(target),
        "RECSYS_DATASET": world.dataset,
    }
    try:
        _run([sys.executable, "-m", "seeds_gen", *world.importer], env)
        _run([str(BIN / "dbt"), "build", "--target", "sqlite"], env)
        started = time.perf_counter()
        _run([str(BIN / "recsys"), "train", "--quiet", "--no-track"], env)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(target, ignore_errors=True)
    metrics = json.loads((folder / "runs" / "latest" / "metrics.json").read_text())
    baselines = metrics.get("baselines", {})
    return {
        "world": world.name,
        "model": metrics["test"]["auc"],
        "logistic_regression": baselines.get("logistic_regression", {}).get("auc"),
        "lightgbm": baselines.get("lightgbm", {}).get("auc"),
        "oracle": metrics.get("oracle", {}).get("auc"),
        "share_of_oracle_lift": metrics.get("share_of_oracle_lift"),
        "calibration": metrics["test"]["calibration"],
        "train_seconds": metrics["train"]["seconds"],
        "model_seconds": model_seconds(metrics["train"]),
        "command_seconds": seconds,
        "train_rows": metrics["train"]["rows"],
    }


MODEL_SECONDS = ("wide_fit_seconds", "seconds", "refit_seconds")


def model_seconds(train: dict[str, Any]) -> float:
    """The model's whole fit: the wide path's first fit, the network's loop and
    the refit (``train.seconds`` alone is the loop, a few seconds of a minute)."""
    return sum(float(train.get(key) or 0.0) for key in MODEL_SECONDS)


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.4f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'world':<20}{'model':>8}{'logistic':>10}{'LightGBM':>10}{'oracle':>8}"
        f"{'share':>8}{'calib.':>8}{'model s':>9}{'train s':>9}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['world']:<20}{_cell(r['model']):>8}{_cell(r['logistic_regression']):>10}"
            f"{_cell(r['lightgbm']):>10}{_cell(r['oracle']):>8}"
            f"{_cell(r['share_of_oracle_lift'], percent=True):>8}"
            f"{r['calibration']:>8.3f}{r['model_seconds']:>9.1f}{r['command_seconds']:>9.1f}"
        )
    notes = (
        "model s: the model's fit (wide path, network, refit); "
        "train s: the whole `recsys train` (reading, baselines, report)"
    )
    return "\n".join([*lines, notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models_py.quality", description=__doc__)
    parser.add_argument(
        "--only", action="append", help="measure only worlds whose name contains this"
    )
    args = parser.parse_args(argv)
    root = data_dir() / "quality"
    worlds = [w for w in WORLDS if not args.only or any(o in w.name for o in args.only)]
    rows: list[dict[str, Any]] = []
    for world in worlds:
        print(f"quality: {world.name} ...", flush=True)
        rows.append(measure(world, root))
        write_json(data_dir() / "quality.json", {"worlds": rows})
    print(table(rows))
    print(f"wrote {data_dir() / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
