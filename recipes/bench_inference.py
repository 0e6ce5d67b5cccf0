"""Inference speed of every runtime, and of ``inspect`` end to end; writes its section of
recipes/results/speed.md (the Ray section is bench_ray.py's).

    python recipes/bench_inference.py --results recipes/results/speed.md
    python recipes/bench_inference.py --manifest ../shared/data/mtd/split.json --results ...   # MTD's bank

Models: the default (``patchcore`` on efficientnet_lite0 features, fitted on the training images,
so its memory bank has the size that data gives it) and the pixel MMAE at its defaults (trained
for one epoch: speed does not depend on the weights' values). Both at 256². Without a manifest
the training images are the built-in data (brick, 256 px).

Model rates: images/s through the scoring graph (model + smoothing + pooling) on a batch of
preprocessed images, batch 1 and 32, for torch eager and each exported runtime, each as a ratio to
torch eager at the same batch measured in the same run (best of ``--repeats`` runs of
``--seconds``). Parity: each runtime's maps on the test images against torch's (largest
difference ÷ the map's range) and its PASS/FAIL decisions at torch's calibrated threshold.
End to end: ``inspect`` on a folder of JPEGs (decode, preprocessing, report included) as images/s,
against the model-only rate at ``inspect``'s batch size. ``--rss-images 10000`` also runs
``inspect`` on that many JPEGs in a subprocess and reports its peak resident memory.
On a GPU it adds bf16, channels-last and ``torch.compile`` rows, ms for one image, and the
achieved FLOP/s as a share of ``--peak-tflops`` (FLOPs counted by torch's FlopCounterMode).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from inspect_ad import Detector, TrainConfig
from inspect_ad.data.datasets import from_manifest, from_mvtec
from inspect_ad.data.synthetic import write_mvtec
from inspect_ad.training.device import describe_device, resolve_device, torch_threads_from_env
from inspect_ad.reports.batch import inspect_images
from bench_images import jpeg_inputs
from results_file import publish

SIZE = 256
EXPORTS = ("onnx", "openvino", "torchscript")


def rate(fn, batch: int, seconds: float, repeats: int) -> float:
    """Best images/s of ``repeats`` runs of about ``seconds`` each, after warm-up calls (TorchScript
    optimises its graph during the first few)."""
    for _ in range(3):
        fn()
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += batch
        best = max(best, n / (time.perf_counter() - t0))
    return best


def data(args, work: Path):
    if args.manifest:
        images = from_manifest(args.manifest)
    else:
        write_mvtec(work / "data", ["brick"], n_train=200, n_test_good=120, n_test_per_defect=4, size=SIZE)
        images = from_mvtec(work / "data", "brick")
    good = [s.image for s in images.test if not s.is_anomalous]
    return images.name, images.train, good, [s.image for s in images.test]


def fitted(name: str, train, good, device: str) -> Detector:
    if name == "patchcore":
        det = Detector("patchcore", SIZE, train_config=TrainConfig(device=device))
    else:   # the pixel MMAE: one epoch, speed does not depend on the weights
        det = Detector("mmae", SIZE, train_config=TrainConfig(epochs=1, device=device))
    det.fit(train, progress=False)
    det.calibrate(good, target_frr=0.01 if len(good) >= 99 else 0.05, progress=False, save=False)
    return det


def runtimes(det: Detector, work: Path, tag: str, device: str) -> dict[str, Detector]:
    out = {"torch eager": det}
    for fmt in EXPORTS:
        folder = det.export(work / f"{tag}_{fmt}", fmt)
        out[fmt] = Detector.load(folder, device, runtime=fmt)
        if fmt == "openvino" and device == "cpu":
            out["openvino bf16"] = Detector.load(folder, device, runtime="openvino", precision="bf16")
    return out


def parity(reference: Detector, det: Detector, images) -> tuple[float, int]:
    """(largest map difference ÷ the map's range, decisions that differ)."""
    worst, differ = 0.0, 0
    for e, g in zip(reference.predict_iter(images), det.predict_iter(images)):
        worst = max(worst, float(np.abs(e.map - g.map).max() / max(float(np.ptp(e.map)), 1e-12)))
        differ += reference.judge(e).decision != reference.judge(g).decision
    return worst, differ


def model_rows(name: str, dets: dict[str, Detector], test, args) -> list[str]:
    rows, base = [], {}
    for runtime, det in dets.items():
        cells = []
        for batch in (1, 32):
            x = torch.rand(batch, det.preprocessing_.channels, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
            r = rate(lambda: det.score_batch(x), batch, args.seconds, args.repeats)
            base.setdefault(batch, r)
            cells.append(f"{r:.1f} ({r / base[batch]:.2f}×)")
        diff, differ = (0.0, 0) if det is dets["torch eager"] else parity(dets["torch eager"], det, test)
        rows.append(f"| {name} | {runtime} | {cells[0]} | {cells[1]} | {diff:.1e} | {differ} of {len(test)} |")
    return rows


def end_to_end(dets: dict[str, Detector], folder: Path, n: int, work: Path, args) -> list[str]:
    rows = []
    for runtime in ("torch eager", "onnx", "openvino"):
        det = dets[runtime]
        x = torch.rand(16, det.preprocessing_.channels, SIZE, SIZE)
        model_rate = rate(lambda: det.score_batch(x), 16, args.seconds, args.repeats)
        for workers in (0, 1):
            best = 0.0
            for k in range(args.repeats):
                s = inspect_images(det, [folder], work / f"report_{runtime}_{workers}_{k}".replace(" ", "_"),
                                   batch_size=16, progress=False, workers=workers)
                best = max(best, n / s.seconds)
            rows.append(f"| {runtime} | {workers} | {best:.1f} | {model_rate:.1f} | {best / model_rate:.0%} |")
    return rows


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a process started from this
# benchmark (gigabytes of models and exports) would report this process's peak as its own
RSS_OF_CLI = ("import re, sys\nfrom inspect_ad.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
              "    print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), file=sys.stderr)")


def peak_rss(bundle: Path, folder: Path, work: Path, runtime: str) -> str:
    """``inspect-ad inspect`` in a fresh process: its wall time and its own peak resident memory."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RSS_OF_CLI, "inspect", str(folder), "--bundle", str(bundle),
                           "--out", str(work / "rss_report"), "--quiet", "--runtime", runtime],
                          check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    kib = int(done.stderr.strip().splitlines()[-1])
    return f"{seconds:.0f} s wall ({done.stdout.strip()}), peak RSS {kib / 1024:.0f} MiB"


def flops_per_image(det: Detector) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(2, det.preprocessing_.channels, SIZE, SIZE, device=det.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        det.scoring_graph()(x)
    return counter.get_total_flops() / 2


def gpu_rows(name: str, det: Detector, args) -> list[str]:
    from inspect_ad.deploy.runtime import TorchRuntime
    flops = flops_per_image(det)
    rows = []
    for label, kwargs in (("fp32", {}), ("bf16", {"precision": "bf16"}),
                          ("bf16 + channels-last", {"precision": "bf16", "channels_last": True}),
                          ("bf16 + channels-last + compile", {"precision": "bf16", "channels_last": True,
                                                              "compile": True})):
        run = TorchRuntime(det.scoring_graph(), **kwargs)
        one = torch.rand(1, det.preprocessing_.channels, SIZE, SIZE)
        ms = 1000 / rate(lambda: run(one), 1, args.seconds, args.repeats)
        big = torch.rand(args.gpu_batch, det.preprocessing_.channels, SIZE, SIZE).pin_memory()
        r = rate(lambda: run(big), args.gpu_batch, args.seconds, args.repeats)
        share = flops * r / (args.peak_tflops * 1e12)
        rows.append(f"| {name} | {label} | {r:.0f} | {ms:.2f} | {flops / 1e9:.2f} | {share:.1%} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, help="a dataset manifest (e.g. ../shared/data/mtd/split.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--e2e-images", type=int, default=400)
    p.add_argument("--rss-images", type=int, default=0)
    p.add_argument("--gpu-batch", type=int, default=256)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H200: 989)")
    p.add_argument("--models", default="patchcore,mmae")
    p.add_argument("--results", type=Path)
    args = p.parse_args(argv)
    torch_threads_from_env()
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    load = [os.getloadavg()[0]]
    try:
        dataset, train, good, test = data(args, work)
        lines = ["| model | runtime | batch 1 (images/s, × eager) | batch 32 | max map diff ÷ range | "
                 "decisions that differ |", "|---|---|---|---|---|---|"]
        e2e, gpu, rss, banks = [], [], "", {}
        jpegs = jpeg_inputs(test, work / "jpegs", args.e2e_images, SIZE)
        for name in args.models.split(","):
            det = fitted(name, train, good, device.type)
            banks[name] = getattr(det.model_config_, "bank_slots", None)
            dets = runtimes(det, work, name, device.type) if device.type == "cpu" else {"torch eager": det}
            lines += model_rows(name, dets, test, args)
            if name == "patchcore" and device.type == "cpu":
                e2e = end_to_end(dets, jpegs, args.e2e_images, work, args)
                if args.rss_images:
                    det.save(work / "bundle")
                    many = jpeg_inputs(test, work / "many", args.rss_images, SIZE)
                    rss = peak_rss(work / "bundle", many, work, "torch")
            if device.type == "cuda":
                gpu += gpu_rows(name, det, args)
        load.append(os.getloadavg()[0])
        text = report(args, device, dataset, len(train), banks, lines, e2e, gpu, rss, load)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(text, args.results, "bench_inference")
    return 0


def report(args, device, dataset, n_train, banks, lines, e2e, gpu, rss, load) -> str:
    import onnxruntime
    import openvino
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    bank = ", ".join(f"{k}: {v} slots" for k, v in banks.items() if v)
    out = [f"# Inference speed ({when})", "",
           f"`{' '.join(['python', 'recipes/bench_inference.py', *sys.argv[1:]])}` on {describe_device(device)}, "
           f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
           f"Python {platform.python_version()}. Models fitted on {dataset} ({n_train} training images; {bank}); "
           f"images 256², best of {args.repeats} × {args.seconds:g} s; load average {load[0]:.1f} at the start, "
           f"{load[1]:.1f} at the end.", "", "## Model: preprocessed batch → maps and scores", "",
           *lines, "",
           "Decisions are at each model's thresholds calibrated with torch on the good test images. A FAIL also "
           "counts the pixels above the pixel threshold against the minimum defect area: the pixel MMAE, trained "
           "for one epoch here, has nearly flat maps with many pixels at that threshold, so map differences far "
           "below 1e-3 of the range can move an image across the minimum area.", ""]
    if e2e:
        out += [f"## `inspect` end to end: {args.e2e_images} JPEGs, batch 16", "",
                "| runtime | reader processes (--workers) | images/s | model-only images/s (batch 16) | share |",
                "|---|---|---|---|---|", *e2e, ""]
    if rss:
        out += [f"`inspect-ad inspect` on {args.rss_images} JPEGs (torch runtime): {rss}.", ""]
    out += ["## GPU", ""]
    if gpu:
        out += [f"Batch {args.gpu_batch}; FLOP/s as a share of {args.peak_tflops:g} TFLOP/s.", "",
                "| model | path | images/s | ms for one image | GFLOP per image | share of peak |",
                "|---|---|---|---|---|---|", *gpu]
    else:
        out += ["Not measured in this run (no GPU): rerun with `--device cuda` where there is one."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
