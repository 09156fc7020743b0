"""The synthetic world's click model as raw tables (``truth_*``), so that the true
click probability of any (user, item, position) can be computed later:
``recsys_core.truth`` reads them back. No dbt model may read them."""

from __future__ import annotations

import numpy as np

from seeds_gen.load import Table


def truth_tables(
    *,
    user_id: np.ndarray,
    user_effect: np.ndarray,
    user_taste: np.ndarray,
    age_band: np.ndarray,
    item_id: np.ndarray,
    item_effect: np.ndarray,
    item_trait: np.ndarray,
    category: np.ndarray,
    age_x_category: np.ndarray,
    age_levels: list[str],
    category_levels: list[str],
    intercept: float,
    position_slope: float,
    taste_scale: float,
) -> list[Table]:
    """The click model's parameters as raw tables (what ``load_truth`` reads back).
    ``age_x_category[a, c]`` is the effect of ``age_levels[a]`` x ``category_levels[c]``."""
    dim = user_taste.shape[1]
    taste = {f"taste_{k + 1}": user_taste[:, k] for k in range(dim)}
    trait = {f"trait_{k + 1}": item_trait[:, k] for k in range(dim)}
    pairs = [(a, c) for a in range(len(age_levels)) for c in range(len(category_levels))]
    return [
        Table(
            "truth_users",
            {"user_id": int, "effect": float, "age_band": str, **dict.fromkeys(taste, float)},
            {"user_id": user_id, "effect": user_effect, "age_band": age_band, **taste},
            pk="user_id",
        ),
        Table(
            "truth_items",
            {"item_id": int, "effect": float, "category": str, **dict.fromkeys(trait, float)},
            {"item_id": item_id, "effect": item_effect, "category": category, **trait},
            pk="item_id",
        ),
        Table(
            "truth_age_category",
            {"age_band": str, "category": str, "effect": float},
            {
                "age_band": [age_levels[a] for a, _ in pairs],
                "category": [category_levels[c] for _, c in pairs],
                "effect": [float(age_x_category[a, c]) for a, c in pairs],
            },
        ),
        Table(
            "truth_constants",
            {"name": str, "value": float},
            {
                "name": ["intercept", "position_slope", "taste_scale"],
                "value": [float(intercept), float(position_slope), float(taste_scale)],
            },
            pk="name",
        ),
    ]
