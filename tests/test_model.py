"""The network and the settings that follow the data: crosses, ids, schedule."""

from __future__ import annotations

import torch

from models_py import metrics, wide_fit
from models_py.config import TrainConfig, auto_batch_size
from models_py.data import Encoded
from models_py.model import CTRModel, attribute_crosses, numeric_crosses
from models_py.registry import FeatureColumn, FeatureSpec
from models_py.train import make_optimizers
from models_py.wide_fit import fit_wide

SPEC = FeatureSpec(
    "fct",
    "interaction_id",
    "event_ts",
    "clicked",
    (
        FeatureColumn("user_id", "categorical", "user_id", entity="user"),
        FeatureColumn("item_id", "categorical", "item_id", entity="item"),
        FeatureColumn("age_band", "categorical", "user_profile"),
        FeatureColumn("category", "categorical", "item_profile"),
        FeatureColumn("item_ctr", "numeric", "item_history"),
    ),
)
# user, item, age band, category, then the numeric's bucket slot
SLOTS = [
    ("user_id", 50),
    ("item_id", 40),
    ("age_band", 6),
    ("category", 21),
    ("item_ctr__bucket", 9),
]


def test_the_batch_size_follows_the_training_rows():
    assert auto_batch_size(10_000) == 256  # floor: at least ~40 steps of 256
    assert auto_batch_size(100_000) == 512  # about 200 steps an epoch
    assert auto_batch_size(800_000) == 4096
    assert auto_batch_size(100_000_000) == 4096  # ceiling: large data keeps fast batches
    assert TrainConfig().for_rows(100_000).batch_size == 512
    assert TrainConfig(batch_size=64).for_rows(100_000).batch_size == 64  # explicit wins


def test_crosses_pair_attribute_columns_only():
    # ids (thousands of levels) and numeric buckets are never crossed
    assert attribute_crosses(SPEC, SLOTS) == [(2, 3)]


def _model(**kwargs) -> CTRModel:
    defaults = dict(
        cardinalities=[card for _, card in SLOTS],
        numeric_width=1,
        embedding_dim=4,
        hidden=[8],
        dropout=0.0,
        interaction="none",
        user_slot=0,
        item_slot=1,
        crosses=[(2, 3)],
    )
    return CTRModel(**{**defaults, **kwargs})


def test_the_wide_path_learns_a_pairwise_cross_the_mlp_alone_would_need_to_find():
    """Labels from a random table over (age band, category): no sum of per-column
    effects can fit it; one weight per cell can."""
    torch.manual_seed(0)
    n = 4096
    categorical = torch.stack(
        [
            torch.randint(0, 50, (n,)),
            torch.randint(0, 40, (n,)),
            torch.randint(0, 6, (n,)),
            torch.randint(0, 21, (n,)),
            torch.randint(0, 9, (n,)),
        ],
        dim=1,
    ).to(torch.int32)
    numeric = torch.zeros(n, 1)
    table = torch.randint(0, 2, (6, 21), generator=torch.Generator().manual_seed(1))
    label = table[categorical[:, 2].long(), categorical[:, 3].long()].float()
    model = _model(hidden=[1])  # an MLP too small to help
    model.start_at_rate(float(label.mean()))
    optimizers = make_optimizers(model, TrainConfig(wide_lr=0.1, wide_weight_decay=0.0))
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(categorical, numeric), label
        )
        for opt in optimizers.values():
            opt.zero_grad()
        loss.backward()
        for opt in optimizers.values():
            opt.step()
    p = model.probability(categorical, numeric)
    assert ((p > 0.5).float() == label).float().mean() > 0.99


def test_a_numeric_declared_crossed_with_a_categorical_is_crossed_with_its_field():
    slot = FeatureColumn("user_slot_01_coec", "numeric", "slots", crossed_with="category")
    spec = FeatureSpec(SPEC.table, "interaction_id", "event_ts", "clicked", (*SPEC.features, slot))
    assert numeric_crosses(spec, SLOTS) == [(3, 1)]  # category field, second numeric
    # with the category's group dropped the cross goes, the numeric stays
    dropped = spec.without_groups(["item_profile"])
    assert numeric_crosses(dropped, [s for s in SLOTS if s[0] != "category"]) == []
    assert "user_slot_01_coec" in [f.name for f in dropped.numeric]


def test_the_wide_fit_learns_how_a_numeric_moves_each_category():
    """Labels from x times a per-category sign: x and the category alone say
    nothing (each is independent of the label on average); one weight per
    category times x says all."""

    def data(seed: int, n: int = 6000) -> Encoded:
        g = torch.Generator().manual_seed(seed)
        categorical = torch.zeros(n, 5, dtype=torch.int32)
        categorical[:, 3] = torch.randint(1, 21, (n,), generator=g).to(torch.int32)
        x = torch.randn(n, 1, generator=g)
        sign = torch.where(torch.arange(21) % 2 == 0, 2.0, -2.0)
        p = torch.sigmoid(x[:, 0] * sign[categorical[:, 3].long()])
        return Encoded(categorical, x, torch.bernoulli(p, generator=g))

    train, validation, test = data(0), data(1), data(2)
    aucs = {}
    for crossed in (False, True):
        model = _model(crosses=[], numeric_crosses=[(3, 0)] if crossed else None)
        fit_wide(model, train, validation, log=False)
        with torch.no_grad():
            logit = model(test.categorical, test.numeric)
        aucs[crossed] = metrics.auc(test.label.numpy(), logit.numpy())
    assert aucs[False] < 0.55
    assert aucs[True] > 0.75


def test_the_wide_path_abandons_a_weaker_strength_that_overfits(monkeypatch):
    """A user x item cross of 2,000 cells over 3,000 rows (the label follows the
    category alone) overfits at a weak L2: its fit is stopped early, and the path
    keeps the strength and the weights it would have kept without stopping."""

    def data(seed: int, n: int = 3000) -> Encoded:
        g = torch.Generator().manual_seed(seed)
        categorical = torch.stack(
            [
                torch.randint(0, 50, (n,), generator=g),
                torch.randint(0, 40, (n,), generator=g),
                torch.zeros(n, dtype=torch.int64),
                torch.randint(0, 21, (n,), generator=g),
                torch.zeros(n, dtype=torch.int64),
            ],
            dim=1,
        ).to(torch.int32)
        p = torch.sigmoid(torch.where(categorical[:, 3] % 2 == 0, 1.0, -1.0))
        return Encoded(categorical, torch.zeros(n, 1), torch.bernoulli(p, generator=g))

    train, validation = data(0), data(1)
    fits, weights = {}, {}
    for abandon in (True, False):
        if not abandon:
            monkeypatch.setattr(wide_fit, "ABANDON_BELOW_BEST", float("inf"))
        torch.manual_seed(0)
        model = _model(crosses=[(0, 1)])
        fits[abandon] = fit_wide(model, train, validation, path=(1e-2, 1e-5), log=False)
        weights[abandon] = model.first_order.weight.detach().clone()
    assert fits[True].l2 == fits[False].l2 == 1e-2
    assert fits[True].validation_auc == fits[False].validation_auc
    assert torch.equal(weights[True], weights[False])
    assert fits[True].evaluations < fits[False].evaluations / 2


def test_ids_enter_the_mlp_only_when_asked():
    assert _model().deep_fields.tolist() == [2, 3, 4]
    assert _model(deep_ids=True).deep_fields.tolist() == [0, 1, 2, 3, 4]


def test_the_output_starts_at_the_training_click_rate():
    model = _model()
    model.start_at_rate(0.05)
    categorical = torch.zeros(3, len(SLOTS), dtype=torch.int32)
    # wide weights start at 0; the MLP's own output is small at initialisation
    p = model.probability(categorical, torch.zeros(3, 1))
    assert torch.allclose(p, torch.full((3,), 0.05), atol=0.02)


def test_a_frozen_wide_path_computed_ahead_gives_the_same_logits():
    """Training adds each row's wide logit computed once (the weights are frozen
    after their fit) instead of recomputing it every step: the same logits; a
    wide path that still trains gets none computed ahead."""
    torch.manual_seed(0)
    n = 300
    categorical = torch.stack([torch.randint(0, card, (n,)) for _, card in SLOTS], dim=1)
    data = Encoded(categorical.to(torch.int32), torch.randn(n, 1), torch.zeros(n))
    model = _model(numeric_crosses=[(3, 0)])
    assert model.frozen_wide_logits(data) is None
    with torch.no_grad():
        for weight in (model.first_order.weight, model.numeric_cross.weight):
            weight.normal_()
    model.freeze_wide()
    ahead = model.frozen_wide_logits(data)
    assert ahead is not None and ahead.shape == (n,)
    with torch.no_grad():
        assert torch.allclose(
            model(data.categorical, data.numeric, ahead), model(data.categorical, data.numeric)
        )
        model.mlp[-1].bias.fill_(0.0)
        model.mlp[-1].weight.zero_()
        assert not torch.allclose(ahead, torch.zeros(n))
        assert torch.allclose(model(data.categorical, data.numeric), ahead)
