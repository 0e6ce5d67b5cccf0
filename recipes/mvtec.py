"""AE, MemAE and MMAE on every MVTec AD category; a table laid out like the MMAE paper's Table 1
(AUPRO up to 30% FPR per category, textures then objects, mean last) with the paper's numbers
beside ours.

    python recipes/mvtec.py --data-root /data/mvtec_ad --out runs/mvtec --table recipes/results/mvtec.md

MVTec AD cannot be downloaded in our CI; the recipe is tested on a generated folder in its layout.
Training options are those of recipes/compare.py (image size, epochs, -o model options, ...).
"""
from __future__ import annotations

import time
from pathlib import Path

from compare import append, header, parse_args, run_one

from inspect_ad.data import from_mvtec, mvtec_categories

TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush",
           "transistor", "zipper")
# MMAE paper, Table 1: normalised AUPRO@30% of MMAE ("Ours") and MemAE.
PAPER = {"carpet": (0.599, 0.594), "grid": (0.610, 0.519), "leather": (0.826, 0.824), "tile": (0.582, 0.588),
         "wood": (0.685, 0.670), "bottle": (0.916, 0.74), "cable": (0.672, 0.749), "capsule": (0.886, 0.874),
         "hazelnut": (0.923, 0.919), "metal_nut": (0.869, 0.807), "pill": (0.895, 0.882),
         "screw": (0.865, 0.896), "toothbrush": (0.948, 0.929), "transistor": (0.751, 0.746),
         "zipper": (0.677, 0.684)}


def table(per_cat: dict[str, dict], models: list[str]) -> str:
    head = "| group | category | " + " | ".join(f"{m} (ours)" for m in models) + " | MMAE (paper) | MemAE (paper) |"
    lines = [head, "|" + "---|" * (len(models) + 4)]
    for group, cats in (("textures", TEXTURES), ("objects", OBJECTS)):
        for cat in cats:
            if cat not in per_cat:
                continue
            ours = " | ".join(f"{per_cat[cat][m]['aupro']:.3f}" for m in models)
            paper = PAPER.get(cat)
            lines.append(f"| {group} | {cat} | {ours} | " + (f"{paper[0]:.3f} | {paper[1]:.3f} |" if paper else "– | – |"))
    others = sorted(set(per_cat) - set(TEXTURES) - set(OBJECTS))
    for cat in others:
        lines.append(f"| other | {cat} | " + " | ".join(f"{per_cat[cat][m]['aupro']:.3f}" for m in models) + " | – | – |")
    mean = " | ".join(f"{sum(r[m]['aupro'] for r in per_cat.values()) / len(per_cat):.3f}" for m in models)
    lines.append(f"| | **mean ({len(per_cat)} categories)** | {mean} | 0.777 | 0.761 |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    root = Path(args.data_root or ".")
    cats = args.category.split(",") if args.category else mvtec_categories(root)
    models = args.models.split(",")
    t0 = time.perf_counter()
    per_cat = {}
    for cat in cats:
        data = from_mvtec(root, cat)
        per_cat[cat] = {m: run_one(m, data, args, Path(args.out) / cat) for m in models}
    text = (header(args, time.perf_counter() - t0, f"{root.name} ({len(cats)} categories)")
            + "AUPRO@30% (normalised), as in the MMAE paper's Table 1:\n\n" + table(per_cat, models) + "\n")
    print(text)
    append(args.table, text)


if __name__ == "__main__":
    main()
