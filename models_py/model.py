"""The network: embeddings for ids, categoricals and numeric buckets, concatenated
with standardised numerics, into an MLP; plus an optional explicit interaction
path (user . item dot product, or a factorisation machine over all fields).

All embedded inputs share one table with per-field offsets: one lookup per batch
instead of one per field, and one sparse gradient for the sparse optimiser.
"""

from __future__ import annotations

import torch
from torch import nn


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
        sparse: bool = True,
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

        layers: list[nn.Module] = []
        width = self.n_fields * embedding_dim + numeric_width
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        fields = self.embedding(categorical + self.offsets)  # [batch, fields, dim]
        x = torch.cat([fields.flatten(1), numeric], dim=1)
        logit = self.mlp(x).squeeze(1)
        if self.interaction == "dot":
            logit = logit + (fields[:, self.user_slot] * fields[:, self.item_slot]).sum(1)
        elif self.interaction == "fm":
            square_of_sum = fields.sum(1).pow(2)
            sum_of_squares = fields.pow(2).sum(1)
            logit = logit + 0.5 * (square_of_sum - sum_of_squares).sum(1)
        return logit

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.embedding.weight]

    def dense_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("embedding.")]
