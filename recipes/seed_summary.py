"""Mean ± standard deviation over runs of recipes/compare.py that differ only in --seed.

    python recipes/seed_summary.py runs/mtd_b runs/mtd_b_s1 runs/mtd_b_s2

Reads <run>/<model>/report/metrics.json for every model found in all runs and prints a Markdown
table (mean ± sample std per metric), plus, per metric, in how many runs each model was best.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

KEYS = ("image_auroc", "pixel_auroc", "aupro")


def load_runs(runs: list[Path]) -> dict[str, list[dict]]:
    """{model: [metrics of run 1, run 2, ...]} for the models every run has."""
    found = [{p.parent.parent.name: json.loads(p.read_text()) for p in sorted(r.glob("*/report/metrics.json"))}
             for r in runs]
    models = [m for m in found[0] if all(m in f for f in found)]
    if not models:
        raise SystemExit(f"no model has report/metrics.json in every run of: {', '.join(map(str, runs))}")
    return {m: [f[m] for f in found] for m in models}


def summary_table(results: dict[str, list[dict]]) -> str:
    n = len(next(iter(results.values())))
    best = {k: np.argmax([[r[k] for r in results[m]] for m in results], axis=0) for k in KEYS}
    lines = ["| model | " + " | ".join(f"{k} (mean ± sd, {n} seeds)" for k in KEYS) + " | best in runs |",
             "|---|" + "---|" * len(KEYS) + "---|"]
    for i, (m, rs) in enumerate(results.items()):
        cells = [f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs], ddof=1) if n > 1 else 0:.3f}"
                 for k in KEYS]
        wins = ", ".join(f"{k} {int((best[k] == i).sum())}/{n}" for k in KEYS)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {wins} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="output folders of recipes/compare.py (--out)")
    args = p.parse_args(argv)
    sys.stdout.write(summary_table(load_runs(args.runs)))


if __name__ == "__main__":
    main()
