"""``inspect-ad video``: fit, evaluate and score the video anomaly models (a thin layer over
:mod:`inspect_ad.detectors.video` and :mod:`inspect_ad.reports.video`)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import click
import numpy as np

from inspect_ad.atomic import atomic_path, atomic_write_json
from inspect_ad.data.video import load_clip_folder, load_video_dataset
from inspect_ad.detectors.bundle import CONFIG, check_model_options
from inspect_ad.detectors.presets import PRESET_NAMES, VIDEO_MODELS, video_preset, video_train_config
from inspect_ad.detectors.video import VideoDetector
from inspect_ad.reports.video import VideoResult, evaluate as evaluate_videos
from inspect_ad.scoring.video import anomaly_score
from inspect_ad.training.device import resolve_device, torch_threads_from_env
from inspect_ad.errors import InspectError
from inspect_ad.models import make_config
from inspect_ad.training.loop import TrainConfig
from inspect_ad.cli.common import (Group, Option, batch_size_option, bundle_option, device_option, epochs_option, field_option,
                                   lr_option, model_options, option_errors, overwrite_option, quiet_option, seed_option)


@click.group("video", cls=Group)
def video() -> None:
    """Video anomaly detection (MemAE-3D, MNAD, prototype-guided memory)."""
    torch_threads_from_env()   # long runs on shared machines can be kept to one core


def data_option(help: str):
    """``--data-root``, the image commands' name for where the data are; ``--data`` is the older name."""
    return click.option("--data-root", "data", cls=Option, hidden_names=("--data",), required=True, help=help)


@video.command("fit", sections={
    "Model": ("model", "preset", "no_memory", "options"), "Data": ("data",),
    "Training": ("epochs", "batch_size", "lr", "max_steps_per_epoch", "seed"),
    "Output and run": ("out", "overwrite", "device", "quiet")})
@click.option("--model", "model", cls=Option, hidden_names=("--recipe",), type=click.Choice(VIDEO_MODELS), required=True,
              help="MemAE-3D, MNAD reconstruction or prediction, or the prototype memory (Lai et al. 2021).")
@data_option("Dataset folder (frame folders or UCSD original) or 'synthetic'.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the model bundle.")
@click.option("--preset", cls=Option, deprecated_names=("--setting",), type=click.Choice(PRESET_NAMES), default="cpu",
              show_default=True, help="paper: the papers' sizes (GPU); cpu: 64×64 grey, narrow nets; tiny: tests.")
@epochs_option(help="Override the preset's epochs.")
@batch_size_option(help="Override the preset's batch size.")
@lr_option(help="Override the preset's learning rate (paper: the paper's).")
@field_option("--max-steps-per-epoch", TrainConfig, "max_steps_per_epoch", help="Cap each epoch (for quick CPU runs).")
@click.option("--no-memory", is_flag=True, help="Train the paper's no-memory ablation.")
@model_options
@seed_option
@device_option
@overwrite_option()
@quiet_option()
def fit(model, data, out, preset, epochs, batch_size, lr, max_steps_per_epoch, no_memory, options, seed, device,
        overwrite, quiet):
    """Train a video model on the normal training videos under --data-root and save a bundle."""
    if (Path(out) / CONFIG).exists() and not overwrite:
        raise InspectError(f"{out} already holds a model bundle; pass --overwrite to replace it, or choose another --out")
    resolve_device(device)  # before the data: a missing GPU should not cost a dataset load
    st = video_preset(model, preset)
    model_over = {**st["model"], **options, **({"use_memory": False} if no_memory else {})}
    check_model_options(model, model_over)
    with option_errors():
        train_config = video_train_config(model, preset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                          device=device, max_steps_per_epoch=max_steps_per_epoch)
        det = VideoDetector(model, model_over, train_config)
        make_config(model, **model_over)   # a bad option fails here, before the data are read
    ds = load_video_dataset(data).require_train()
    click.echo(f"training {model} ({preset}) on {len(ds.train)} videos of {ds.name} for {train_config.epochs} epochs")
    det.fit(ds.train, progress=not quiet, data=str(data), preset=preset).save(out)
    click.echo(f"saved {out} ({det.training_info_['seconds']:.0f} s training)")


@video.command("evaluate", sections={"Model and data": ("bundle", "data", "no_update"),
                                     "Output and run": ("out", "device")})
@bundle_option()
@data_option("Dataset folder with labelled test videos, or 'synthetic'.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for metrics.json and the plot "
              "(default: BUNDLE/eval).")
@click.option("--no-update", is_flag=True, help="Disable MNAD's test-time memory update.")
@device_option
def evaluate(bundle, data, out, no_update, device):
    """Frame-level AUC over all test frames (per-video and fitted-range normalisation)."""
    from inspect_ad.reports.visualize import save_score_plot   # matplotlib: only when plotting
    det = VideoDetector.load(bundle, device)
    det.test_time_update = not no_update
    ds = load_video_dataset(data).require_test()
    metrics, results = evaluate_videos(det, ds.test)
    metrics.update(model=det.model, data=str(data), training=det.training_info_)
    out = Path(out or Path(bundle) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    save_score_plot(out / "scores.png", results, f"{det.model} on {ds.name}: frame AUC {metrics['frame_auc']:.3f}")
    click.echo(json.dumps({k: metrics[k] for k in ("frame_auc", "frame_auc_calibrated", "frames_scored", "fps")
                           if k in metrics}))


@video.command("score")
@click.argument("clip_dir", type=click.Path(exists=True, file_okay=False))
@bundle_option()
@click.option("--out", type=click.Path(dir_okay=False), help="CSV path (default: CLIP_DIR's name + _scores.csv).")
@device_option
def score(clip_dir, bundle, out, device):
    """Per-frame scores of one clip: CSV (raw, against the fitted ranges, and per-clip normalised) and a plot."""
    from inspect_ad.reports.visualize import save_score_plot   # matplotlib: only when plotting
    det = VideoDetector.load(bundle, device)
    video_obj = load_clip_folder(clip_dir)
    start = time.perf_counter()
    raw = det.score_frames(video_obj)
    per_clip = anomaly_score(det.model_, raw)
    fitted = anomaly_score(det.model_, raw, det.ranges_) if det.ranges_ else np.full(len(per_clip), np.nan)
    out = Path(out or f"{Path(clip_dir).name}_scores.csv")
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "file", "psnr", "distance", "error", "score_calibrated", "score_per_clip"])
        for i, p in enumerate(video_obj.paths):
            w.writerow([i, p.name, *(f"{x:.6g}" for x in (raw.psnr[i], raw.distance[i], raw.error[i],
                                                         fitted[i], per_clip[i]))])
    save_score_plot(out.with_suffix(".png"), [VideoResult(video_obj.name, None, raw, per_clip,
                                                          fitted if det.ranges_ else None)], det.model)
    click.echo(f"scored {len(video_obj)} frames in {time.perf_counter() - start:.1f} s -> {out}")


if __name__ == "__main__":
    video()
