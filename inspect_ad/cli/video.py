"""``inspect-ad video``: fit, evaluate and score the video anomaly models (a thin layer over
:mod:`inspect_ad.detectors.video`)."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import click
import numpy as np
import torch

from inspect_ad.atomic import atomic_path, atomic_write_json
from inspect_ad.detectors.bundle import CONFIG, check_model_options, load_bundle, read_bundle_config, save_bundle
from inspect_ad.data.video import load_clip_folder, load_video_dataset
from inspect_ad.errors import InspectError
from inspect_ad.models import parse_overrides
from inspect_ad.engine.device import DEVICE_HELP, describe_device, resolve_device
from inspect_ad.detectors.video import (RECIPES, SETTINGS, anomaly_score, calibrate, evaluate_videos, fit_video_model,
                    load_frames, recipe_setting, save_score_plot, score_frames, VideoResult)


def _threads() -> None:
    # Respect OMP_NUM_THREADS so long runs on shared machines can be kept to one core.
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@click.group("video")
def video() -> None:
    """Video anomaly detection (MemAE-3D, MNAD, prototype-guided memory)."""
    _threads()


@video.command("fit")
@click.option("--recipe", type=click.Choice(RECIPES), required=True)
@click.option("--data", required=True, help="dataset folder (frame folders or UCSD original) or 'synthetic'")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="bundle folder to write")
@click.option("--setting", type=click.Choice(SETTINGS), default="cpu", show_default=True,
              help="paper: the papers' sizes (GPU); cpu: 64×64 grey, narrow nets; tiny: tests")
@click.option("--epochs", type=click.IntRange(1), help="override the setting's epochs")
@click.option("--batch-size", type=click.IntRange(1), help="override the setting's batch size")
@click.option("--max-steps-per-epoch", type=click.IntRange(1), help="cap each epoch (for quick CPU runs)")
@click.option("--no-memory", is_flag=True, help="train the paper's no-memory ablation")
@click.option("--set", "overrides", multiple=True, help="model config KEY=VALUE (repeatable)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle in --out.")
def fit(recipe, data, out, setting, epochs, batch_size, max_steps_per_epoch, no_memory, overrides, seed, device,
        overwrite):
    """Train a recipe on the normal training videos of DATA and save a bundle."""
    if (Path(out) / CONFIG).exists() and not overwrite:
        raise InspectError(f"{out} already holds a model bundle; pass --overwrite to replace it, or choose another --out")
    dev = resolve_device(device)  # before the data: a missing GPU should not cost a dataset load
    st = recipe_setting(recipe, setting)
    model_over = {**st["model"], **parse_overrides(overrides, "--set"), **({"use_memory": False} if no_memory else {})}
    check_model_options(recipe, model_over, "--set")
    ds = load_video_dataset(data).require_train()
    epochs, batch_size = epochs or st["epochs"], batch_size or st["batch_size"]
    click.echo(f"training {recipe} ({setting}) on {len(ds.train)} videos of {ds.name} for {epochs} epochs")
    result = fit_video_model(recipe, ds.train, epochs, batch_size, seed, max_steps_per_epoch, dev, **model_over)
    cal = calibrate(result.model, ds.train)
    training = {"data": str(data), "setting": setting, "epochs": epochs, "batch_size": batch_size,
                "seed": seed, "max_steps_per_epoch": max_steps_per_epoch, "seconds": round(result.seconds, 1),
                "device": describe_device(dev),
                "history": result.history}
    save_bundle(out, result.model, recipe, result.model.config, training=training, calibration=cal)
    click.echo(f"saved {out} ({result.seconds:.0f} s training)")


@video.command("evaluate")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--data", required=True, help="dataset folder with labelled test videos, or 'synthetic'")
@click.option("--out", type=click.Path(file_okay=False), help="where metrics.json and the plot go "
              "(default: <model>/eval)")
@click.option("--no-update", is_flag=True, help="disable MNAD's test-time memory update")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
def evaluate(model_dir, data, out, no_update, device):
    """Frame-level AUC over all test frames (per-video and calibrated normalisation)."""
    bundle = _load_video_bundle(model_dir, device)
    ds = load_video_dataset(data).require_test()
    metrics, results = evaluate_videos(bundle.model, ds.test, bundle.sections.get("calibration"),
                                       test_time_update=not no_update)
    metrics.update(model=bundle.name, data=str(data), training=_summary(bundle.sections.get("training", {})))
    out = Path(out or Path(model_dir) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    save_score_plot(out / "scores.png", results, f"{bundle.name} on {ds.name}: frame AUC {metrics['frame_auc']:.3f}")
    click.echo(json.dumps({k: metrics[k] for k in ("frame_auc", "frame_auc_calibrated", "frames_scored", "fps")
                           if k in metrics}))


def _load_video_bundle(model_dir, device):
    name = read_bundle_config(model_dir)["model"]["name"]
    if name not in RECIPES:
        raise InspectError(f"{model_dir} holds a {name!r} model, not a video model ({', '.join(RECIPES)}); "
                           f"use 'inspect-ad evaluate' or 'inspect-ad segment' for image models")
    return load_bundle(model_dir, resolve_device(device))


def _summary(training: dict) -> dict:
    return {k: v for k, v in training.items() if k != "history"}


@video.command("score")
@click.argument("clip_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(dir_okay=False), help="CSV path (default: <clip_dir name>_scores.csv)")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
def score(clip_dir, model_dir, out, device):
    """Per-frame scores of one clip: CSV (raw, calibrated and per-clip normalised) and a plot."""
    bundle = _load_video_bundle(model_dir, device)
    video_obj = load_clip_folder(clip_dir)
    start = time.perf_counter()
    raw = score_frames(bundle.model, load_frames(bundle.model, video_obj), test_time_update=False)
    cal = bundle.sections.get("calibration")
    per_clip = anomaly_score(bundle.model, raw)
    calibrated = anomaly_score(bundle.model, raw, cal) if cal else np.full(len(per_clip), np.nan)
    out = Path(out or f"{Path(clip_dir).name}_scores.csv")
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "file", "psnr", "distance", "error", "score_calibrated", "score_per_clip"])
        for i, p in enumerate(video_obj.paths):
            w.writerow([i, p.name, *(f"{x:.6g}" for x in (raw.psnr[i], raw.distance[i], raw.error[i],
                                                         calibrated[i], per_clip[i]))])
    save_score_plot(out.with_suffix(".png"), [VideoResult(video_obj.name, None, raw, per_clip,
                                                          calibrated if cal else None)], bundle.name)
    click.echo(f"scored {len(video_obj)} frames in {time.perf_counter() - start:.1f} s -> {out}")


if __name__ == "__main__":
    video()
