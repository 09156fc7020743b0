"""Metrics of click predictions, each defined once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

EPS = 1e-7


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC; NaN when only one class is present."""
    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1]))


def normalised_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """Log loss divided by the entropy of the base rate (below 1 = better than the rate)."""
    rate = float(np.mean(y))
    if rate in (0.0, 1.0):
        return float("nan")
    base = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    return logloss(y, p) / base


def calibration(y: np.ndarray, p: np.ndarray) -> float:
    """Sum of predictions over sum of clicks: 1 is calibrated on average."""
    clicks = float(np.sum(y))
    return float(np.sum(p)) / clicks if clicks else float("nan")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 20) -> float:
    """Impression-weighted |mean prediction - click rate| over equal-count bins."""
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        error += len(chunk) * abs(float(np.mean(p[chunk])) - float(np.mean(y[chunk])))
    return error / len(y)


def gauc(users: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    """Per-user AUC weighted by the user's impressions; users with one class skipped.

    Vectorised with the rank-sum form of AUC (ties get average ranks), which equals
    roc_auc_score per user without a Python loop over users.
    """
    frame = pd.DataFrame({"u": pd.Index(users, dtype=object).astype(str), "y": y, "p": p})
    frame["rank"] = frame.groupby("u")["p"].rank(method="average")
    per_user = frame.groupby("u").agg(n=("y", "size"), pos=("y", "sum"))
    per_user["rank_sum"] = frame[frame["y"] == 1].groupby("u")["rank"].sum()
    per_user = per_user[(per_user["pos"] > 0) & (per_user["pos"] < per_user["n"])]
    if per_user.empty:
        return float("nan")
    neg = per_user["n"] - per_user["pos"]
    user_auc = (per_user["rank_sum"] - per_user["pos"] * (per_user["pos"] + 1) / 2) / (
        per_user["pos"] * neg
    )
    return float((user_auc * per_user["n"]).sum() / per_user["n"].sum())


def summary(y: np.ndarray, p: np.ndarray, users: np.ndarray | None = None) -> dict[str, float]:
    out = {
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "pr_auc": float(average_precision_score(y, p)) if np.any(y) else float("nan"),
        "ne": normalised_entropy(y, p),
        "calibration": calibration(y, p),
        "ece": expected_calibration_error(y, p),
        "rows": int(len(y)),
    }
    if users is not None:
        out["gauc"] = gauc(users, y, p)
    return out
