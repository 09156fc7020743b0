"""Ranking quality on the test period: Recall@K and NDCG@K of the scorer's lists
against each user's clicked test items, beside a popularity ranking.

Nothing from the test period may reach the lists. The scorer therefore reads
serving marts built as of the test split's first second: `recsys rank` runs
`dbt run --select int_serving_as_of+` with var serving_as_of_ts, which builds
them as `<mart>__as_of` (the serving tables stay as they are) and keeps dbt's
artifacts in a temporary folder (target/ stays as it is). Features, the
candidate pool (items created before that second), the items excluded as
already clicked, and the popularity counts all come from before it.

Each sampled user gets every candidate item ranked (no sampled negatives,
whose metrics are biased); relevant items are the user's clicked test items
that were candidates and not clicked before.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models_py import checkpoint
from models_py.counterfactual import TruthTally, top_k
from models_py.counterfactual import plot as plot_truth
from models_py.data import time_split
from models_py.pipeline import load_checked_spec
from models_py.runs import write_json
from models_py.serving import AS_OF_SUFFIX, Scorer, load_scorer
from models_py.store import open_store
from models_py.workspace import Workspace
from recsys_core.errors import UserError
from recsys_core.truth import has_truth, load_truth

RANKINGS = ("model", "popularity", "model_x_exposure")
TRUTH_CURVE_DEPTH = 100  # the true-p-of-top-K curve runs K = 1..100


@dataclass
class Relevance:
    users: np.ndarray  # evaluated user ids
    relevant: dict[Any, set[Any]]  # user -> clicked test items that were candidates
    seen: dict[Any, set[Any]]  # user -> items clicked before the cut (excluded)
    dropped_clicks: int  # test clicks on users or items unknown at the cut


def build_as_of_marts(workspace: Workspace, as_of_ts: int) -> float:
    """Build the serving marts as of ``as_of_ts`` into `<mart>__as_of`; seconds taken."""
    dbt = shutil.which("dbt", path=str(Path(sys.executable).parent)) or shutil.which("dbt")
    if dbt is None:
        raise UserError("dbt not found: run `make setup`")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-as-of-") as artifacts:
        result = subprocess.run(
            [
                dbt,
                "run",
                "--select",
                "int_serving_as_of+",
                "--vars",
                json.dumps({"serving_as_of_ts": int(as_of_ts)}),
                "--target",
                workspace.warehouse.target,
                "--target-path",
                artifacts,
                "--project-dir",
                str(workspace.project_dir),
                "--profiles-dir",
                str(workspace.project_dir),
            ],
            cwd=workspace.project_dir,
            env=workspace.dbt_environ(),
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        errors = [line for line in result.stdout.splitlines() if "rror" in line]
        detail = errors[-1].strip() if errors else f"exit status {result.returncode}"
        raise UserError(f"building the serving marts as of the test start failed: {detail}")
    return time.perf_counter() - started


def relevance(
    frame_users: np.ndarray,
    frame_items: np.ndarray,
    labels: np.ndarray,
    event_ts: np.ndarray,
    as_of_ts: int,
    known_users: set[Any],
    candidates: set[Any],
) -> Relevance:
    """Who clicked what in the test period, and what each user clicked before it."""
    clicked = labels == 1
    before = clicked & (event_ts < as_of_ts)
    after = clicked & (event_ts >= as_of_ts)
    seen: dict[Any, set[Any]] = {}
    for user, item in zip(frame_users[before].tolist(), frame_items[before].tolist(), strict=True):
        seen.setdefault(user, set()).add(item)
    relevant: dict[Any, set[Any]] = {}
    dropped = 0
    for user, item in zip(frame_users[after].tolist(), frame_items[after].tolist(), strict=True):
        if user not in known_users or item not in candidates:
            dropped += 1
        elif item not in seen.get(user, set()):
            relevant.setdefault(user, set()).add(item)
    return Relevance(np.array(sorted(relevant)), relevant, seen, dropped)


def recall_ndcg(ranked: list[Any], relevant: set[Any], k: int) -> tuple[float, float]:
    """Recall@k = hits / |relevant|; NDCG@k with binary gains."""
    hits = [1.0 if item in relevant else 0.0 for item in ranked[:k]]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(np.dot(hits, discounts[: len(hits)]))
    ideal = float(discounts[: min(len(relevant), k)].sum())
    return sum(hits) / len(relevant), dcg / ideal


def evaluate_ranking(
    scorer: Scorer,
    rel: Relevance,
    ks: list[int],
    batch_users: int = 200,
    progress: bool = True,
    tally: TruthTally | None = None,
) -> tuple[dict[str, dict[str, float]], float]:
    """Mean Recall@K and NDCG@K over ``rel.users`` for three rankings: the model's
    click probability, popularity (recent clicks), and the model's expected clicks
    under the current exposure (probability x recent impressions). Logged clicks
    follow what the system chose to show, so the last is the fair reading of a
    CTR model on logged data; the first is what it adds per impression. With a
    ``tally`` (synthetic worlds), the same lists are also judged against the truth."""
    items = scorer.items
    candidates = items["item_id"].to_numpy()
    popularity = items["item_recent_clicks"].to_numpy(dtype=np.float64)
    # ties in recent clicks fall back to all-time clicks, then to the item order
    popularity = popularity + items["item_prior_clicks"].to_numpy(dtype=np.float64) * 1e-9
    exposure = items["item_recent_impressions"].to_numpy(dtype=np.float64) + 1.0
    position = {item: i for i, item in enumerate(candidates.tolist())}
    depth = max(ks)
    sums = {name: {f"{m}_at_{k}": 0.0 for m in ("recall", "ndcg") for k in ks} for name in RANKINGS}
    from tqdm import tqdm

    scored, seconds = 0, 0.0
    for start in tqdm(
        range(0, len(rel.users), batch_users), disable=not progress, desc="rank", unit="batch"
    ):
        batch = rel.users[start : start + batch_users]
        pairs = pd.DataFrame(
            {
                "user_id": np.repeat(batch, len(candidates)),
                "item_id": np.tile(candidates, len(batch)),
            }
        )
        began = time.perf_counter()
        model_scores = scorer.score(pairs).reshape(len(batch), len(candidates))
        seconds += time.perf_counter() - began
        scored += len(pairs)
        for row, user in enumerate(batch.tolist()):
            excluded = [position[i] for i in rel.seen.get(user, ()) if i in position]
            rankings = {
                "model": model_scores[row].copy(),
                "popularity": popularity.copy(),
                "model_x_exposure": model_scores[row] * exposure,
            }
            if tally is not None:
                tally.add(user, rankings, excluded)
            for name, scores in rankings.items():
                scores[excluded] = -np.inf
                ranked = candidates[top_k(scores, depth)].tolist()
                for k in ks:
                    recall, ndcg = recall_ndcg(ranked, rel.relevant[user], k)
                    sums[name][f"recall_at_{k}"] += recall
                    sums[name][f"ndcg_at_{k}"] += ndcg
    n = max(len(rel.users), 1)
    means = {name: {m: v / n for m, v in values.items()} for name, values in sums.items()}
    return means, scored / seconds if seconds else 0.0


def rank(
    workspace: Workspace,
    run_dir: Path,
    ks: list[int] | None = None,
    max_users: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Ranking metrics of a run on its test period; writes ranking.json in the run."""
    ks = sorted(set(ks or [10, 50]))
    if ks[0] < 1:
        raise UserError(f"-k must be >= 1, got {ks[0]}")
    if max_users < 1:
        raise UserError(f"--users must be >= 1, got {max_users}")
    config = checkpoint.restore(run_dir).config
    warehouse = workspace.warehouse
    spec, build_id = load_checked_spec(workspace)
    user_col, item_col = spec.entity_column("user"), spec.entity_column("item")
    if not user_col or not item_col:
        raise UserError("ranking needs user and item id columns (meta.entity) in the feature mart")
    store = open_store(warehouse, spec, build_id, workspace.cache_dir)
    event_ts = np.asarray(store.read(spec.time_column), dtype=np.int64)
    split = time_split(event_ts, tuple(config.split_fractions))
    as_of_ts = int(event_ts[split.test].min())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(as_of_ts))
    print(f"building the serving marts as of the test start ({stamp} UTC) with dbt ...")
    dbt_seconds = build_as_of_marts(workspace, as_of_ts)
    scorer = load_scorer(workspace, run_dir, suffix=AS_OF_SUFFIX)
    rel = relevance(
        store.read(user_col),
        store.read(item_col),
        store.read(spec.label_column),
        event_ts,
        as_of_ts,
        set(scorer.users["user_id"].tolist()),
        set(scorer.items["item_id"].tolist()),
    )
    eligible = len(rel.users)
    if eligible == 0:
        raise UserError("no user known before the test period clicked a candidate item in it")
    if eligible > max_users:
        rng = np.random.default_rng(config.seed)
        rel.users = np.sort(rng.choice(rel.users, size=max_users, replace=False))
    raw = warehouse.raw_path
    tally = (
        TruthTally(
            load_truth(raw),
            scorer.items["item_id"].to_numpy(),
            ks,
            max(TRUTH_CURVE_DEPTH, *ks),
        )
        if raw.exists() and has_truth(raw)
        else None
    )
    metrics, rate = evaluate_ranking(scorer, rel, ks, progress=progress, tally=tally)
    result = {
        "as_of_ts": as_of_ts,
        "ks": ks,
        "candidates": int(len(scorer.items)),
        "users_evaluated": int(len(rel.users)),
        "users_eligible": int(eligible),
        "mean_relevant_items": float(np.mean([len(rel.relevant[u]) for u in rel.users])),
        "test_clicks_on_unknown_users_or_items": int(rel.dropped_clicks),
        "dbt_as_of_seconds": round(dbt_seconds, 1),
        "pairs_per_second": round(rate),
        **metrics,
        "truth": tally.result() if tally is not None else None,
    }
    if tally is not None:
        plot_truth(tally.curves(), run_dir / "ranking_truth.png")
    write_json(run_dir / "ranking.json", result)
    return result


def table(result: dict[str, Any]) -> str:
    names = [m for m in result["model"]]
    heads = [n.replace("recall_at_", "Recall@").replace("ndcg_at_", "NDCG@") for n in names]
    lines = [f"{'':<18}" + "".join(f"{h:>12}" for h in heads)]
    for who in RANKINGS:
        lines.append(f"{who:<18}" + "".join(f"{result[who][n]:>12.4f}" for n in names))
    return "\n".join(lines)
