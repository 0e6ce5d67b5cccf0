"""The end-to-end demo: built-in data -> train each model the same way -> evaluate -> heatmaps ->
calibrate the first model on held-out good images -> an ``inspect`` QA report of the test images.

A rerun into the same folder keeps the data and replaces the rest: what an earlier run made for a
model or category this run does not make (its bundle, checkpoint, report, heatmaps, QA report) is
removed, as the earlier run's ``metrics.json`` lists them; nothing else in the folder is touched."""
from __future__ import annotations

import json
import platform
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from inspect_ad.atomic import atomic_write_json
from inspect_ad.data.datasets import GOOD, ImageSet, Sample, from_mvtec
from inspect_ad.data.io import list_images, read_mask
from inspect_ad.data.synthetic import CALIBRATION, write_mvtec
from inspect_ad.detectors.image import Detector
from inspect_ad.detectors.presets import (DEMO_DATA, DEMO_FEATURE_PRESET, DEMO_PIXEL_PRESET, DEMO_TARGET_FRR,
                                         IMAGE_BACKBONE, image_map_config)
from inspect_ad.errors import InspectError
from inspect_ad.reports.batch import HTML, JSONL, inspect_images, read_rows
from inspect_ad.reports.evaluation import evaluate, save_comparison_plots
from inspect_ad.training.device import describe_device, resolve_device
from inspect_ad.training.loop import TrainConfig
from inspect_ad.models import ablation_options
from inspect_ad.reports.visualize import colour_scale, save_overlay, shown, verdict
from inspect_ad.scoring.calibration import ERROR, FAIL, INVALID, PASS

SUMMARY_KEYS = ("image_auroc", "pixel_auroc", "aupro")
CALIBRATION_KEYS = ("n", "target_frr", "image_threshold", "pixel_threshold", "min_area", "guarantee")


def _dataset(root: Path, category: str, seed: int, spec: dict) -> ImageSet:
    if not (root / category).is_dir():
        write_mvtec(root, [category], seed=seed, **spec)
    if not (root / category / CALIBRATION).is_dir():
        raise InspectError(f"{root / category / CALIBRATION} is missing (the data of an older demo); delete "
                           f"{root / category} to have it written again, or choose another --out")
    return from_mvtec(root, category)


def one_per_defect(samples: list[Sample]) -> list[Sample]:
    """The first test image of each defect kind, in the order the kinds come."""
    first: dict[str, Sample] = {}
    for s in samples:
        if s.is_anomalous:
            first.setdefault(s.label, s)
    return list(first.values())


def _heatmaps(det: Detector, samples: list[Sample], folder: Path) -> None:
    """One heatmap per defect kind: the model's regions in white (a calibrated model's FAILs), the
    true defect (its ground-truth mask) dashed green."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = one_per_defect(samples)
    scale = colour_scale(det)
    for s, p in zip(chosen, det.predict_iter([s.image for s in chosen], keep_image=True)):
        j = det.judge(p) if det.calibration_ else None
        judged = {"decision": str(j.decision), "normalized": j.normalized} if j else {}
        said = verdict(**judged) if j else "not calibrated"
        save_overlay(folder / f"{s.label}_{s.image.stem}_overlay.png", p.image, p.map, scale,
                     f"{det.model} on {s.label}: {said} (score {p.score:.4g})\n"
                     f"{'white: its regions, ' if j else ''}dashed green: the true defect",
                     mask=j.mask if j else None, truth=read_mask(s.mask, p.map.shape),
                     info=shown(p.map, scale, j.mask if j else None, **judged))


def made_by(out: Path, category: str, model: str) -> list[Path]:
    """What the demo makes for one model of one category (the QA report is the category's)."""
    return [out / "models" / category / model, out / "models" / category / f"{model}.checkpoint",
            out / "reports" / category / model, out / "heatmaps" / category / model]


def remove_stale(out: Path, categories: list[str], models: list[str]) -> list[Path]:
    """Remove what the previous run into ``out`` made (as its metrics.json lists) and this one will
    not: models and categories dropped since, the QA report of a category no longer run and the
    model comparison of one left with a single model. Returns what was removed."""
    try:
        before = json.loads((out / "metrics.json").read_text())["categories"]
    except (OSError, ValueError, KeyError, TypeError):
        return []   # no earlier demo here: nothing of ours to remove
    stale = []
    for cat, runs in before.items():
        stale += [p for name in runs if cat not in categories or name not in models for p in made_by(out, cat, name)]
        if cat not in categories:
            stale.append(out / "inspect" / cat)
        if cat not in categories or len(models) < 2:
            stale += [out / "reports" / cat / f for f in ("roc_models.png", "pro_models.png")]
    removed = [p for p in stale if p.exists()]
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return removed


def decisions_by_label(rows: list[dict], labels: dict[Path, str]) -> dict[str, dict[str, int]]:
    """``inspect`` rows counted per true label, good first: {'good': {'PASS': 39, 'FAIL': 1}, 'crack': ...};
    ``labels`` maps each image's resolved path to its label."""
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(labels[Path(r["resolved"])], Counter())[r["decision"]] += 1
    return {label: {d: counts[label][d] for d in (PASS, FAIL, INVALID, ERROR) if counts[label][d]}
            for label in sorted(counts, key=lambda label: label != GOOD)}


def pass_fail_text(decisions: dict[str, dict[str, int]]) -> str:
    """'39 of 40 good images PASS, 50 of 56 defective FAIL (good 40: 39 PASS, 1 FAIL; crack 8: 8 FAIL; ...)'"""
    good, bad = decisions.get(GOOD, {}), Counter()
    for label, c in decisions.items():
        if label != GOOD:
            bad.update(c)
    per_label = "; ".join(f"{label} {sum(c.values())}: " + ", ".join(f"{n} {d}" for d, n in c.items())
                          for label, c in decisions.items())
    return (f"{good.get(PASS, 0)} of {sum(good.values())} good images PASS, {bad[FAIL]} of {sum(bad.values())} "
            f"defective FAIL ({per_label})")


def _qa(det: Detector, data: ImageSet, category_dir: Path, report: Path, progress: bool) -> dict:
    """Calibrate ``det`` on the category's held-out good images, then inspect its test images as a
    user would (the report is the demo's own, so a rerun replaces it)."""
    good = category_dir / CALIBRATION
    cal = det.calibrate(list_images(good), DEMO_TARGET_FRR, source=str(good), progress=progress)
    s = inspect_images(det, [category_dir / "test"], report, overwrite=True, progress=progress)
    labels = {sample.image.resolve(): sample.label for sample in data.test}
    return {"model": det.model, "bundle": str(det.bundle_path_), "report": str(report / HTML),
            "calibration": {k: cal[k] for k in CALIBRATION_KEYS},
            "passed": s.passed, "failed": s.failed, "seconds": s.seconds,
            "decisions": decisions_by_label(read_rows(report / JSONL), labels)}


def qa_lines(result: dict) -> list[str]:
    """What the demo ends with, per category: the calibration, the report to open, PASS/FAIL counts."""
    lines = []
    for cat, qa in result["qa"].items():
        cal = qa["calibration"]
        lines += [f"[{cat}] {qa['model']} calibrated on {cal['n']} held-out good images (target false-reject "
                  f"rate {cal['target_frr']:g}); bundle: {qa['bundle']}",
                  f"[{cat}] inspect: {pass_fail_text(qa['decisions'])}",
                  f"[{cat}] QA report: {qa['report']}"]
    return lines


def run_demo(out: Path, categories: list[str], models: list[str], epochs: int | None = None, seed: int = 0,
             progress: bool = True, echo: Callable[[str], None] = lambda s: None,
             backbone: str | None = IMAGE_BACKBONE, device: str = "auto", data_spec: dict = DEMO_DATA) -> dict:
    """``backbone=None`` trains the pixel models from scratch (``patchcore`` needs a backbone). The
    first of ``models`` is calibrated and inspects the test images (``qa`` in the result)."""
    t0 = time.perf_counter()
    removed = remove_stale(out, categories, models)
    if removed:
        echo("removed what the earlier run made and this one does not: " + ", ".join(map(str, removed)))
    p = DEMO_FEATURE_PRESET if backbone else DEMO_PIXEL_PRESET
    options = {**p["model_options"], **({"backbone": backbone} if backbone else {})}
    train_cfg = TrainConfig(epochs or p["epochs"], p["batch_size"], p["lr"], seed=seed, device=device,
                            checkpoint_every=0)
    per_cat: dict[str, dict] = {}
    qa: dict[str, dict] = {}
    for cat in categories:
        data = _dataset(out / "data", cat, seed, data_spec)
        per_cat[cat] = {}
        for name in models:
            echo(f"[{cat}] fitting {name} on {len(data.train)} images ...")
            model_options = ablation_options(name, options)
            det = Detector(name, p["image_size"], train_config=train_cfg, model_options=model_options,
                           map_config=image_map_config(name, model_options, p["sigma"]))
            det.fit(data.train, out=out / "models" / cat / name, progress=progress, dataset=data.name)
            if name == models[0]:
                echo(f"[{cat}] calibrating {name} on held-out good images and inspecting the test images ...")
                qa[cat] = _qa(det, data, out / "data" / cat, out / "inspect" / cat, progress)
            m = evaluate(det, data, out / "reports" / cat / name, progress=progress)
            _heatmaps(det, data.test, out / "heatmaps" / cat / name)
            per_cat[cat][name] = m
            echo(f"[{cat}] {name}: " + ", ".join(f"{k}={m[k]:.3f}" for k in SUMMARY_KEYS) + "; image AUROC per "
                 "defect: " + ", ".join(f"{kind} {v['image_auroc']:.3f}" for kind, v in m["per_label"].items()))
        if len(models) > 1:   # every model's ROC in one figure, and PRO in another
            save_comparison_plots({name: out / "reports" / cat / name for name in models}, out / "reports" / cat)
    result = {name: {k: float(np.mean([per_cat[c][name][k] for c in categories])) for k in SUMMARY_KEYS}
              for name in models}
    result.update(categories=per_cat, qa=qa, seconds=round(time.perf_counter() - t0, 1),
                  settings={**p, "backbone": backbone, "data": data_spec, "epochs": train_cfg.epochs, "seed": seed,
                            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                            "device": describe_device(resolve_device(device))})
    atomic_write_json(out / "metrics.json", result)
    return result
