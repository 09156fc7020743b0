"""Same-run baselines on the same split and features: logistic regression and
gradient-boosted trees. Entity ids (thousands of levels) are left out of both;
other categoricals are one-hot (logistic) or native categories (trees)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from models_py import metrics
from models_py.data import Encoders, FeatureFrame, encode_category
from models_py.registry import FeatureSpec


def _matrices(
    frame: FeatureFrame, spec: FeatureSpec, encoders: Encoders
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Numeric matrix (standardised, NaN as 0 plus indicators) and category codes."""
    numeric, codes, cards = [], [], []
    for feature in spec.numeric:
        values = np.asarray(frame.columns[feature.name], dtype=np.float64)
        if feature.transform == "log1p":
            values = np.sign(values) * np.log1p(np.abs(values))
        mean, std = encoders.numeric_stats[feature.name]
        isnan = ~np.isfinite(values)
        numeric.append(np.where(isnan, 0.0, (values - mean) / std))
        if feature.nullable:
            numeric.append(isnan.astype(np.float64))
    for feature in spec.categorical:
        if feature.entity is not None:
            continue
        codes.append(
            encode_category(frame.columns[feature.name], encoders.vocabularies[feature.name])
        )
        cards.append(encoders.cardinality(feature.name))
    n = len(frame)
    num = np.stack(numeric, axis=1) if numeric else np.zeros((n, 0))
    cat = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64)
    return num, cat, cards


def _one_hot(cat: np.ndarray, cards: list[int]) -> np.ndarray:
    blocks = []
    for j, card in enumerate(cards):
        block = np.zeros((len(cat), card), dtype=np.float32)
        block[np.arange(len(cat)), cat[:, j]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(cat), 0))


def fit_and_score(
    train: FeatureFrame, test: FeatureFrame, spec: FeatureSpec, encoders: Encoders, seed: int
) -> dict[str, dict[str, np.ndarray | float]]:
    """Fit both baselines on ``train``; return their test predictions and metrics."""
    y_train = np.asarray(train.columns[spec.label_column], dtype=np.int64)
    y_test = np.asarray(test.columns[spec.label_column], dtype=np.int64)
    num_tr, cat_tr, cards = _matrices(train, spec, encoders)
    num_te, cat_te, _ = _matrices(test, spec, encoders)
    out: dict[str, dict[str, np.ndarray | float]] = {}

    logistic = LogisticRegression(max_iter=300, C=1.0)
    x_tr = np.hstack([num_tr, _one_hot(cat_tr, cards)])
    x_te = np.hstack([num_te, _one_hot(cat_te, cards)])
    logistic.fit(x_tr, y_train)
    p = logistic.predict_proba(x_te)[:, 1]
    out["logistic_regression"] = {
        "p": p,
        "auc": metrics.auc(y_test, p),
        "logloss": metrics.logloss(y_test, p),
    }

    n_num = num_tr.shape[1]
    x_tr = np.hstack([num_tr, cat_tr.astype(np.float64)])
    x_te = np.hstack([num_te, cat_te.astype(np.float64)])
    # native categories for small vocabularies; larger ones stay ordinal codes
    small = [c <= 255 for c in cards]
    categorical_mask = np.array([False] * n_num + small, dtype=bool)
    trees = HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.1,
        max_leaf_nodes=63,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=seed,
        categorical_features=categorical_mask if any(small) else None,
    )
    trees.fit(x_tr, y_train)
    p = trees.predict_proba(x_te)[:, 1]
    out["gbdt"] = {"p": p, "auc": metrics.auc(y_test, p), "logloss": metrics.logloss(y_test, p)}
    return out
