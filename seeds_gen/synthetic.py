"""A synthetic click world with ground truth.

Users and items have latent taste factors and biases; demographics and item
category move the click rate, and age band x category interact. Item exposure
is Zipf-like, user activity heavy-tailed, and users and items keep arriving
during the period, so cold start exists at the end. The true click probability
of every impression is kept in ``click_truth`` (with and without the personal
taste term) so evaluation can report the Bayes-optimal ceiling, and the click
model's parameters in the ``truth_*`` tables, so that ``seeds_gen.truth`` gives
the true click probability of any user, item and position (judging rankings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seeds_gen.load import Table
from seeds_gen.truth import truth_tables

START_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
SECONDS_PER_DAY = 86_400
TARGET_CLICK_RATE = 0.05
FACTOR_DIM = 4
CATEGORY_TRAIT_SHARE = 0.8
TASTE_SCALE = 0.65

AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55+"]
AGE_PROBS = [0.18, 0.30, 0.24, 0.16, 0.12]
REGIONS = ["north", "south", "east", "west", "central", "coast", "mountain", "islands"]
TIERS = ["free", "plus", "premium"]
TIER_PROBS = [0.70, 0.22, 0.08]
DEVICES = ["ios", "android", "web"]
DEVICE_PROBS = [0.40, 0.45, 0.15]
PRICE_BANDS = ["low", "mid", "high", "luxury"]
PRICE_PROBS = [0.35, 0.35, 0.22, 0.08]
N_CATEGORIES = 20
CATEGORY_NAMES = [f"cat_{c:02d}" for c in range(N_CATEGORIES)]
N_BRANDS = 200
N_POSITIONS = 10
POSITION_SLOPE = -0.08  # logit change per position below the first


@dataclass(frozen=True)
class WorldSpec:
    impressions: int = 1_000_000
    users: int = 20_000
    items: int = 5_000
    days: int = 60
    seed: int = 42
    slate_size: int = 1  # impressions per request, shown in the same second


@dataclass
class World:
    users: Table
    items: Table
    interactions: Table
    click_truth: Table
    truth: list[Table]  # the click model's parameters: seeds_gen.truth reads them
    click_rate: float
    test_auc: float
    test_auc_nonpersonal: float

    def tables(self) -> list[Table]:
        return [self.users, self.items, self.interactions, self.click_truth, *self.truth]


def _arrival_times(rng: np.random.Generator, n: int, late_share: float, days: int) -> np.ndarray:
    """Most entities exist before the period starts; ``late_share`` arrive during it."""
    before = START_EPOCH - rng.integers(1, 365 * SECONDS_PER_DAY, size=n)
    during = START_EPOCH + rng.integers(0, days * SECONDS_PER_DAY, size=n)
    return np.where(rng.random(n) < late_share, during, before).astype(np.int64)


def _sample_present(
    rng: np.random.Generator, arrival: np.ndarray, weight: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """For each time in ``at``, draw an entity that has arrived by then, by weight."""
    order = np.argsort(arrival, kind="stable")
    cum = np.cumsum(weight[order])
    present = np.searchsorted(arrival[order], at, side="right")
    present = np.maximum(present, 1)  # the earliest entity always exists
    draw = rng.random(len(at)) * cum[present - 1]
    pick = np.minimum(np.searchsorted(cum, draw, side="right"), present - 1)
    return order[pick]


def _slates(
    rng: np.random.Generator,
    spec: WorldSpec,
    signup: np.ndarray,
    activity: np.ndarray,
    created: np.ndarray,
    popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Requests at uniform times, each showing ``slate_size`` items to one user in
    one second at positions 1, 2, ...: same-second impressions, as a results page
    makes them (and the case the point-in-time rule exists for)."""
    n, size = spec.impressions, spec.slate_size
    requests = -(-n // size)
    request_ts = np.sort(START_EPOCH + rng.integers(0, spec.days * SECONDS_PER_DAY, size=requests))
    request_uid = _sample_present(rng, signup, activity, request_ts)
    event_ts, uid, position = expand_slates(request_ts, request_uid, n, size)
    iid = _sample_present(rng, created, popularity, event_ts)
    return event_ts, uid, iid, position


def expand_slates(
    request_ts: np.ndarray, request_user: np.ndarray, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` impressions of requests of ``size`` items each: a request's
    impressions share its second and user, at positions 1, 2, ..., size."""
    event_ts = np.repeat(request_ts, size)[:n]
    user = np.repeat(request_user, size)[:n]
    position = np.tile(np.arange(1, size + 1), len(request_ts))[:n]
    return event_ts, user, position


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept_for_rate(logit: np.ndarray, rate: float) -> float:
    """Bisect the global intercept so that the mean click probability is ``rate``."""
    lo, hi = -15.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() > rate:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def generate(spec: WorldSpec) -> World:
    rng = np.random.default_rng(spec.seed)
    n_u, n_i, n = spec.users, spec.items, spec.impressions

    # Users: demographics, heavy-tailed activity, latent taste, staggered sign-up.
    age = rng.choice(len(AGE_BANDS), size=n_u, p=AGE_PROBS)
    region = rng.integers(0, len(REGIONS), size=n_u)
    tier = rng.choice(len(TIERS), size=n_u, p=TIER_PROBS)
    device = rng.choice(len(DEVICES), size=n_u, p=DEVICE_PROBS)
    signup = _arrival_times(rng, n_u, late_share=0.25, days=spec.days)
    activity = rng.lognormal(0.0, 1.5, size=n_u)
    user_bias = rng.normal(0.0, 0.5, size=n_u)
    user_taste = rng.normal(0.0, 1.0, size=(n_u, FACTOR_DIM))

    # Items: category, brand, price band, Zipf popularity, latent traits, launches.
    category = rng.integers(0, N_CATEGORIES, size=n_i)
    brand = rng.integers(0, N_BRANDS, size=n_i)
    price = rng.choice(len(PRICE_BANDS), size=n_i, p=PRICE_PROBS)
    created = _arrival_times(rng, n_i, late_share=0.20, days=spec.days)
    popularity = 1.0 / (rng.permutation(n_i) + 1.0) ** 1.05
    item_bias = rng.normal(0.0, 0.5, size=n_i)
    # Items of one category share most of their traits: taste is largely taste
    # for categories (learnable from a user's category history), plus a part
    # specific to the item.
    category_trait = rng.normal(0.0, 1.0, size=(N_CATEGORIES, FACTOR_DIM))
    item_trait = CATEGORY_TRAIT_SHARE * category_trait[category] + np.sqrt(
        1 - CATEGORY_TRAIT_SHARE**2
    ) * rng.normal(0.0, 1.0, size=(n_i, FACTOR_DIM))

    # Effects of attributes, one demographic x category interaction among them.
    category_effect = rng.normal(0.0, 0.4, size=N_CATEGORIES)
    brand_effect = rng.normal(0.0, 0.3, size=N_BRANDS)
    price_effect = np.array([0.15, 0.0, -0.1, -0.3])
    tier_effect = np.array([0.0, 0.15, 0.3])
    device_effect = np.array([0.1, 0.0, -0.15])
    age_x_category = rng.normal(0.0, 0.5, size=(len(AGE_BANDS), N_CATEGORIES))

    # Impressions: uniform times; a present user and a present item for each.
    if spec.slate_size == 1:
        event_ts = np.sort(START_EPOCH + rng.integers(0, spec.days * SECONDS_PER_DAY, size=n))
        uid = _sample_present(rng, signup, activity, event_ts)
        iid = _sample_present(rng, created, popularity, event_ts)
        position = rng.integers(1, N_POSITIONS + 1, size=n)
    else:
        event_ts, uid, iid, position = _slates(rng, spec, signup, activity, created, popularity)

    nonpersonal = (
        user_bias[uid]
        + item_bias[iid]
        + category_effect[category[iid]]
        + brand_effect[brand[iid]]
        + price_effect[price[iid]]
        + tier_effect[tier[uid]]
        + device_effect[device[uid]]
        + age_x_category[age[uid], category[iid]]
        + POSITION_SLOPE * (position - 1)
    )
    taste = TASTE_SCALE * np.einsum("ij,ij->i", user_taste[uid], item_trait[iid])
    taste /= np.sqrt(FACTOR_DIM)
    intercept = _intercept_for_rate(nonpersonal + taste, TARGET_CLICK_RATE)
    p_click = _sigmoid(intercept + nonpersonal + taste)
    p_nonpersonal = _sigmoid(intercept + nonpersonal)
    clicked = (rng.random(n) < p_click).astype(np.int64)

    test = event_ts >= np.quantile(event_ts, 0.9)
    interaction_id = np.arange(1, n + 1, dtype=np.int64)
    user_id = np.arange(1, n_u + 1, dtype=np.int64)
    item_id = np.arange(1, n_i + 1, dtype=np.int64)

    users = Table(
        "users",
        {
            "user_id": int,
            "signup_ts": int,
            "age_band": str,
            "region": str,
            "account_tier": str,
            "device": str,
        },
        {
            "user_id": user_id,
            "signup_ts": signup,
            "age_band": np.array(AGE_BANDS)[age],
            "region": np.array(REGIONS)[region],
            "account_tier": np.array(TIERS)[tier],
            "device": np.array(DEVICES)[device],
        },
        pk="user_id",
    )
    items = Table(
        "items",
        {"item_id": int, "category": str, "price_band": str, "brand": str, "created_ts": int},
        {
            "item_id": item_id,
            "category": np.array(CATEGORY_NAMES)[category],
            "price_band": np.array(PRICE_BANDS)[price],
            "brand": np.array([f"brand_{b:03d}" for b in range(N_BRANDS)])[brand],
            "created_ts": created,
        },
        pk="item_id",
    )
    interactions = Table(
        "interactions",
        {
            "interaction_id": int,
            "user_id": int,
            "item_id": int,
            "event_ts": int,
            "clicked": int,
            "position": int,
        },
        {
            "interaction_id": interaction_id,
            "user_id": user_id[uid],
            "item_id": item_id[iid],
            "event_ts": event_ts,
            "clicked": clicked,
            "position": position,
        },
        indexes=["interaction_id", "user_id", "item_id", "event_ts"],
    )
    click_truth = Table(
        "click_truth",
        {"interaction_id": int, "p_click": float, "p_click_nonpersonal": float},
        {
            "interaction_id": interaction_id,
            "p_click": p_click,
            "p_click_nonpersonal": p_nonpersonal,
        },
        pk="interaction_id",
    )
    truth = truth_tables(
        user_id=user_id,
        user_effect=user_bias + tier_effect[tier] + device_effect[device],
        user_taste=user_taste,
        age_band=np.array(AGE_BANDS)[age],
        item_id=item_id,
        item_effect=(
            item_bias + category_effect[category] + brand_effect[brand] + price_effect[price]
        ),
        item_trait=item_trait,
        category=items.data["category"],
        age_x_category=age_x_category,
        age_levels=AGE_BANDS,
        category_levels=CATEGORY_NAMES,
        intercept=intercept,
        position_slope=POSITION_SLOPE,
        taste_scale=TASTE_SCALE / np.sqrt(FACTOR_DIM),
    )
    return World(
        users=users,
        items=items,
        interactions=interactions,
        click_truth=click_truth,
        truth=truth,
        click_rate=float(clicked.mean()),
        test_auc=_auc(clicked[test], p_click[test]),
        test_auc_nonpersonal=_auc(clicked[test], p_nonpersonal[test]),
    )
