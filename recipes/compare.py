"""Train and evaluate AE, MemAE and MMAE the same way on one dataset; write a Markdown table.

    python recipes/compare.py --manifest ../shared/data/mtd/split.json --image-size 128 \\
        --epochs 40 -o grid_stride=8 --table recipes/results/mtd.md --title "paper recipe, 128 px"
    python recipes/compare.py --data-root /data/mvtec_ad --category bottle

Each run appends one section (command line, seed, device, wall time, one row per model) to
--table, so every configuration tried stays on record, kept or not.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import torch

from inspect_ad.scoring.anomaly_map import METRICS, STANDARDIZE, MapConfig, parse_scales
from inspect_ad.data import load_image_set
from inspect_ad.data.preprocess import NORMALIZATIONS, RESIZE_MODES
from inspect_ad.detectors.image import Detector
from inspect_ad.reports.evaluation import evaluate
from inspect_ad.models import ablation_options, parse_overrides
from inspect_ad.training.device import describe_device, resolve_device
from inspect_ad.training.loop import TrainConfig

KEYS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest")
    p.add_argument("--data-root")
    p.add_argument("--category")
    p.add_argument("--models", default="ae,memae,mmae")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--sigma", type=float, default=4.0)
    p.add_argument("--map-metric", default="l2", choices=METRICS)
    p.add_argument("--map-scales", default="1",
                   help="comma-separated pooling factors of the error map (MapConfig.scales)")
    p.add_argument("--ssim-weight", type=float, default=0.0)
    p.add_argument("--gms-weight", type=float, default=0.0)
    p.add_argument("--synthetic-defects", type=float, default=0.0,
                   help="fraction of training inputs given pasted defects to repair")
    p.add_argument("--augment", default="none", choices=["none", "flip", "light"])
    p.add_argument("--normalization", default="divide_by_255", choices=NORMALIZATIONS,
                   help="'stretch': per-image contrast stretch (see inspect_ad.data.preprocess)")
    p.add_argument("--resize", default="squash", choices=RESIZE_MODES,
                   help="non-square images: 'pad' keeps the aspect ratio (see inspect_ad.data.preprocess)")
    p.add_argument("--standardize", nargs="?", const="map", default="off", choices=STANDARDIZE,
                   help="per-pixel z-scores: 'map' (alone: --standardize) or the image 'score' only (see MapConfig)")
    p.add_argument("--reference-split", type=float, default=0.0,
                   help="with --standardize: fraction of training images held out for the reference maps")
    p.add_argument("-o", "--option", action="append", default=[], help="model option key=value")
    p.add_argument("--out", default="runs/compare", help="folder for bundles and reports")
    p.add_argument("--table", help="Markdown file to append the results section to")
    p.add_argument("--title", default="", help="section title in the table")
    p.add_argument("--jobs", type=int, default=1, help="train the models in this many parallel processes "
                   "(each with one torch thread)")
    return p.parse_args(argv)


def run_one(name: str, data, args, out: Path) -> dict:
    det = Detector(name, args.image_size,
                   train_config=TrainConfig(args.epochs, args.batch_size, args.lr, seed=args.seed,
                                            device=args.device, checkpoint_every=10, ssim_weight=args.ssim_weight,
                                            gms_weight=args.gms_weight, synthetic_defects=args.synthetic_defects),
                   map_config=MapConfig(args.sigma, "max", args.map_metric, args.standardize,
                                        parse_scales(args.map_scales)), augment=args.augment,
                   model_options=ablation_options(name, parse_overrides(args.option)), normalization=args.normalization, resize_mode=args.resize)
    t0 = time.perf_counter()
    det.fit(data.train, out=out / name, resume=True, dataset=data.name, reference_split=args.reference_split)
    result = evaluate(det, data, out / name / "report")
    result["train_seconds"] = round(time.perf_counter() - t0 - result["seconds"], 1)
    print(f"{name}: " + ", ".join(f"{k}={result[k]:.4f}" for k in KEYS), flush=True)
    return result


def header(args, wall: float, data_name: str) -> str:
    """Section title plus what is needed to rerun it: command line, seed, device, wall time."""
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    return (f"### {args.title or 'run'} — {data_name}\n\n- command: `{cmd}`\n"
            f"- seed {args.seed}, device {describe_device(resolve_device(args.device))}, "
            f"wall time {wall / 60:.1f} min, {datetime.now(timezone.utc):%Y-%m-%d}\n\n")


def model_rows(results: dict) -> str:
    lines = ["| model | image AUROC | pixel AUROC | AUPRO@30% | image F1-max | pixel F1-max | train s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + f" | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n\n"


def append(path: str | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)


def main(argv=None) -> None:
    args = parse_args(argv)
    data = load_image_set(args.data_root, args.category, args.manifest)
    out = Path(args.out)
    t0 = time.perf_counter()
    names = args.models.split(",")
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=torch.set_num_threads,
                                 initargs=(1,)) as pool:
            futures = {n: pool.submit(run_one, n, data, args, out) for n in names}
            results = {n: f.result() for n, f in futures.items()}
    else:
        results = {name: run_one(name, data, args, out) for name in names}
    text = header(args, time.perf_counter() - t0, data.name) + model_rows(results)
    print(text)
    append(args.table, text)


if __name__ == "__main__":
    main()
