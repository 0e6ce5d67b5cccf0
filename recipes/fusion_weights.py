"""The fused model's weights and normalisation, measured without refitting: the mmae_patchcore
bundles a benchmark run fitted, re-weighted.

    python recipes/benchmark.py --sets brick,hazelnut,fryum --no-default --model mmae_patchcore --work W
    python recipes/fusion_weights.py --sets brick,hazelnut,fryum --work W --weights 1:0,1:1,1:2,0:1

The fused map is w₁ (R − μ₁)/s₁ + w₂ (D − μ₂)/s₂ (inspect_ad/models/fused.py), and everything the
detector does to it afterwards (resizing, tiles' stitching, Gaussian smoothing) is linear. So each
test image's map under any weights and scales is the same combination of two maps scored once:
the residual R alone and the distance D alone (the bundle's model with weights 1:0 and 0:1, centres
0, scales 1). The centres only add a constant, which changes none of the metrics; the scales are
measured again on the training images as the model's own ``fit_statistics`` measures them, for
each normalisation ("std" gives back the bundle's). Image scores are the combined map's maximum at the
image's size (the detector takes it at the model's input size for untiled sets, a difference of
interpolation only: compare the 1:1 std row with the benchmark's own).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from inspect_ad import Detector
from inspect_ad.atomic import atomic_write_json
from inspect_ad.data.preprocess import TrainImages
from inspect_ad.errors import InspectError
from inspect_ad.models.fused import map_statistics
from inspect_ad.reports.evaluation import collect, compute_metrics
from benchmark import ACCURACY, REPO, load, resolve_sets, slug
from results_file import publish

LABEL = "--model mmae_patchcore"


def basis_maps(det: Detector, samples) -> tuple[list, list, list]:
    """The test images' maps of the residual alone and of the distance alone (unstandardised), and masks."""
    model, fitted = det.model_, det.model_.config
    maps = []
    for w1, w2 in ((1.0, 0.0), (0.0, 1.0)):
        model.config = replace(fitted, mmae_weight=w1, patchcore_weight=w2, mmae_centre=0.0, patchcore_centre=0.0,
                               mmae_scale=1.0, patchcore_scale=1.0)
        _, m, masks = collect(det, samples, progress=False)
        maps.append(m)
    model.config = fitted
    return maps[0], maps[1], masks


def scales(det: Detector, images, normalisations: list[str]) -> dict[str, tuple[float, float]]:
    """{normalisation: (s₁, s₂)} as a fit with it measures them on the training images (one pass)."""
    data = TrainImages(images, det.preprocessing_)
    residual, distance = det.model_.training_maps(DataLoader(data, batch_size=16), len(data))
    return {n: (map_statistics(residual, n)[1], map_statistics(distance, n)[1]) for n in normalisations}


def weights(text: str) -> list[tuple[float, float]]:
    try:
        pairs = [tuple(float(v) for v in p.split(":")) for p in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 0 or max(p) == 0 for p in pairs):
        raise argparse.ArgumentTypeError(f"--weights takes MMAE:PATCHCORE pairs, e.g. 1:1,1:2; got {text!r}")
    return pairs


def evaluate(args, source, data, seed: int) -> list[dict]:
    bundle = args.work / "models" / source.name / f"{slug(args.label)}_seed{seed}"
    det = Detector.load(bundle, "cpu")
    if det.model != "mmae_patchcore":
        raise InspectError(f"{bundle} holds a {det.model} model, not mmae_patchcore")
    residual, distance, masks = basis_maps(det, data.test)
    rows = []
    for normalisation, (s1, s2) in scales(det, data.train, args.normalisations).items():
        for w1, w2 in args.weights:
            maps = [w1 / s1 * r + w2 / s2 * d for r, d in zip(residual, distance)]
            scores = np.array([m.max() for m in maps])
            m = compute_metrics(data.test, scores, maps, masks)
            rows.append({"set": source.name, "seed": seed, "normalisation": normalisation, "weights": f"{w1:g}:{w2:g}",
                         "mmae_scale": s1, "patchcore_scale": s2, **{k: m.get(k) for k in ACCURACY}})
            print(f"[{source.name}] seed {seed} {normalisation} {w1:g}:{w2:g}: image AUROC {m['image_auroc']:.3f}",
                  file=sys.stderr, flush=True)
    return rows


def cell(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{values[0]:.3f}" if len(values) == 1 else f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def table(rows: list[dict]) -> list[str]:
    head = "| set | normalisation | weights MMAE:patchcore | seeds | image AUROC | pixel AUROC | AUPRO@30% | recall @1% FRR |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    configs = dict.fromkeys((r["normalisation"], r["weights"]) for r in rows)
    for norm, w in configs:
        per_set: dict[str, list[dict]] = {}
        for r in rows:
            if (r["normalisation"], r["weights"]) == (norm, w):
                per_set.setdefault(r["set"], []).append(r)
        for name, rs in per_set.items():
            lines.append(f"| {name} | {norm} | {w} | {','.join(str(r['seed']) for r in rs)} | "
                         + " | ".join(cell([r[k] for r in rs]) for k in ACCURACY) + " |")
        worst = []
        for k in ACCURACY:
            means = {s: np.mean([r[k] for r in rs]) for s, rs in per_set.items() if rs[0][k] is not None}
            low = min(means, key=means.get) if means else None
            worst.append(f"**{means[low]:.3f}** ({low})" if low else "–")
        lines.append(f"| **worst case** | {norm} | {w} | | " + " | ".join(worst) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fusion_weights.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="mtd,fryum,grid,hazelnut,brick", help="as the benchmark's --sets")
    p.add_argument("--work", type=Path, required=True, help="the benchmark's --work folder")
    p.add_argument("--label", default=LABEL, help=f"the benchmark configuration of the bundles (default: {LABEL!r})")
    p.add_argument("--seeds", default="0", help="comma-separated fit seeds of the bundles")
    p.add_argument("--weights", type=weights, default=weights("1:0,1:1,1:2,1:4,0:1"),
                   help="MMAE:PATCHCORE weight pairs (default: 1:0,1:1,1:2,1:4,0:1)")
    p.add_argument("--normalisations", default="std,quantile", help="comma-separated: std, quantile")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--results", type=Path, help="Markdown file for the table (raw rows beside it as .json)")
    p.add_argument("--rows-from", type=Path, action="append", default=[],
                   help="the JSON of an earlier run of this recipe whose rows join the table (other sets)")
    args = p.parse_args(argv)
    args.normalisations = args.normalisations.split(",")
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    try:
        sources = resolve_sets(args.sets, args.shared, args.work)
        rows = [r for s in sources for seed in (int(x) for x in args.seeds.split(","))
                for r in evaluate(args, s, load(s, args.shared), seed)]
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    earlier = [r for f in args.rows_from for r in json.loads(f.read_text())["rows"]]
    rows = [r for r in earlier if r["set"] not in {s.name for s in sources}] + rows
    json_path = args.results.with_suffix(".json") if args.results else args.work / "fusion_weights.json"
    atomic_write_json(json_path, {"command": command, "rows": rows,
                                  "rows_from": {str(f): json.loads(f.read_text())["command"] for f in args.rows_from}})
    text = "\n".join(["### The fused model's weights and normalisation (re-weighted bundles)", "",
                      f"- command: `{command}`",
                      *(f"- rows of {f.name} from: `{json.loads(f.read_text())['command']}`" for f in args.rows_from),
                      f"- raw rows: `{json_path.name}`", "", *table(rows)])
    publish(text, args.results, "fusion_weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
