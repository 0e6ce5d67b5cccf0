"""Where the training loop's batches come from, and in which order.

Each source fixes its epoch order as a function of the seed, so a run is repeatable; the
sources differ in how, and that difference is kept because every recorded result depends on it:

* :class:`LoaderBatches` — a :class:`~torch.utils.data.Dataset` read by a DataLoader (images
  decoded and augmented on the fly). The order of epoch e comes from seed·100003 + e alone, so
  a run resumed from a checkpoint sees the same batches as an uninterrupted one, and W
  processes together see the batches of one (each its share, see the class).
* :class:`TensorBatches` — rows of one in-memory tensor (MNIST digits, KDDCUP99 rows), in the
  order of one generator seeded once per run, as the MemAE recipes draw them.
* :class:`ClipBatches` — clips of consecutive frames cut from in-memory videos; the order of
  epoch e comes from seed·7919 + e.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from inspect_ad.training import distributed


class LoaderBatches:
    """On W processes (a torch.distributed group, or ``rank`` and ``world`` given) rank r reads
    positions r, r + W, r + 2W, ... of the one process's epoch order, batch_size / W at a time:
    step k's W shares are together the one process's step k. (torch's DistributedSampler draws
    another permutation than the one-process DataLoader of the same seed, so it cannot give
    that.) Where the whole set is one batch the shares differ by at most one image; augmentation
    draws differ from the one process's."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, workers: int = 0,
                 rank: int | None = None, world: int | None = None):
        self.data, self.batch_size, self.seed, self.workers = data, batch_size, seed, workers
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world
        self.rank_batch = distributed.per_rank_batch(batch_size, self.world)
        # a last, smaller batch only when the whole set is one batch
        self.drop_last = len(data) > batch_size

    def steps(self) -> int:
        n, b = len(self.data), min(self.batch_size, len(self.data))
        if n == 0:
            return 0
        return n // b if self.drop_last else math.ceil(n / b)

    def _shuffled(self, data, seed: int, workers: int) -> DataLoader:
        return DataLoader(data, batch_size=min(self.batch_size, len(self.data)), shuffle=True,
                          generator=torch.Generator().manual_seed(seed), drop_last=self.drop_last,
                          num_workers=workers)

    def epoch(self, epoch: int):
        seed = self.seed * 100_003 + epoch
        augment = getattr(self.data, "augment", None)
        if augment is not None and hasattr(augment, "set_random_seed"):
            augment.set_random_seed(seed * self.world + self.rank)
        if self.world == 1:
            return iter(self._shuffled(self.data, seed, self.workers))
        # the one process's order, read from the same DataLoader over the indices alone
        order = torch.cat(list(self._shuffled(range(len(self.data)), seed, 0)))
        share = order[self.rank::self.world].tolist()
        return iter(DataLoader(self.data, batch_size=self.rank_batch, sampler=share, num_workers=self.workers))


class TensorBatches:
    """Batches of rows of an in-memory tensor (tables, small image arrays), in an order drawn
    from the seed each epoch."""

    def __init__(self, x: Tensor, batch_size: int, seed: int):
        self.x, self.batch_size = x, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def steps(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def epoch(self, epoch: int):
        for idx in torch.randperm(len(self.x), generator=self.generator).split(self.batch_size):
            yield self.x[idx]


class ClipBatches:
    """``frames``: per video (T, C, H, W) arrays; every run of ``length`` consecutive frames of a
    video is one clip, (length, C, H, W) in a batch of (B, length, C, H, W)."""

    def __init__(self, frames: list[np.ndarray], length: int, batch_size: int, seed: int):
        self.frames, self.length, self.batch_size, self.seed = frames, length, batch_size, seed
        self.index = [(v, s) for v, f in enumerate(frames) for s in range(len(f) - length + 1)]

    def steps(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def epoch(self, epoch: int):
        order = torch.randperm(len(self.index), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        for chunk in order.split(self.batch_size):
            yield clip_batch(self.frames, [self.index[i] for i in chunk], self.length)


def clip_batch(frames: list[np.ndarray], index: list[tuple[int, int]], length: int) -> Tensor:
    """The clips starting at frame s of video v for each (v, s) in ``index``."""
    return torch.from_numpy(np.stack([frames[v][s:s + length] for v, s in index]))
