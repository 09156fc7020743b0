"""Same-run baselines on the same split and features: logistic regression and
LightGBM, the model a data team would otherwise pick.

Entity ids (thousands of levels) are left out of both: with ids as categories
trees overfit the training period. Logistic regression reads the model's own
encoding (``data.encode``: standardised numerics, missing flags, one-hot
categories); LightGBM reads raw numerics (NaN as missing) and native
categories, and stops early on the validation split.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from models_py import metrics
from models_py.data import (
    Encoded,
    Encoders,
    FeatureFrame,
    encode,
    encode_category,
    transform_values,
)
from models_py.registry import FeatureSpec

LIGHTGBM_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "verbosity": -1,
    "deterministic": True,  # the same AUC on every run (recsys evaluate reproduces it)
    "force_row_wise": True,
}
LIGHTGBM_MAX_ROUNDS = 2000
LIGHTGBM_PATIENCE = 50


def _attribute_slots(spec: FeatureSpec) -> list[int]:
    """Columns of ``Encoded.categorical`` that hold the attributes (non-id categoricals)."""
    return [spec.categorical.index(f) for f in spec.attributes]


def _logistic_matrix(encoded: Encoded, spec: FeatureSpec, encoders: Encoders) -> sparse.csr_matrix:
    """Standardised numerics beside one-hot attributes, as one sparse matrix: the
    one-hot part is nearly all zeros (dense, at 800k rows it held 0.9 GB and its
    products were most of the fit's time)."""
    slots = _attribute_slots(spec)
    cards = [encoders.cardinality(spec.categorical[j].name) for j in slots]
    codes = encoded.categorical.numpy()[:, slots].astype(np.int64)
    rows = len(codes)
    offsets = np.cumsum([0, *cards[:-1]], dtype=np.int64)
    one_hot = sparse.csr_matrix(
        (
            np.ones(codes.size, dtype=np.float32),
            (codes + offsets).ravel(),
            np.arange(rows + 1, dtype=np.int64) * len(cards),
        ),
        shape=(rows, sum(cards)),
    )
    return sparse.hstack([sparse.csr_matrix(encoded.numeric.numpy()), one_hot], format="csr")


def _tree_matrix(frame: FeatureFrame, spec: FeatureSpec, encoders: Encoders) -> np.ndarray:
    """Raw numerics (log1p where the YAML says so; NaN = missing), then category codes."""
    columns = [
        transform_values(np.asarray(frame.columns[f.name], dtype=np.float64), f.transform)
        for f in spec.numeric
    ]
    columns += [
        encode_category(frame.columns[f.name], encoders.vocabularies[f.name]).astype(np.float64)
        for f in spec.attributes
    ]
    return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))


def _scored(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray | float]:
    return {"p": p, "auc": metrics.auc(y, p), "logloss": metrics.logloss(y, p)}


def fit_logistic(
    train: FeatureFrame, test: FeatureFrame, spec: FeatureSpec, encoders: Encoders
) -> dict[str, np.ndarray | float]:
    y_train = np.asarray(train.columns[spec.label_column], dtype=np.int64)
    y_test = np.asarray(test.columns[spec.label_column], dtype=np.int64)
    x_train = _logistic_matrix(encode(train.columns, spec, encoders), spec, encoders)
    x_test = _logistic_matrix(encode(test.columns, spec, encoders), spec, encoders)
    model = LogisticRegression(max_iter=300, C=1.0).fit(x_train, y_train)
    return _scored(y_test, model.predict_proba(x_test)[:, 1])


def fit_lightgbm(
    train: FeatureFrame,
    validation: FeatureFrame,
    test: FeatureFrame,
    spec: FeatureSpec,
    encoders: Encoders,
    seed: int,
    refit: bool = False,
) -> dict[str, np.ndarray | float]:
    """Early stopping on ``validation`` picks the number of rounds; with ``refit``
    the trees are then grown again on the training and validation rows together
    for that many rounds, as the model's wide path is refitted. All cores: a baseline
    is a reference, and `make all` waits for it."""
    import lightgbm as lgb

    def dataset(*frames: FeatureFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            np.concatenate([_tree_matrix(frame, spec, encoders) for frame in frames]),
            label=np.concatenate(
                [np.asarray(frame.columns[spec.label_column], dtype=np.float64) for frame in frames]
            ),
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=True,
        )

    n_numeric = len(spec.numeric)
    categorical = [n_numeric + i for i in range(len(spec.attributes))]
    train_set = dataset(train)
    valid_set = dataset(validation, reference=train_set)
    params = {**LIGHTGBM_PARAMS, "seed": seed, "num_threads": os.cpu_count() or 1}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=LIGHTGBM_MAX_ROUNDS,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(LIGHTGBM_PATIENCE, verbose=False)],
    )
    rounds = booster.best_iteration or booster.current_iteration()
    if refit:
        del train_set, valid_set
        booster = lgb.train(params, dataset(train, validation), num_boost_round=rounds)
    p = booster.predict(_tree_matrix(test, spec, encoders), num_iteration=rounds)
    y_test = np.asarray(test.columns[spec.label_column], dtype=np.int64)
    out = _scored(y_test, np.asarray(p, dtype=np.float64))
    out["rounds"] = float(rounds)
    return out
