"""Prototype-guided memory (Lai et al. 2021, §III-B): cosine-softmax read, update and discriminative loss.

* read (eq. 8–10): d = cosine(z_i, m_j); w = softmax_j(d); ẑ_i = Σ_j w_ij m_j (same C as z).
* update (eq. 11–12): v = softmax_i(d) over queries; m_j ← L2norm(m_j + Σ_i v_ij z_i).
* discriminative loss (eq. 13–17): Tr(S_W) / Tr(S_B), queries assigned to their nearest item.

The items are a ``nn.Parameter``: eq. 17's denominator Tr(S_B) depends on the items alone, so
only learned items can be pushed apart by it ("the loss makes the memory items far away from each
other", §I); eq. 12 is applied on top after each optimiser step, as the paper updates the items
in training. ``learn_items=False`` keeps them as eq. 12-only buffers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspect_ad.memory.base import Memory
from inspect_ad.memory.mnad import nearest_item_distance


def cosine_logits(queries: Tensor, items: Tensor) -> Tensor:
    """Eq. 8: (Q, N) cosine similarities."""
    return F.normalize(queries, dim=-1) @ F.normalize(items, dim=-1).t()


def discriminative_loss(queries: Tensor, items: Tensor, eps: float = 1e-8) -> Tensor:
    """Eq. 17: Tr(S_W) / Tr(S_B) with S_B (eq. 13) and S_W (eq. 15–16) weighted by n_j / K."""
    k = queries.shape[0]
    nearest = cosine_logits(queries, items).argmax(dim=-1)
    share = torch.bincount(nearest, minlength=items.shape[0]).to(queries.dtype) / k   # n_j / K
    tr_b = (share * (items - items.mean(dim=0)).pow(2).sum(dim=-1)).sum()            # eq. 13–14
    within = (queries - items[nearest]).pow(2).sum(dim=-1)                            # eq. 15
    tr_w = (share[nearest] * within).sum()                                            # eq. 16
    return tr_w / (tr_b + eps)


class PrototypeMemory(Memory):
    """N prototypes of dimension C read by cosine softmax (eq. 8–10) and updated by eq. 11–12."""

    def __init__(self, num_slots: int = 100, dim: int = 512, learn_items: bool = True):
        super().__init__(num_slots, dim)
        items = F.normalize(torch.randn(num_slots, dim), dim=-1)
        if learn_items:
            self.items = nn.Parameter(items)
        else:
            self.register_buffer("items", items)

    def address(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(cosine_logits(queries, self.items), dim=-1)
        return weights @ self.items, weights

    def updated_items(self, queries: Tensor) -> Tensor:
        """Eq. 11–12 for flat (Q, C) queries; returns the new items without storing them."""
        queries, items = queries.detach(), self.items.detach()
        v = torch.softmax(cosine_logits(queries, items), dim=0)           # eq. 11: over queries
        return F.normalize(items + v.t() @ queries, dim=-1)               # eq. 12

    @torch.no_grad()
    def update(self, queries: Tensor) -> None:
        self.items.copy_(self.updated_items(queries))

    def distance(self, queries: Tensor) -> Tensor:
        """Eq. 22 per query: squared L2 distance to the nearest item by cosine (eq. 23)."""
        return nearest_item_distance(queries, self.items, cosine_logits(queries, self.items))
