"""The coreset memory's nearest-neighbour search: the chunked torch search against faiss-cpu.

    python recipes/bench_knn.py --results recipes/results/knn.md

Queries are one batch of 16 images' patches at 256² (16 × 32 × 32), the bank sizes those of a
1% coreset of MTD (7.8k) and larger, with lite0 stages 2+3's 152 channels. Both searches are
exact (faiss ``IndexFlatL2``); the agreement of their nearest indices is checked. faiss is not a
dependency of inspect-ad: install it (``pip install faiss-cpu``) to run its column.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from inspect_ad.atomic import atomic_write_text
from inspect_ad.memory import nearest
from inspect_ad.training.device import describe_device


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--banks", default="7800,16384")
    p.add_argument("--dim", type=int, default=152)
    p.add_argument("--queries", type=int, default=16 * 32 * 32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--results", type=Path)
    args = p.parse_args(argv)
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
