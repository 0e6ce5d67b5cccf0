"""Which decision rule: the image threshold alone, or also "a region covers the minimum area"?

    python recipes/decision_rule.py demo_s0 demo_s1 demo_s2 --results recipes/results/decision_rule.md

Reads folders written by ``inspect-ad demo`` (each with its calibrated first model) and counts, on
their test images, per true label, the parts that FAIL by the image rule (score above the image
threshold: the rule inspect-ad uses), by the region rule (a region above the pixel threshold of at
least the minimum area: the second rule it does not use) and by either. Each rule alone keeps a
good part's false-reject probability at the target; both together would only promise twice it,
so the second rule is worth it only if it catches many defects the first misses.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from inspect_ad import Detector
from inspect_ad.data.datasets import GOOD, from_mvtec
from inspect_ad.scoring.calibration import FAIL, decide, largest_region_area, min_area_pixels

from results_file import publish


def counts(demo: Path) -> tuple[dict[str, Counter], dict]:
    """Per label: n, image, region and either rule's FAILs; and the first model's calibration."""
    metrics = json.loads((demo / "metrics.json").read_text())
    out: dict[str, Counter] = {}
    for cat, qa in metrics["qa"].items():
        det = Detector.load(qa["bundle"], "cpu")
        cal = det.calibration_
        data = from_mvtec(demo / "data", cat)
        for s, p in zip(data.test, det.predict_iter([s.image for s in data.test])):
            image = decide(p.score, cal["image_threshold"]) == FAIL
            region = largest_region_area(p.map, cal["pixel_threshold"]) >= min_area_pixels(cal, p.map.shape)
            out.setdefault(s.label, Counter()).update(n=1, image=int(image), region=int(region), either=int(image or region))
    return out, cal


def table(runs: dict[str, dict[str, Counter]]) -> str:
    lines = ["| demo | label | n | image rule FAIL | region rule FAIL | either FAIL |", "|---|---|---|---|---|---|"]
    for name, per_label in runs.items():
        bad = sum((c for label, c in per_label.items() if label != GOOD), Counter())
        for label, c in [*sorted(per_label.items(), key=lambda kv: kv[0] != GOOD), ("all defective", bad)]:
            lines.append(f"| {name} | {label} | {c['n']} | {c['image']} | {c['region']} | {c['either']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("demos", nargs="+", type=Path, help="folders written by 'inspect-ad demo'")
    p.add_argument("--results", type=Path, help="write the table as this recipe's section of a results file")
    args = p.parse_args(argv)
    runs, cals = {}, {}
    for demo in args.demos:
        runs[demo.name], cals[demo.name] = counts(demo)
    seeds = {d.name: json.loads((d / "metrics.json").read_text())["settings"]["seed"] for d in args.demos}
    settings = "; ".join(f"{n} (seed {seeds[n]}): target FRR {c['target_frr']:g} on {c['n']} good images, min "
                         f"area {c.get('min_area_fraction', 0):.2%} of the image" for n, c in cals.items())
    publish(f"## Decision rule: image threshold alone, or also the minimum area\n\n"
            f"Command: `python recipes/decision_rule.py {' '.join(map(str, args.demos))}`, on folders written by "
            f"`OMP_NUM_THREADS=1 inspect-ad demo --out DIR --seed S --quiet`; {settings}.\n\n{table(runs)}\n",
            args.results, "decision_rule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
