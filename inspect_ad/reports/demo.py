"""The end-to-end demo: built-in data -> train each model the same way -> evaluate -> heatmaps."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from inspect_ad.atomic import atomic_write_json
from inspect_ad.models.backbones import DEFAULT_BACKBONE
from inspect_ad.data.datasets import from_mvtec
from inspect_ad.data.synthetic import write_mvtec
from inspect_ad.detectors.image import Detector
from inspect_ad.reports.evaluation import evaluate
from inspect_ad.engine.device import describe_device, resolve_device
from inspect_ad.engine.loop import TrainConfig
from inspect_ad.models import ablation_options
from inspect_ad.reports.visualize import save_overlay

# Small enough for a 2-core laptop CPU in a few minutes, large enough to show the memory's effect;
# 96 test images (40 good, 8 per defect type) keep the AUROCs from hinging on a handful of images.
DEMO_DATA = dict(size=128, n_train=200, n_test_good=40, n_test_per_defect=8)
# Pretrained features see the images at their own 128 px (their coarsest stage is 8 × 8 there);
# the pixel models (--backbone none) train from scratch at 64 px.
FEATURE_PRESET = dict(image_size=128, epochs=20, batch_size=16, lr=1e-3, model_options={})
PIXEL_PRESET = dict(image_size=64, epochs=40, batch_size=16, lr=1e-3,
                    model_options=dict(grid_stride=8, latent_channels=32, base_channels=16, max_channels=64,
                                       num_scales=3))
SUMMARY_KEYS = ("image_auroc", "pixel_auroc", "aupro")


def _dataset(root: Path, category: str, seed: int):
    if not (root / category).is_dir():
        write_mvtec(root, [category], seed=seed, **DEMO_DATA)
    return from_mvtec(root, category)


def _heatmaps(det: Detector, samples, folder: Path, n: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in samples if s.is_anomalous][:n]
    for s, p in zip(chosen, det.predict_iter([s.image for s in chosen], keep_image=True)):
        save_overlay(folder / f"{s.label}_{s.image.stem}_overlay.png", p.image, p.map, det.display_max(),
                     f"{det.model}: score {p.score:.4g}")


def run_demo(out: Path, categories: list[str], models: list[str], epochs: int | None = None, seed: int = 0,
             progress: bool = True, echo: Callable[[str], None] = lambda s: None,
             backbone: str | None = DEFAULT_BACKBONE, device: str = "auto") -> dict:
    """``backbone=None`` trains the pixel models from scratch (``patchcore`` needs a backbone)."""
    t0 = time.perf_counter()
    p = FEATURE_PRESET if backbone else PIXEL_PRESET
    options = {**p["model_options"], **({"backbone": backbone} if backbone else {})}
    train_cfg = TrainConfig(epochs or p["epochs"], p["batch_size"], p["lr"], seed=seed, device=device,
                            checkpoint_every=0)
    per_cat: dict[str, dict] = {}
    for cat in categories:
        data = _dataset(out / "data", cat, seed)
        per_cat[cat] = {}
        for name in models:
            echo(f"[{cat}] fitting {name} on {len(data.train)} images ...")
            det = Detector(name, p["image_size"], train_config=train_cfg, model_options=ablation_options(name, options))
            det.fit(data.train, out=out / "models" / cat / name, progress=progress, dataset=data.name)
            m = evaluate(det, data, out / "reports" / cat / name, progress=progress)
            _heatmaps(det, data.test, out / "heatmaps" / cat / name)
            per_cat[cat][name] = m
            echo(f"[{cat}] {name}: " + ", ".join(f"{k}={m[k]:.3f}" for k in SUMMARY_KEYS) + "; image AUROC per "
                 "defect: " + ", ".join(f"{kind} {v['image_auroc']:.3f}" for kind, v in m["per_label"].items()))
    result = {name: {k: float(np.mean([per_cat[c][name][k] for c in categories])) for k in SUMMARY_KEYS}
              for name in models}
    result.update(categories=per_cat, seconds=round(time.perf_counter() - t0, 1),
                  settings={**p, "backbone": backbone, "data": DEMO_DATA, "epochs": train_cfg.epochs, "seed": seed, "torch_threads": torch.get_num_threads(),
                            "machine": platform.machine(), "device": describe_device(resolve_device(device))})
    atomic_write_json(out / "metrics.json", result)
    return result
