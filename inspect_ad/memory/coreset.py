"""A non-parametric memory: a greedy coreset of training patch features, read by k-NN (PatchCore).

Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (CVPR 2022) keep a subset of
the defect-free patch features chosen by greedy k-center selection (each new slot is the
feature farthest from those already kept, distances taken in a random projection to cut cost),
and score a test patch by its distance to the nearest slot. Same interface as the learned
memories: ``address`` returns the read-out (the mean of the k nearest slots) and (Q, N) weights,
here a sparse matrix with 1/k at each query's k nearest slots.

The bank is a buffer, so it is saved with the model's safetensors (its fitted size goes into the
model's config, so that a bundle's shapes can be checked before loading); its size is capped by
``max_slots`` (bank bytes = slots × dim × 4), and so is the pool of candidate features the
coreset is drawn from (``max_candidates``), which bounds fit memory whatever the training set.
Fitted on several processes, each process's coreset of its share is merged into one bank of the
size one process would fill (:meth:`CoresetMemory.fill`, ``sharded``).

The k-NN search is a chunked exact torch search (‖q‖² − 2 q·m + ‖m‖²): on the 2-core CPU faiss-cpu's
exact ``IndexFlatL2`` ran at 0.9-1.0× its speed for 16k queries against 7.8k-16k slots
(``recipes/results/knn.md``; an earlier check on a busier CPU gave faiss up to 1.4×), and the search is
a minority of scoring time next to the backbone, so faiss is not a dependency.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from inspect_ad.memory.base import Memory


def _nearest_in(queries: Tensor, bank_sq: Tensor, bank_t: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """One block of the search: (Q, k) values of ‖m‖² − 2 q·m and their slot indices."""
    d = torch.addmm(bank_sq, queries, bank_t, alpha=-2)
    if k == 1:
        return d.min(dim=1, keepdim=True)
    return d.topk(k, dim=1, largest=False)


def _exporting() -> bool:
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def nearest(queries: Tensor, bank: Tensor, k: int = 1, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Exact k nearest rows of ``bank`` for each query: (Q, k) squared distances and indices.
    ‖q‖² is added after the search: it does not change which slot is nearest.

    Memory is bounded by searching ``chunk`` queries at a time; a traced or exported graph
    cannot loop over a number of query chunks that depends on the batch, so there the bank,
    whose size is fixed, is cut into ``chunk // 2``-slot blocks instead and their k best merged.
    Bounds are computed in float32 even under autocast: ‖m‖² − 2 q·m cancels, and bf16's
    8-bit mantissa would lose the difference."""
    with torch.autocast(queries.device.type, enabled=False):
        queries, bank = queries.float(), bank.float()
        bank_sq, bank_t = bank.pow(2).sum(1), bank.t()
        if _exporting():
            values, idx = _merge_blocks(queries, bank_sq, bank_t, k, max(1, chunk // 2))
        else:
            found = [_nearest_in(q, bank_sq, bank_t, k) for q in queries.split(chunk)]
            values, idx = torch.cat([v for v, _ in found]), torch.cat([i for _, i in found])
        return (values + queries.pow(2).sum(1, keepdim=True)).clamp_min(0), idx


def _merge_blocks(queries: Tensor, bank_sq: Tensor, bank_t: Tensor, k: int, block: int) -> tuple[Tensor, Tensor]:
    found = [_nearest_in(queries, bank_sq[j:j + block], bank_t[:, j:j + block], min(k, len(bank_sq[j:j + block])))
             for j in range(0, len(bank_sq), block)]
    values = torch.cat([v for v, _ in found], dim=1)
    idx = torch.cat([i + j * block for j, (_, i) in enumerate(found)], dim=1)
    best, pos = values.topk(k, dim=1, largest=False) if len(found) > 1 else (values, None)
    return best, idx if pos is None else idx.gather(1, pos)


def greedy_coreset(features: Tensor, n: int, seed: int = 0, projection_dim: int = 64, shrink: float = 0.9) -> Tensor:
    """Indices of ``n`` rows chosen by greedy k-center selection (PatchCore Alg. 1), in a random
    Gaussian projection to ``projection_dim`` (Johnson-Lindenstrauss) when the features are wider.
    PatchCore projects to 128; 64 is ~4x faster per step on a 2-core CPU (the step is one
    matrix-vector product over all candidates) and only has to rank far-apart points.

    Each step takes the candidate farthest from those chosen. Done as written, every step reads
    every candidate (MTD: 877k × 64 floats, 24 ms, 8767 steps); but a candidate's distance to the
    chosen only falls, so one far below the current maximum cannot be the next choice for many
    steps. The steps therefore run in rounds (:func:`_greedy_rounds`): a round keeps only the
    candidates whose last known distance is at least ``shrink`` × the largest, brought up to date
    in one matrix product against the centres chosen since they were last seen, and chooses among
    them until their maximum falls below that bar; the others' stale distances are upper bounds
    below it, so the choice is the same argmax as the plain loop's (first index on ties). The
    distances are float32 either way, summed in another order by the matrix product than by the
    matrix-vector product, so a near-tie (within float32 rounding, ~1e-3 at MTD's squared norms) can
    go the other way: on MTD's pool (877k candidates, 8767 chosen) both chose the same set, 104 of
    the picks one step apart, 10-21x faster in turns on a loaded CPU (recipes/results/speed.md,
    "Greedy coreset selection"); ``shrink`` 0.95 took as long as 0.9, 0.8 twice, 0.7 four times."""
    n = min(n, len(features))
    gen = torch.Generator().manual_seed(seed)
    x = features
    if features.shape[1] > projection_dim:
        proj = torch.randn(features.shape[1], projection_dim, generator=gen) / projection_dim ** 0.5
        x = features @ proj.to(features)
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = int(torch.randint(len(x), (1,), generator=gen))
    if n > 1:
        _greedy_rounds(x, chosen, shrink)
    return chosen


def _greedy_rounds(x: Tensor, chosen: Tensor, shrink: float, block: int = 4096, centres: int = 1024) -> None:
    """Fill ``chosen[1:]`` (``chosen[0]`` given) in rounds; see :func:`greedy_coreset`.
    ``min_dist[p]`` is p's squared distance to the first ``seen[p]`` chosen rows, an upper bound
    on its distance to all of them."""
    x_sq = x.pow(2).sum(1)
    min_dist = torch.full_like(x_sq, float("inf"))
    seen = torch.zeros(len(x), dtype=torch.long)
    i, n = 1, len(chosen)
    while i < n:
        top = float(min_dist.max())
        bar = min(top, shrink * top)   # ≤ the largest bound, whatever its sign (rounding can give -0.001)
        stale = (min_dist >= bar).nonzero().squeeze(1)
        stale = stale[seen[stale] < i]
        # oldest first, so that a block's rows need about the same range of centres
        stale = stale[torch.argsort(seen[stale], stable=True)]
        for b in range(0, len(stale), block):
            rows = stale[b:b + block]
            xr, sq_r, dist_r = x[rows], x_sq[rows], min_dist[rows]
            for c in range(int(seen[rows[0]]), i, centres):   # centres a row has seen already change nothing
                ids = chosen[c:min(i, c + centres)]
                d = sq_r[:, None] - 2 * (xr @ x[ids].t()) + x_sq[ids][None, :]
                dist_r = torch.minimum(dist_r, d.amin(1))
            min_dist[rows], seen[rows] = dist_r, i
        live = (min_dist >= bar).nonzero().squeeze(1)   # all up to date now; index order keeps ties' rule
        if not len(live):
            continue
        xl, sq_l, dist_l = x[live], x_sq[live], min_dist[live]
        while i < n:
            j = int(dist_l.argmax())
            if float(dist_l[j]) < bar:   # the rest's bounds are below the bar: the next choice may be there
                break
            chosen[i] = c = int(live[j])
            i += 1
            torch.minimum(dist_l, sq_l - 2 * (xl @ x[c]) + x_sq[c], out=dist_l)
        min_dist[live], seen[live] = dist_l, i


def _sum_over_ranks(count: int) -> int:
    total = torch.tensor(count)
    dist.all_reduce(total)
    return int(total)


def _merge_coresets(slots: Tensor, n: int, seed: int) -> Tensor:
    """The greedy coreset of ``n`` of every process's ``slots`` (see :meth:`CoresetMemory.fill`)."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, slots)
    union = torch.cat(parts)
    chosen = greedy_coreset(union, n, seed)
    dist.broadcast(chosen, 0)   # the same bank everywhere, whatever each CPU's rounding
    return union[chosen]


class CoresetMemory(Memory):
    """``num_slots`` stored patch features of dimension ``dim``, read by their k nearest."""

    def __init__(self, num_slots: int, dim: int, k: int = 1):
        super().__init__(num_slots, dim)
        self.k = k
        self.register_buffer("slots", torch.zeros(num_slots, dim))

    def fill(self, features: Tensor, ratio: float, max_slots: int, seed: int = 0,
             max_candidates: int = 1_000_000, sharded: bool = False) -> int:
        """Keep a coreset of ``ratio`` × len(features) (at most ``max_slots``) of (M, dim)
        defect-free features; more than ``max_candidates`` are first subsampled at random.

        ``sharded``: ``features`` are this process's share of the candidates, in a torch.distributed
        group (PatchCore fitted on several processes). The bank has the size one process would
        give it: ``ratio`` × all the processes' candidates (at most ``max_candidates``), at most
        ``max_slots``. Merge rule, a coreset of coresets: each process keeps that many of its own
        candidates by the same greedy selection, the processes exchange them, and the greedy
        selection runs again on their union (in rank order) down to that size; rank 0's choice
        is broadcast, so every process ends with the same bank."""
        gen = torch.Generator().manual_seed(seed)
        if len(features) > max_candidates:
            features = features[torch.randperm(len(features), generator=gen)[:max_candidates]]
        total = _sum_over_ranks(len(features)) if sharded else len(features)
        n = max(1, min(max_slots, round(ratio * min(total, max_candidates))))
        slots = features[greedy_coreset(features, n, seed)]
        if sharded:
            slots = _merge_coresets(slots, n, seed)
        self.slots = slots.clone()
        self.num_slots = n
        return n

    def nearest(self, queries: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
        return nearest(queries, self.slots, k or self.k)

    def address(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        _, idx = self.nearest(queries)
        q, k = idx.shape
        rows = torch.arange(q, device=idx.device).repeat_interleave(k)
        weights = torch.sparse_coo_tensor(torch.stack([rows, idx.flatten()]),
                                          torch.full((q * k,), 1.0 / k, device=idx.device), (q, self.num_slots),
                                          check_invariants=False)
        return self.slots[idx].mean(dim=1), weights
