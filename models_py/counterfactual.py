"""Ranking quality against the truth: what users would click if shown each list.

Logged clicks follow what the system chose to show, so Recall@K on them rewards
popularity (see ranking.py). A synthetic world stores its click model
(``recsys_core.truth`` reads it back), which gives the true click probability of every candidate
for every user; each ranking's top-K can then be judged by the clicks it would
earn. Per ranking and K:

- ``true_p_at_K``: mean true click probability of the top-K at the serving
  position (1), over users;
- ``uplift_share_at_K``: (that - random) / (oracle's - random), where random is
  the expected value, the mean true p of the user's candidates: 0 is no better
  than chance, 1 is the best any ranking can do;
- ``coverage_at_K``: distinct items across all users' top-K lists;
- ``spearman``: mean per-user rank correlation of the scores with the true p.

The oracle ranks by the true p; the oracle without taste by the true p without
the user's taste term (what a perfect non-personal model would do). Random
draws seeded scores (its coverage and correlation); its true p is the expected
value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from recsys_core.truth import Truth

TRUTH_RANKINGS = (
    "model",
    "popularity",
    "model_x_exposure",
    "random",
    "oracle_without_taste",
    "oracle",
)
SERVING_POSITION = 1


class TruthTally:
    """Accumulates, user by user, how each ranking's lists fare against the truth."""

    def __init__(self, truth: Truth, candidates: np.ndarray, ks: list[int], depth: int) -> None:
        self.truth = truth
        self.candidates = candidates
        self.ks = ks
        self.depth = min(depth, len(candidates))
        self.rng = np.random.default_rng(0)
        self.true_p_sums = {name: np.zeros(self.depth) for name in TRUTH_RANKINGS}
        self.random_expected = 0.0
        self.spearman_sums = dict.fromkeys(TRUTH_RANKINGS, 0.0)
        self.listed: dict[str, dict[int, set[Any]]] = {
            name: {k: set() for k in ks} for name in TRUTH_RANKINGS
        }
        self.users = 0

    def add(self, user: Any, scores: dict[str, np.ndarray], excluded: list[int]) -> None:
        """One user: ``scores`` of every candidate by ranking (model, popularity,
        model_x_exposure); ``excluded``: candidate positions the user may not see."""
        users = np.full(len(self.candidates), user)
        p = self.truth.p_click(users, self.candidates, SERVING_POSITION)
        p_plain = self.truth.p_click(users, self.candidates, SERVING_POSITION, personal=False)
        allowed = np.ones(len(p), dtype=bool)
        allowed[excluded] = False
        every = {
            **scores,
            "random": self.rng.random(len(p)),
            "oracle_without_taste": p_plain,
            "oracle": p,
        }
        for name in TRUTH_RANKINGS:
            ranked = np.where(allowed, every[name], -np.inf)
            top = top_k(ranked, self.depth)
            self.true_p_sums[name] += np.cumsum(p[top]) / np.arange(1, len(top) + 1)
            for k in self.ks:
                self.listed[name][k].update(self.candidates[top[:k]].tolist())
            self.spearman_sums[name] += _rank_correlation(every[name][allowed], p[allowed])
        self.random_expected += float(p[allowed].mean())
        self.users += 1

    def curves(self) -> dict[str, np.ndarray]:
        """Mean true p of the top-K for K = 1..depth, per ranking."""
        n = max(self.users, 1)
        return {name: sums / n for name, sums in self.true_p_sums.items()}

    def result(self) -> dict[str, dict[str, float]]:
        n = max(self.users, 1)
        curves = self.curves()
        random = self.random_expected / n
        out: dict[str, dict[str, float]] = {}
        for name in TRUTH_RANKINGS:
            values: dict[str, float] = {}
            for k in self.ks:
                at = min(k, self.depth) - 1
                oracle = curves["oracle"][at]
                values[f"true_p_at_{k}"] = float(curves[name][at])
                values[f"uplift_share_at_{k}"] = (
                    float((curves[name][at] - random) / (oracle - random))
                    if oracle > random
                    else float("nan")
                )
                values[f"coverage_at_{k}"] = len(self.listed[name][k])
            values["spearman"] = self.spearman_sums[name] / n
            out[name] = values
        out["random"] |= {f"true_p_at_{k}": random for k in self.ks} | {
            f"uplift_share_at_{k}": 0.0 for k in self.ks
        }
        return out


def _rank_correlation(scores: np.ndarray, p: np.ndarray) -> float:
    """Spearman's rho; 0 where either side is constant (no order to compare)."""
    if len(p) < 2 or np.ptp(scores) == 0 or np.ptp(p) == 0:
        return 0.0
    return float(spearmanr(scores, p).statistic)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties by position)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]


def table(result: dict[str, dict[str, float]], ks: list[int]) -> str:
    heads = [f"true p@{k}" for k in ks] + [f"uplift@{k}" for k in ks]
    heads += [f"items@{k}" for k in ks] + ["spearman"]
    lines = [f"{'':<22}" + "".join(f"{h:>12}" for h in heads)]
    for name in TRUTH_RANKINGS:
        r = result[name]
        cells = [f"{r[f'true_p_at_{k}']:>12.4f}" for k in ks]
        cells += [f"{r[f'uplift_share_at_{k}']:>11.0%} " for k in ks]
        cells += [f"{r[f'coverage_at_{k}']:>12,}" for k in ks]
        cells.append(f"{r['spearman']:>12.3f}")
        lines.append(f"{name:<22}" + "".join(cells))
    return "\n".join(lines)


def plot(curves: dict[str, np.ndarray], path: Path) -> None:
    """True p of the top-K against K, one line per ranking."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models_py.evaluate import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in TRUTH_RANKINGS:
        values = curves[name]
        ax.plot(np.arange(1, len(values) + 1), values, label=name.replace("_", " "))
    ax.set(xlabel="K", ylabel="mean true click probability of the top-K", xscale="log")
    ax.set_title("Rankings judged against the truth (position 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
