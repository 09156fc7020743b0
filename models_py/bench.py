"""``python -m models_py.bench``: speed and memory figures, measured side by side in
one run on worlds of the given sizes. Prints a table and writes bench.json in the
data dir. Short figures are medians over repeats: these machines are noisy."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models_py.runs import write_json
from models_py.warehouse import REPO
from recsys_core.paths import data_dir

BIN = Path(sys.executable).parent
# Rows of DeepFM's one timed epoch: a slice of the training split (all of it
# below), 244 steps at batch 4096, so its start-up weighs about as much as ours.
DEEPFM_ROWS = 1_000_000
# Steps of our loop per timed run: about an epoch at 5M. What a run pays once
# (Adam's state and the embedding pages touched first; when streamed, the
# first buffer, made before the first step) weighs as little as in a real run:
# at 5M, streamed, 300 steps measured 203-217k samples/s where 2,000 steps
# measured 246-292k in the same processes.
TRAIN_STEPS = 1000


def _run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return time.perf_counter() - started


# A small middleman that runs the command and prints its peak RSS. Linux carries a
# process's resident high-water mark across exec, so a child spawned straight from
# this (large) benchmark process would report this process's size instead.
_PEAK_RSS_WRAPPER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _peak_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Run a command and return its own peak resident memory, as the kernel counts it."""
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_WRAPPER, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed: {result.stderr[-2000:]}")
    return int(result.stdout.split()[-1]) / 1024  # kilobytes on Linux


def _median(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def _deepfm_samples_per_s(data: Any, config: Any, threads: int, repeats: int) -> float | None:
    """DeepCTR-Torch's DeepFM on the same encoded features, batch size, MLP and
    threads, through its own fit loop (the `bench` extra; None when absent)."""
    try:
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import DeepFM
    except ImportError:
        print("bench: deepctr-torch not installed (pip install -e '.[bench]'); no DeepFM figure")
        return None
    import torch

    from models_py.data import categorical_slots

    torch.set_num_threads(threads)
    rows = min(DEEPFM_ROWS, len(data.train_rows))
    first = data.encode_rows(data.train_rows[:rows])  # in memory, whichever path ours takes
    categorical = first.categorical.numpy()
    numeric = first.numeric.numpy()
    labels = first.label.numpy()
    slots = categorical_slots(data.spec, data.encoders)
    columns: list[Any] = [
        SparseFeat(f"c{i}", vocabulary_size=card, embedding_dim=config.embedding_dim)
        for i, (_, card) in enumerate(slots)
    ]
    columns += [DenseFeat(f"n{j}", 1) for j in range(numeric.shape[1])]
    inputs = {f"c{i}": categorical[:, i] for i in range(categorical.shape[1])}
    inputs.update({f"n{j}": numeric[:, j] for j in range(numeric.shape[1])})

    def one_run() -> float:
        model = DeepFM(
            columns,
            columns,
            dnn_hidden_units=tuple(config.hidden),
            dnn_dropout=config.dropout,
            device="cpu",
            seed=config.seed,
        )
        model.compile("adam", "binary_crossentropy")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints even at verbose=0
            started = time.perf_counter()
            model.fit(inputs, labels, batch_size=config.batch_size, epochs=1, verbose=0)
        return rows / (time.perf_counter() - started)

    return _median(one_run, repeats)


def bench_size(impressions: int, root: Path, repeats: int) -> dict[str, Any]:
    world = root / f"world-{impressions}"
    shutil.rmtree(world, ignore_errors=True)
    target = Path(tempfile.mkdtemp(prefix="recsys-bench-target-"))
    env = {**os.environ, "RECSYS_DATA_DIR": str(world), "DBT_TARGET_PATH": str(target)}
    users, items = max(100, impressions // 50), max(50, impressions // 200)
    out: dict[str, Any] = {"impressions": impressions, "users": users, "items": items}

    seconds = _run(
        [
            sys.executable,
            "-m",
            "seeds_gen",
            "synthetic",
            "--impressions",
            str(impressions),
            "--users",
            str(users),
            "--items",
            str(items),
        ],
        env,
    )
    out["generate_load_s"] = seconds
    out["generate_load_rows_per_s"] = impressions / seconds
    out["dbt_build_duckdb_s"] = _run([str(BIN / "dbt"), "build", "--target", "duckdb"], env)
    out["dbt_build_sqlite_s"] = _run([str(BIN / "dbt"), "build", "--target", "sqlite"], env)

    import pandas as pd
    import torch

    from models_py.config import TrainConfig
    from models_py.data import read_features
    from models_py.model import predict
    from models_py.pipeline import load_checked_spec, prepare
    from models_py.train import train
    from models_py.workspace import Workspace, resolve_workspace

    workspace = resolve_workspace("sqlite", environ=env)
    warehouse = workspace.warehouse
    spec, build_id = load_checked_spec(workspace)
    cache = workspace.cache_dir

    def cold_read(engine: Workspace) -> float:
        """Fill the column cache afresh from ``engine``'s warehouse (its own build)."""
        spec, build_id = load_checked_spec(engine)
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        read_features(engine.warehouse, spec, build_id, cache)
        return time.perf_counter() - started

    def warm_read() -> float:
        started = time.perf_counter()
        frame = read_features(warehouse, spec, build_id, cache)
        torch.from_numpy(frame.columns[spec.label_column].astype("float32"))
        return time.perf_counter() - started

    def pandas_read() -> float:
        started = time.perf_counter()
        with sqlite3.connect(warehouse.path) as conn:
            pd.read_sql(f"select {', '.join(spec.columns())} from {spec.table}", conn)
        return time.perf_counter() - started

    duckdb_workspace = resolve_workspace("duckdb", environ=env)
    out["read_cold_duckdb_rows_per_s"] = impressions / _median(
        lambda: cold_read(duckdb_workspace), repeats
    )
    # last: SQLite's cache stays for the reads below
    out["read_cold_rows_per_s"] = impressions / _median(lambda: cold_read(workspace), repeats)
    out["read_warm_rows_per_s"] = impressions / _median(warm_read, repeats)
    out["read_pandas_rows_per_s"] = impressions / _median(pandas_read, max(1, repeats // 2))

    for threads in (1, 2):
        config = TrainConfig().with_overrides(
            threads=threads, max_steps=TRAIN_STEPS, evals_per_epoch=1
        )
        # the path recsys train takes at this size: in memory, or streamed from
        # the cache above stream_above_rows (the next buffer made by another thread)
        data = prepare(config, workspace)

        def one_run(config=config, data=data) -> float:
            with tempfile.TemporaryDirectory() as run_dir:
                _, state = train(config, data, Path(run_dir), progress=False)
            return state.samples_seen / state.train_seconds

        out[f"train_samples_per_s_{threads}_threads"] = _median(one_run, repeats)
    out["train_path"] = "streamed" if data.stream is not None else "in memory"

    # Each at its best thread count, and both at 2: on 2 cores ours is often
    # fastest on 1 thread (small kernels), DeepFM's may be on either.
    for threads in (1, 2):
        out[f"deepfm_samples_per_s_{threads}_threads"] = _deepfm_samples_per_s(
            data, data.config, threads=threads, repeats=repeats
        )
    deepfm = [out[f"deepfm_samples_per_s_{t}_threads"] for t in (1, 2)]
    ours = [out[f"train_samples_per_s_{t}_threads"] for t in (1, 2)]
    out["ratio_vs_deepfm"] = max(ours) / max(deepfm) if all(deepfm) else None
    out["ratio_vs_deepfm_2_threads"] = ours[1] / deepfm[1] if all(deepfm) else None

    torch.set_num_threads(1)
    from models_py.model import build_model

    model = build_model(data.spec, data.encoders, config)

    def score() -> float:
        started = time.perf_counter()
        predict(model, data.test, torch.device("cpu"))
        return len(data.test) / (time.perf_counter() - started)

    out["score_rows_per_s"] = _median(score, repeats)

    started = time.perf_counter()
    out["peak_rss_mb"] = _peak_rss_mb(
        [str(BIN / "recsys"), "train", "--quiet", "--no-baselines", "--no-track"], env
    )
    out["train_full_s"] = time.perf_counter() - started
    metrics = json.loads((world / "runs" / "latest" / "metrics.json").read_text())
    out["train_streaming"] = metrics["train"]["streaming"]
    out["test_auc"] = metrics["test"]["auc"]
    out["oracle_auc"] = metrics.get("oracle", {}).get("auc")
    out["share_of_oracle_lift"] = metrics.get("share_of_oracle_lift")

    # Last, as it changes the world: the next day arrives, and a nightly build
    # appends its features on each engine (incremental), against the full builds.
    _run([sys.executable, "-m", "seeds_gen", "append", "--days", "1"], env)
    for engine in ("duckdb", "sqlite"):
        seconds = _run([str(BIN / "dbt"), "build", "--target", engine], env)
        out[f"dbt_incremental_{engine}_s"] = seconds
        out[f"dbt_incremental_{engine}_share"] = seconds / out[f"dbt_build_{engine}_s"]
    shutil.rmtree(target, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m models_py.bench", description=__doc__)
    parser.add_argument(
        "--sizes", default="1000000", help="comma-separated impression counts (default 1000000)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = data_dir().resolve()
    root = home / "bench"
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        results.append(bench_size(int(size), root, args.repeats))
        write_json(home / "bench.json", results)  # after each size: a later failure keeps it
    keys = [k for k in results[0] if k not in ("users", "items")]
    print(f"{'':32}" + "".join(f"{r['impressions']:>16,}" for r in results))
    for key in keys[1:]:
        cells = []
        for r in results:
            value = r[key]
            cells.append(
                f"{value:>16,.0f}"
                if isinstance(value, float) and value > 100
                else f"{value:>16.4f}"
                if isinstance(value, float)
                else f"{value!s:>16}"
            )
        print(f"{key:32}" + "".join(cells))
    print(f"wrote {home / 'bench.json'}")


if __name__ == "__main__":
    main()
