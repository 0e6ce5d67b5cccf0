"""MNAD memory (Park et al., CVPR 2020, §3.1–3.3): read, update and its two losses.

Items are *buffers*: the paper updates them with eq. 3–5 from the queries, never by backprop,
so they travel in the state dict (and a bundle) but no optimiser touches them.

* read (eq. 1–2): w = softmax over items of pᵀq; p̂ = Σ_m w_m p_m; the output is [q, p̂] (2C).
* update (eq. 3–5): v = softmax over queries of pᵀq; each item keeps only the queries that
  chose it as their nearest (U_m), weights max-normalised over U_m; p_m ← L2norm(p_m + Σ v' q).
* compactness (eq. 10–11) and separateness (eq. 12–13, margin α) losses, and the per-query
  distance to the nearest item D (eq. 14) used by the abnormality score.

Queries are expected L2-normalised (the paper's encoder ends with an L2 normalisation layer), so
pᵀq is the cosine similarity the paper names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inspect_ad.memory.base import Memory


def nearest_two(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the nearest and second-nearest item per query (eq. 11 and 13), from (Q, N)."""
    top = logits.topk(2, dim=-1).indices
    return top[:, 0], top[:, 1]


def nearest_item_distance(queries: Tensor, items: Tensor, logits: Tensor | None = None) -> Tensor:
    """Eq. 14 per query: ‖q − p_nearest‖² (Q,). ``logits`` picks the nearest (default qᵀp)."""
    logits = queries @ items.t() if logits is None else logits
    nearest = items[logits.argmax(dim=-1)]
    return (queries - nearest).pow(2).sum(dim=-1)


def compactness_loss(queries: Tensor, items: Tensor) -> Tensor:
    """Eq. 10: queries pulled to their nearest item. Mean over queries *and channels* (the
    authors' code uses MSELoss), so λ_c = 0.01 / 0.1 of §4.1 keep their meaning."""
    return nearest_item_distance(queries, items.detach()).mean() / queries.shape[-1]


def separateness_loss(queries: Tensor, items: Tensor, margin: float = 1.0) -> Tensor:
    """Eq. 12: triplet hinge [‖q − p_p‖ − ‖q − p_n‖ + α]_+ with the nearest item as positive and
    the second nearest as negative (needs ≥ 2 items)."""
    if items.shape[0] < 2:
        raise ValueError("the separateness loss needs at least 2 memory items")
    pos, neg = nearest_two(queries @ items.t())
    items = items.detach()
    return F.triplet_margin_loss(queries, items[pos], items[neg], margin=margin)


class MNADMemory(Memory):
    """M items of dimension C (buffers), read by softmax attention, updated by eq. 3–5."""

    def __init__(self, num_slots: int = 10, dim: int = 512):
        super().__init__(num_slots, dim)
        self.register_buffer("items", F.normalize(torch.randn(num_slots, dim), dim=-1))

    def address(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(queries @ self.items.t(), dim=-1)
        return torch.cat([queries, weights @ self.items], dim=-1), weights

    def updated_items(self, queries: Tensor) -> Tensor:
        """Eq. 3–5 for flat (Q, C) queries; returns the new items without storing them."""
        scores = queries.detach() @ self.items.t()                      # (Q, N)
        chose = F.one_hot(scores.argmax(dim=-1), self.num_slots).to(scores.dtype)
        v = torch.softmax(scores, dim=0) * chose                        # eq. 4, restricted to U_m
        v = v / v.amax(dim=0, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)  # eq. 5
        return F.normalize(self.items + v.t() @ queries.detach(), dim=-1)  # eq. 3

    @torch.no_grad()
    def update(self, queries: Tensor) -> None:
        """Write eq. 3's update into the items (training, and test frames judged normal)."""
        self.items.copy_(self.updated_items(queries))

    def distance(self, queries: Tensor) -> Tensor:
        return nearest_item_distance(queries, self.items)
