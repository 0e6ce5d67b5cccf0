"""The interface every memory variant shares.

A memory reads a *query* tensor and returns a read-out of the same layout. Queries come as
whole encodings (B, C), feature maps (B, C, H, W) or spatio-temporal maps (B, C, T, H, W);
every spatial (and temporal) position is addressed on its own, as in MemAE's video and MMAE
models. Variants (MemAE addressing, MNAD read/update, prototype memory) subclass
:class:`Memory` and implement :meth:`Memory.address` on flat (Q, C) queries only; the base class
does the flattening, so all variants accept the same shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class MemoryOutput:
    """What a memory returns.

    features: read-out in the query's layout (B, C', ...) where C' is C for MemAE and the
        prototype memory and 2C for MNAD (query concatenated with the read items).
    weights: addressing weights, one row per query position, shape (Q, N) with
        Q = B * prod(spatial dims); rows are non-negative and sum to 1.
    queries: the flattened (Q, C) queries, kept for losses that need them (MNAD compactness,
        prototype discriminative loss).
    """

    features: Tensor
    weights: Tensor
    queries: Tensor


def flatten_queries(z: Tensor) -> Tensor:
    """(B, C) / (B, C, H, W) / (B, C, T, H, W) -> (Q, C), channel last."""
    if z.dim() == 2:
        return z
    if z.dim() not in (4, 5):
        raise ValueError(f"memory queries must be 2-D, 4-D or 5-D, got shape {tuple(z.shape)}")
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def unflatten_queries(q: Tensor, like: Tensor) -> Tensor:
    """Inverse of :func:`flatten_queries`; the channel count may differ from ``like``'s."""
    if like.dim() == 2:
        return q
    shape = (like.shape[0], *like.shape[2:], q.shape[-1])
    return q.reshape(shape).movedim(-1, 1)


class Memory(nn.Module):
    """Base class: ``forward(z) -> MemoryOutput`` for any supported query layout."""

    # the MemoryConfig fields this variant reads (see :meth:`from_config`)
    config_fields: tuple[str, ...] = ("slots",)

    def __init__(self, num_slots: int, dim: int):
        super().__init__()
        self.num_slots = num_slots
        self.dim = dim

    @classmethod
    def from_config(cls, config, dim: int, **kwargs) -> "Memory":
        """The variant built from a :class:`~inspect_ad.memory.config.MemoryConfig` (``kwargs``:
        the variant's own settings, e.g. the prototype memory's ``learn_items``)."""
        config.check_used(cls.config_fields, cls.__name__)
        return cls(config.slots, dim, **kwargs)

    def address(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """(Q, C) queries -> ((Q, C') read-out, (Q, N) weights). Implemented by variants."""
        raise NotImplementedError

    def forward(self, z: Tensor) -> MemoryOutput:
        if z.shape[1] != self.dim:
            raise ValueError(f"memory expects {self.dim} channels, got {z.shape[1]}")
        queries = flatten_queries(z)
        read, weights = self.address(queries)
        return MemoryOutput(unflatten_queries(read, z), weights, queries)
