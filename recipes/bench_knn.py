"""The coreset memory's nearest-neighbour search: the chunked torch search against faiss-cpu;
and (``--coreset``) the greedy coreset selection that fills it: the library's rounds against the
plain loop of PatchCore's Alg. 1.

    python recipes/bench_knn.py --results recipes/results/knn.md
    python recipes/bench_knn.py --coreset --manifest ../shared/data/mtd/split.json --results recipes/results/speed.md

Queries are one batch of 16 images' patches at 256² (16 × 32 × 32), the bank sizes those of a
1% coreset of MTD (7.8k) and larger, with lite0 stages 2+3's 152 channels. Both searches are
exact (faiss ``IndexFlatL2``); the agreement of their nearest indices is checked. faiss is not a
dependency of inspect-ad: install it (``pip install faiss-cpu``) to run its column.

``--coreset``: the candidate pool is the default fit's (every patch feature of the training images
at the input size the fit chooses, through the default patchcore's backbone, capped at
max_candidates as ``CoresetMemory.fill`` caps it) with ``--manifest``, else ``--pool`` Gaussian
points of ``--dim`` channels (no clusters: the hard case for the rounds). The coreset size is the
fit's (coreset_ratio of the pool, at most max_slots). The plain loop (here, the reference) and the
library's ``greedy_coreset`` run in turns, ``--repeats`` times each, at the torch thread count of
``OMP_NUM_THREADS``; the table gives each one's seconds (range over the repeats), the ratio, and how
far their choices agree (float32 distances summed in another order can break a near-tie the other way).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from inspect_ad import Detector, TrainConfig
from inspect_ad.atomic import atomic_write_text
from inspect_ad.data.datasets import from_manifest
from inspect_ad.data.preprocess import Preprocessing, TrainImages, detect_channels
from inspect_ad.memory import greedy_coreset, nearest
from inspect_ad.models import PatchCoreConfig, create_model, make_config
from inspect_ad.training.device import describe_device
from results_file import publish


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def plain_greedy(features: torch.Tensor, n: int, seed: int = 0, projection_dim: int = 64) -> torch.Tensor:
    """PatchCore's Alg. 1 as written (the library's loop before the rounds): every step updates
    every candidate's distance to the chosen, with the library's projection and first point."""
    gen = torch.Generator().manual_seed(seed)
    x = features
    if features.shape[1] > projection_dim:
        x = features @ (torch.randn(features.shape[1], projection_dim, generator=gen) / projection_dim ** 0.5)
    x_sq = x.pow(2).sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = c = int(torch.randint(len(x), (1,), generator=gen))
    min_dist = torch.full_like(x_sq, float("inf"))
    for i in range(1, n):
        torch.minimum(min_dist, x_sq - 2 * (x @ x[c]) + x_sq[c], out=min_dist)
        chosen[i] = c = int(min_dist.argmax())
    return chosen


@torch.no_grad()
def fit_pool(manifest: Path) -> tuple[torch.Tensor, str]:
    """The candidates the default fit draws its coreset from, and what they are."""
    det, images = Detector(), from_manifest(manifest)
    size, tile = det.input_size(images.train)
    prep = Preprocessing(size, detect_channels(images.train), tile=tile)
    model = create_model("patchcore", make_config("patchcore", in_channels=prep.channels, image_size=size)).eval()
    model.backbone.load_weights(None)
    data = TrainImages(images.train, prep, None)
    pool = [model.patch_features(x) for x in DataLoader(data, batch_size=TrainConfig().batch_size)]   # as fit batches
    pool = torch.cat([f.movedim(1, -1).reshape(-1, f.shape[1]) for f in pool])
    cap = PatchCoreConfig().max_candidates
    if len(pool) > cap:
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:cap]]
    return pool, f"{images.name}: {len(data)} training inputs of {prep.describe()}"


def coreset_main(args) -> int:
    if args.manifest:
        pool, what = fit_pool(args.manifest)
    else:
        pool = torch.randn(args.pool, args.dim, generator=torch.Generator().manual_seed(0))
        what = f"{args.pool} Gaussian points"
    cfg = PatchCoreConfig()
    n = max(1, min(cfg.max_slots, round(cfg.coreset_ratio * len(pool))))
    times: dict[str, list[float]] = {"plain": [], "rounds": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain_greedy), ("rounds", greedy_coreset)):
            t0 = time.perf_counter()
            chosen = fn(pool, n)
            times[name].append(time.perf_counter() - t0)
            if name == "plain":
                plain = chosen
    differ = int((chosen != plain).sum())
    same_set = set(chosen.tolist()) == set(plain.tolist())
    first = (f"the same {n}" if not differ else
             f"{'the same set' if same_set else f'{len(set(chosen.tolist()) & set(plain.tolist()))} of {n} in both'}, "
             f"{differ} positions in another order")
    span = {k: f"{min(v):.1f}-{max(v):.1f}" for k, v in times.items()}
    ratios = [p / r for p, r in zip(times["plain"], times["rounds"])]
    cmd = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    text = (f"## Greedy coreset selection: rounds against the plain loop\n\n- command: `{cmd}`\n"
            f"- pool: {what}; {len(pool)} candidates × {pool.shape[1]} channels, {n} chosen (projection to 64); "
            f"{args.repeats} runs of each, in turns; device {describe_device(torch.device('cpu'))}, "
            f"load average {os.getloadavg()[0]:.1f} at the end, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
            "| plain loop (s) | rounds (s) | speed-up (per pair of runs) | choices |\n|---|---|---|---|\n"
            f"| {span['plain']} | {span['rounds']} | {min(ratios):.1f}-{max(ratios):.1f}× | {first} |\n")
    publish(text, args.results, "bench_coreset")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--banks", default="7800,16384")
    p.add_argument("--dim", type=int, default=152)
    p.add_argument("--queries", type=int, default=16 * 32 * 32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--results", type=Path)
    p.add_argument("--coreset", action="store_true", help="time the greedy coreset selection instead")
    p.add_argument("--manifest", type=Path, help="--coreset: the default fit's candidates from this set")
    p.add_argument("--pool", type=int, default=876672, help="--coreset without --manifest: Gaussian candidates")
    args = p.parse_args(argv)
    if args.coreset:
        args.repeats = args.repeats if "--repeats" in (argv or sys.argv) else 2
        return coreset_main(args)
    try:
        import faiss
        faiss.omp_set_num_threads(torch.get_num_threads())
    except ImportError:
        faiss = None
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(args.queries, args.dim, generator=gen)
    rows = ["| bank slots | torch chunked (s) | faiss IndexFlatL2 (s) | faiss speed-up | same nearest |", "|---|---|---|---|---|"]
    for n in map(int, args.banks.split(",")):
        bank = torch.randn(n, args.dim, generator=gen)
        t_torch = best_of(lambda: nearest(queries, bank), args.repeats)
        if faiss is None:
            rows.append(f"| {n} | {t_torch:.3f} | not installed | — | — |")
            continue
        index = faiss.IndexFlatL2(args.dim)
        index.add(bank.numpy())
        t_faiss = best_of(lambda: index.search(queries.numpy(), 1), args.repeats)
        same = float((torch.from_numpy(index.search(queries.numpy(), 1)[1][:, 0]) == nearest(queries, bank)[1][:, 0])
                     .float().mean())
        rows.append(f"| {n} | {t_torch:.3f} | {t_faiss:.3f} | {t_torch / t_faiss:.2f}× | {same:.4f} |")
    cmd = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    text = (f"## k-NN search for the coreset memory\n\n- command: `{cmd}`\n- {args.queries} queries × {args.dim} "
            f"channels, best of {args.repeats}; device {describe_device(torch.device('cpu'))}, "
            f"{datetime.now(timezone.utc):%Y-%m-%d}\n\n" + "\n".join(rows) + "\n")
    print(text)
    if args.results:
        old = args.results.read_text() if args.results.exists() else ""
        atomic_write_text(args.results, old + text + "\n")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))))
    sys.exit(main())
