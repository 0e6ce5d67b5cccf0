"""MemAE memory addressing (Gong et al., ICCV 2019, §3.3) and its entropy loss.

w = softmax(d(z, M)) (eq. 4) with d the cosine similarity (eq. 5); hard shrinkage in the
continuous ReLU form (eq. 7) followed by L1 re-normalisation; z_hat = w_hat M (eq. 3).
The authors' public code addresses by a plain dot product z·Mᵀ; ``similarity="dot"`` offers
that for comparison (see the KDDCUP99 recipe).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspect_ad.checks import Options
from inspect_ad.memory.base import Memory

SIMILARITIES = ("cosine", "dot")


def hard_shrink(w: Tensor, threshold: float, eps: float = 1e-12) -> Tensor:
    """Eq. 7: max(w - λ, 0) · w / (|w - λ| + ε), then L1 re-normalisation of each row.

    The continuous form keeps a gradient for entries above λ, unlike a plain mask.
    """
    if threshold <= 0:
        return w
    shrunk = F.relu(w - threshold) * w / (torch.abs(w - threshold) + eps)
    return F.normalize(shrunk, p=1, dim=-1)


def keep_top_k(w: Tensor, k: int | None) -> Tensor:
    """Each row's ``k`` largest weights, L1 re-normalised; the rest 0 (``None`` or k >= N: unchanged).

    Not in MemAE: a soft read over N slots is a convex mix of N vectors, which spans the latent
    space once N exceeds its dimension, so it bottlenecks nothing; k slots per read does. The kept
    weights keep their gradient (k = 1 would leave none to the addressing)."""
    if k is None or k >= w.shape[-1]:
        return w
    top = torch.topk(w, k, dim=-1)
    kept = torch.zeros_like(w).scatter(-1, top.indices, top.values)
    return F.normalize(kept, p=1, dim=-1)


def addressing_entropy(weights: Tensor, eps: float = 1e-12) -> Tensor:
    """Eq. 9: mean over queries of Σ_i -ŵ_i log ŵ_i (zero for one-hot rows)."""
    return (-weights * torch.log(weights + eps)).sum(dim=-1).mean()


class MemAEMemory(Memory):
    """N learnable slots of dimension C addressed by softmax attention with hard shrinkage.

    shrink_threshold: λ of eq. 7. ``None`` picks 1/N, the lower end of the paper's [1/N, 3/N]:
        the largest weight of a softmax is always >= 1/N, so every query keeps at least one slot.
        With cosine logits in [-1, 1] the softmax starts almost uniform, and a larger λ zeroes
        *every* weight of many queries at initialisation — the read-out is then 0 and the memory
        gets no gradient (the "collapsed addressing" seen when λ = 2/N or 3/N from the start).
        0 disables shrinkage (MemAE-nonSpar).
    similarity: "cosine" (eq. 5, the paper) or "dot" (the authors' public code).
    top_k: after shrinkage, keep each query's k largest weights (:func:`keep_top_k`); ``None``
        (the paper) keeps them all.
    init_std: ``None`` initialises slots uniformly in ±1/sqrt(C) as the authors' code does, so
        dot-product logits start small. Cosine addressing ignores slot norms, so there the init
        scale only sets the size of the read-out: ±1/sqrt(C) slots, averaged by near-uniform
        first weights, read out ~10x smaller than the encoder's features and the decoder trains
        slowly (MMAE's loss stayed 2x the AE's). A number draws slots from N(0, init_std²);
        1.0 matches unit-scale features (recipes/results/synthetic_mmae.md measures both).
    """

    config_fields = ("slots", "shrink_threshold", "similarity", "logit_scale", "init_std", "top_k")

    def __init__(self, num_slots: int, dim: int, shrink_threshold: float | None = None,
                 similarity: str = "cosine", logit_scale: float = 1.0, init_std: float | None = None,
                 top_k: int | None = None):
        super().__init__(num_slots, dim)
        Options(*SIMILARITIES).check("similarity", similarity)
        self.similarity = similarity
        self.top_k = None if top_k is None else int(top_k)
        self.logit_scale = float(logit_scale)
        self.shrink_threshold = 1.0 / num_slots if shrink_threshold is None else float(shrink_threshold)
        self.slots = nn.Parameter(torch.empty(num_slots, dim))
        if init_std is None:
            bound = 1.0 / math.sqrt(dim)
            nn.init.uniform_(self.slots, -bound, bound)
        else:
            nn.init.normal_(self.slots, 0.0, init_std)

    @classmethod
    def from_config(cls, config, dim: int) -> "MemAEMemory":
        return cls(config.slots, dim, config.shrink_threshold, config.similarity, config.logit_scale,
                   config.init_std, config.top_k)

    def logits(self, queries: Tensor) -> Tensor:
        if self.similarity == "cosine":
            sim = F.normalize(queries, dim=-1) @ F.normalize(self.slots, dim=-1).t()
        else:
            sim = queries @ self.slots.t()
        return self.logit_scale * sim

    def address(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        weights = keep_top_k(hard_shrink(torch.softmax(self.logits(queries), dim=-1), self.shrink_threshold),
                             self.top_k)
        return weights @ self.slots, weights
