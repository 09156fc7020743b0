"""The network: a wide path and a deep path whose logits add up.

- Deep: embeddings for ids, categoricals and numeric buckets, concatenated with
  standardised numerics, into an MLP; plus an optional explicit interaction
  (user . item dot product, or a factorisation machine over all fields).
- Wide (Cheng et al. 2016, "Wide & Deep"): one weight per categorical value,
  per numeric, per pair of values of two attribute columns (the crosses), and
  per value of a categorical times a numeric declared ``crossed_with`` it (the
  user's history in a category slot, per candidate category), added straight
  to the logit. Additive and pairwise effects (an age band that
  likes a category) are learned in one step there; an MLP over concatenated
  embeddings learns them slowly and overfits the ids first.

All embedded inputs share one table with per-field offsets: one lookup per batch.
Small tables take dense gradients (``index_select``, whose backward is a plain
scatter-add: several times faster on CPU than a sparse gradient); tables above
``sparse_above_rows`` rows take sparse gradients for the sparse optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from models_py.config import TrainConfig
from models_py.data import Encoded, Encoders, categorical_slots, numeric_width
from models_py.distributed import uses_cuda
from models_py.registry import FeatureSpec

EVAL_BATCH = 65_536


def _in_batches(data: Encoded) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(categorical, numeric) of ``data`` in EVAL_BATCH slices: scoring every row
    at once would hold its activations for all of them."""
    for start in range(0, len(data), EVAL_BATCH):
        yield data.categorical[start : start + EVAL_BATCH], data.numeric[start : start + EVAL_BATCH]


def _lookup(table: nn.Embedding, index: torch.Tensor) -> torch.Tensor:
    """``table(index)``; for a dense table through index_select (fast backward)."""
    if table.sparse:
        return table(index)
    return table.weight.index_select(0, index.reshape(-1)).view(*index.shape, -1)


class CTRModel(nn.Module):
    def __init__(
        self,
        cardinalities: list[int],
        numeric_width: int,
        embedding_dim: int,
        hidden: list[int],
        dropout: float,
        interaction: str,
        user_slot: int | None,
        item_slot: int | None,
        sparse: bool = False,
        wide: bool = True,
        crosses: list[tuple[int, int]] | None = None,
        deep_ids: bool = False,
        numeric_crosses: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self.n_fields = len(cardinalities)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets if cardinalities else torch.zeros(0))
        self.embedding = nn.Embedding(max(sum(cardinalities), 1), embedding_dim, sparse=sparse)
        nn.init.normal_(self.embedding.weight, std=0.01)
        self.interaction = interaction
        self.user_slot = user_slot
        self.item_slot = item_slot
        if interaction == "dot" and (user_slot is None or item_slot is None):
            self.interaction = "none"  # no user or item id among the features

        self.wide = wide
        crosses = list(crosses or []) if wide else []
        cells = [cardinalities[a] * cardinalities[b] for a, b in crosses]
        starts = torch.tensor([sum(cardinalities), *cells], dtype=torch.int64).cumsum(0)
        self.register_buffer("cross_left", torch.tensor([a for a, _ in crosses], dtype=torch.int64))
        self.register_buffer(
            "cross_right", torch.tensor([b for _, b in crosses], dtype=torch.int64)
        )
        self.register_buffer(
            "cross_width", torch.tensor([cardinalities[b] for _, b in crosses], dtype=torch.int64)
        )
        self.register_buffer("cross_offsets", starts[:-1])
        if wide:
            self.first_order = nn.Embedding(max(sum(cardinalities) + sum(cells), 1), 1)
            nn.init.zeros_(self.first_order.weight)
            self.numeric_linear = nn.Linear(numeric_width, 1, bias=False)
            nn.init.zeros_(self.numeric_linear.weight)
        # (categorical field, numeric column) pairs: a weight per value of the field,
        # times the numeric. Registered only when there are any, so checkpoints of
        # models without them keep their state's keys.
        pairs = list(numeric_crosses or []) if wide else []
        self.numeric_cross: nn.Embedding | None = None
        if pairs:
            rows = torch.tensor([0, *(cardinalities[f] for f, _ in pairs)]).cumsum(0)
            self.register_buffer("numeric_cross_field", torch.tensor([f for f, _ in pairs]))
            self.register_buffer("numeric_cross_column", torch.tensor([c for _, c in pairs]))
            self.register_buffer("numeric_cross_offsets", rows[:-1])
            self.numeric_cross = nn.Embedding(int(rows[-1]), 1)
            nn.init.zeros_(self.numeric_cross.weight)

        # Entity ids enter the MLP only when asked (``deep_ids``): there they memorise
        # the training rows in the second epoch (Zhang et al. 2022); in the wide path
        # and the dot product they are single weights or vectors and generalise.
        skip = set() if deep_ids else {user_slot, item_slot}
        deep = [j for j in range(self.n_fields) if j not in skip]
        self.register_buffer("deep_fields", torch.tensor(deep, dtype=torch.int64))
        # Platt scaling fitted on validation after training (calibrate): probability
        # = sigmoid(scale * logit + shift). Identity while training.
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))

        layers: list[nn.Module] = []
        width = len(self.deep_fields) * embedding_dim + numeric_width
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(
        self,
        categorical: torch.Tensor,
        numeric: torch.Tensor,
        wide_logit: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The logit; ``wide_logit``: the wide path's, when already computed
        (``frozen_wide_logits``)."""
        index = categorical + self.offsets
        fields = _lookup(self.embedding, index[:, self.deep_fields])  # [batch, fields, dim]
        logit = self.mlp(torch.cat([fields.flatten(1), numeric], dim=1)).squeeze(1)
        if self.wide:
            if wide_logit is None:
                wide_logit = self._wide(categorical, index, numeric)
            logit = logit + wide_logit
        if self.interaction == "dot":
            user = _lookup(self.embedding, index[:, self.user_slot])
            item = _lookup(self.embedding, index[:, self.item_slot])
            logit = logit + (user * item).sum(1)
        elif self.interaction == "fm":  # over the MLP's fields
            square_of_sum = fields.sum(1).pow(2)
            sum_of_squares = fields.pow(2).sum(1)
            logit = logit + 0.5 * (square_of_sum - sum_of_squares).sum(1)
        return logit

    def _wide(
        self, categorical: torch.Tensor, index: torch.Tensor, numeric: torch.Tensor
    ) -> torch.Tensor:
        logit = _lookup(self.first_order, self.wide_index(categorical, index)).sum((1, 2))
        logit = logit + self.numeric_linear(numeric).squeeze(1)
        if self.numeric_cross is not None:
            rows, values = self.numeric_cross_terms(categorical, numeric)
            weights = _lookup(self.numeric_cross, rows).squeeze(2)
            logit = logit + (weights * values).sum(1)
        return logit

    def numeric_cross_terms(
        self, categorical: torch.Tensor, numeric: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ``numeric_cross`` each row uses, one per pair, and the numerics
        they multiply."""
        rows = categorical[:, self.numeric_cross_field].long() + self.numeric_cross_offsets
        return rows, numeric[:, self.numeric_cross_column]

    def wide_index(self, categorical: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows of ``first_order`` that each row's wide logit sums: one per field
        value (``index``, already offset), then one per cross cell."""
        if not len(self.cross_left):
            return index
        cells = categorical[:, self.cross_left] * self.cross_width
        cells = cells + categorical[:, self.cross_right] + self.cross_offsets
        return torch.cat([index, cells], dim=1)

    def wide_weights(self) -> list[nn.Parameter]:
        """The wide path's weights (what models_py.wide_fit fits); none when it is off."""
        if not self.wide:
            return []
        weights = [self.first_order.weight, self.numeric_linear.weight]
        if self.numeric_cross is not None:
            weights.append(self.numeric_cross.weight)
        return weights

    def freeze_wide(self) -> None:
        """Keep the wide weights as fitted (models_py.wide_fit): no optimiser moves them."""
        for weight in self.wide_weights():
            weight.requires_grad_(False)

    @property
    def wide_frozen(self) -> bool:
        """Whether the wide path is kept as fitted (``freeze_wide``): its logit per row
        is then a constant that can be computed ahead."""
        return self.wide and not self.first_order.weight.requires_grad

    @torch.no_grad()
    def frozen_wide_logits(self, data: Encoded) -> torch.Tensor | None:
        """The wide path's logit for every row of ``data`` when its weights are
        frozen (fitted first, models_py.wide_fit): a constant per row, so training
        computes it once instead of at every step (about 20% more samples/s at
        1M impressions). None when the wide path trains."""
        if not self.wide_frozen:
            return None
        parts = [
            self._wide(categorical, categorical + self.offsets, numeric)
            for categorical, numeric in _in_batches(data)
        ]
        return torch.cat(parts) if parts else torch.zeros(0)

    def probability(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Calibrated click probability (what evaluation and serving use)."""
        scale, shift = self.calibration
        return torch.sigmoid(scale * self(categorical, numeric) + shift)

    def start_at_rate(self, rate: float) -> None:
        """Start the output at the training click rate, so that the first steps
        learn features rather than the base rate."""
        rate = min(max(rate, 1e-6), 1 - 1e-6)
        with torch.no_grad():
            self.mlp[-1].bias.fill_(math.log(rate / (1 - rate)))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser: the embedding table, the wide weights (unless
        frozen), the rest that trains."""
        groups: dict[str, list[nn.Parameter]] = {"embedding": [self.embedding.weight]}
        if self.wide and self.first_order.weight.requires_grad:
            groups["wide"] = [self.first_order.weight]
            if self.numeric_cross is not None:
                groups["wide"].append(self.numeric_cross.weight)
        taken = {id(p) for ps in groups.values() for p in ps}
        groups["dense"] = [p for p in self.parameters() if id(p) not in taken and p.requires_grad]
        return groups


def pick_device(config: TrainConfig) -> torch.device:
    return torch.device("cuda" if uses_cuda(config.device) else "cpu")


def build_model(
    spec: FeatureSpec, encoders: Encoders, config: TrainConfig, sparse_allowed: bool = True
) -> CTRModel:
    """The network for this spec and these encoders. The embedding table takes sparse
    gradients above ``config.sparse_above_rows`` rows (never under nccl, which cannot
    reduce them: ``sparse_allowed``)."""
    slots = categorical_slots(spec, encoders)
    names = [name for name, _ in slots]
    user, item = spec.entity_column("user"), spec.entity_column("item")
    return CTRModel(
        cardinalities=[card for _, card in slots],
        numeric_width=numeric_width(spec),
        embedding_dim=config.embedding_dim,
        hidden=config.hidden,
        dropout=config.dropout,
        interaction=config.interaction,
        user_slot=names.index(user) if user in names else None,
        item_slot=names.index(item) if item in names else None,
        sparse=sparse_allowed and sum(card for _, card in slots) > config.sparse_above_rows,
        wide=config.wide != "off",
        crosses=attribute_crosses(spec, slots) if config.wide == "crosses" else [],
        deep_ids=config.deep_ids,
        numeric_crosses=numeric_crosses(spec, slots),
    )


MAX_CROSS_CELLS = 100_000


def attribute_crosses(spec: FeatureSpec, slots: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Every pair of attribute categoricals (entity ids and numeric buckets left out)
    whose cross has at most MAX_CROSS_CELLS cells: the wide path learns one weight
    per pair of values, as Wide & Deep's cross-product features do."""
    attributes = {f.name for f in spec.attributes}
    fields = [j for j, (name, _) in enumerate(slots) if name in attributes]
    return [
        (a, b)
        for i, a in enumerate(fields)
        for b in fields[i + 1 :]
        if slots[a][1] * slots[b][1] <= MAX_CROSS_CELLS
    ]


def numeric_crosses(spec: FeatureSpec, slots: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """(categorical field, numeric column) of each numeric declared ``crossed_with`` a
    categorical in the dbt YAML."""
    fields = [name for name, _ in slots]
    columns = [f.name for f in spec.numeric]
    return [(fields.index(c), columns.index(n)) for c, n in spec.numeric_crosses()]


@torch.inference_mode()
def predict(model: CTRModel, data: Encoded, device: torch.device, raw: bool = False) -> np.ndarray:
    """Click probabilities for every row, in large batches, without autograd;
    ``raw``: sigmoid of the network's logit, before the model's calibration."""
    model.eval()
    out = []
    for cat, num in _in_batches(data):
        cat, num = cat.to(device), num.to(device)
        p = torch.sigmoid(model(cat, num)) if raw else model.probability(cat, num)
        out.append(p.float().cpu())
    model.train()
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
