"""Video anomaly detection on UCSD Ped2 (or the built-in synthetic set): train each video model with
and without memory, evaluate frame-level AUC, and write a results table.

    OMP_NUM_THREADS=1 python recipes/ped2.py --data /work/shared/data/ped2 --preset cpu \
        --out runs/ped2 --table recipes/results/ped2.md

Each run appends its metrics to <out>/results.jsonl (a rerun skips finished runs), and the table
is rebuilt from that file. Data are read from --data (or $INSPECT_AD_PED2); nothing is copied.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from inspect_ad.data.synthetic_video import ANOMALY_KINDS
from inspect_ad.data.video import load_video_dataset
from inspect_ad.models import create_model, parse_overrides
from inspect_ad.training.device import DEVICE_HELP, describe_device, resolve_device, torch_threads_from_env
from inspect_ad.detectors.presets import PRESET_NAMES, VIDEO_MODELS, video_preset, video_train_config
from inspect_ad.detectors.video import VideoDetector
from inspect_ad.reports.video import evaluate
from inspect_ad.reports.visualize import save_score_plot

PAPER = {"memae3d": (0.941, 0.917, "MemAE Table 2 (AE row)"),
         "mnad-recon": (0.902, None, "not legible in our copy of the MNAD paper"),
         "mnad-pred": (0.970, 0.943, "MNAD §4.2: memory adds 2.7 points on Ped2 (0.970 − 0.027)"),
         "prototype": (0.976, 0.958, "Lai et al. 2021 Table IV (w/o)")}
PAPER_FPS = {"memae3d": "38 (1080 Ti)", "mnad-recon": "67 (Titan Xp)", "mnad-pred": "67 (Titan Xp)",
             "prototype": "42 (1080 Ti)"}


def run_one(recipe: str, memory: bool, args, ds) -> dict:
    st = video_preset(recipe, args.setting)
    overrides = {**st["model"], **parse_overrides(args.option), "use_memory": memory}
    epochs = args.epochs or st["epochs"]
    start = time.perf_counter()
    det = VideoDetector(recipe, overrides, video_train_config(recipe, args.setting, epochs=epochs, seed=args.seed,
                                                              device=args.device,
                                                              max_steps_per_epoch=args.max_steps_per_epoch))
    det.fit(ds.train, progress=False, data=str(args.data), preset=args.setting)
    metrics, results = evaluate(det, ds.test)
    # one folder per distinct run, so a rerun with another seed or option never overwrites a bundle
    tag = (f"{recipe}{'' if memory else '-nomem'}" + "".join(f"-{o}" for o in args.option)
           + (f"-seed{args.seed}" if args.seed else ""))
    out = Path(args.out) / tag
    det.save(out)
    save_score_plot(out / "scores.png", results, f"{tag}: AUC {metrics['frame_auc']:.3f}")
    return {"recipe": recipe, "memory": memory, "setting": args.setting, "epochs": epochs,
            "batch_size": st["batch_size"], "max_steps_per_epoch": args.max_steps_per_epoch,
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            "seed": args.seed, "options": args.option, "train_seconds": det.training_info_["seconds"],
            "wall_seconds": round(time.perf_counter() - start, 1), **metrics,
            "device": describe_device(resolve_device(args.device))}


def devices(rows: list[dict]) -> str:
    """The devices the rows were run on, as recorded in each row."""
    return ", ".join(sorted({r.get("device", "unrecorded") for r in rows})) or "none"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def kind_auc(row: dict, kind: str) -> float | None:
    """Mean within-video AUC of the synthetic test videos named ``*_<kind>``."""
    aucs = [v for k, v in row.get("per_video_auc", {}).items() if k.endswith(f"_{kind}")]
    return sum(aucs) / len(aucs) if aucs else None


def write_table(rows: list[dict], path: Path, command: str, data_name: str) -> None:
    ped2 = "ped2" in data_name.lower()
    kinds = () if ped2 else ANOMALY_KINDS
    lines = [f"# Video anomaly detection on {data_name}: frame-level AUC", "",
             f"Command: `{command}`", "",
             f"Device: {devices(rows)}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPU cores; "
             "rows may come from separate runs on a shared machine, so wall times and fps compare poorly "
             "across rows.", "",
             "| recipe | memory | ours AUC (per-video g) | ours AUC (calibrated g) |"
             + (" paper AUC |" if ped2 else "") + " PSNR term | D term |" + "".join(f" {k} |" for k in kinds)
             + " frames scored | fps (ours, CPU) |"
             + (" paper fps |" if ped2 else "") + " epochs × steps | train s | wall s |",
             "|---|---|---|---|" + ("---|" if ped2 else "") + "---|---|" + "---|" * len(kinds) + "---|---|"
             + ("---|" if ped2 else "") + "---|---|---|"]
    for r in sorted(rows, key=lambda r: (VIDEO_MODELS.index(r["recipe"]), r.get("options", []), r["seed"], not r["memory"])):
        mem_paper, nomem_paper, _ = PAPER[r["recipe"]]
        steps = r["max_steps_per_epoch"] or "all"
        name = " ".join([r["recipe"], *(f"`{o}`" for o in r.get("options", []))]
                        + ([f"(seed {r['seed']})"] if r["seed"] else []))
        lines.append(f"| {name} | {'yes' if r['memory'] else 'no'} | {r['frame_auc']:.3f} "
                     f"| {r.get('frame_auc_calibrated', float('nan')):.3f} |"
                     + (f" {_fmt(mem_paper if r['memory'] else nomem_paper)} |" if ped2 else "")
                     + "".join(f" {_fmt(r.get('term_auc', {}).get(t))} |" for t in ("psnr", "distance"))
                     + "".join(f" {_fmt(kind_auc(r, k))} |" for k in kinds)
                     + f" {r['frames_scored']}/{r['frames_total']} | {r['fps']:.0f} |"
                     + (f" {PAPER_FPS[r['recipe']]} |" if ped2 else "")
                     + f" {r['epochs']} × {steps} | {r['train_seconds']:.0f} | {r['wall_seconds']:.0f} |")
    lines += ["", "PSNR term / D term: frame AUC of 1 − g(PSNR) and of g(D) alone (`term_auc` in metrics), for "
              "the models whose score mixes the two (MNAD, prototype, with memory)."]
    if kinds:
        lines += ["", "fast / shape / against: mean frame AUC inside the test videos with that anomaly "
                  "(`per_video_auc` in metrics; independent of the min–max normalisation)."]
    if ped2:
        lines += ["", "Paper no-memory numbers: " + "; ".join(f"{k}: {v[2]}" for k, v in PAPER.items()) + "."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def measure_fps(recipe: str, setting: str, frames: int = 3) -> float:
    """Scoring speed of one model size on random clips (batch 1, forward pass only)."""
    model = create_model(recipe, **video_preset(recipe, setting)["model"]).eval()
    c = model.config
    x, _ = model.split_clip(torch.rand(1, c.clip_length, c.in_channels, c.image_size, c.image_size) * 2 - 1)
    with torch.no_grad():
        model(x)                                  # warm-up
        start = time.perf_counter()
        for _ in range(frames):
            model(x)
    return frames / (time.perf_counter() - start)


def write_speed(path: Path, threads: int) -> None:
    lines = ["", "## Scoring speed on this CPU (forward pass, batch 1, random input)", "",
             f"{threads} torch thread(s), same shared machine; papers' numbers are on one GPU.", "",
             "| recipe | fps, paper-size model (256×256) | fps, cpu setting (64×64) | paper fps (GPU) |",
             "|---|---|---|---|"]
    for recipe in VIDEO_MODELS:
        lines.append(f"| {recipe} | {measure_fps(recipe, 'paper'):.2f} | {measure_fps(recipe, 'cpu', 20):.0f} "
                     f"| {PAPER_FPS[recipe]} |")
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("INSPECT_AD_PED2", "synthetic"))
    # --setting and --recipes: the names in the recorded results' command lines
    p.add_argument("--preset", "--setting", dest="setting", default="cpu", choices=PRESET_NAMES)
    p.add_argument("--models", "--recipes", dest="recipes", default=",".join(VIDEO_MODELS))
    p.add_argument("--memory", default="both", choices=("both", "yes", "no"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps-per-epoch", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option for every run, e.g. -o logit_scale=10 (repeatable)")
    p.add_argument("--out", default="runs/ped2")
    p.add_argument("--table", help="markdown table to (re)write from <out>/results.jsonl")
    p.add_argument("--speed", action="store_true", help="append a CPU fps table for paper-size models")
    args = p.parse_args(argv)
    torch_threads_from_env()
    ds = load_video_dataset(args.data).require_train().require_test()
    log = Path(args.out) / "results.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    memories = {"both": (True, False), "yes": (True,), "no": (False,)}[args.memory]
    for memory in memories:
        for recipe in args.recipes.split(","):
            key = (recipe, memory, args.setting, args.epochs, args.max_steps_per_epoch, args.seed, args.option)
            if any((d["recipe"], d["memory"], d["setting"], d["epochs"] if args.epochs else None,
                    d["max_steps_per_epoch"], d["seed"], d.get("options", [])) == key for d in done):
                continue
            row = run_one(recipe, memory, args, ds)
            print(json.dumps({k: row[k] for k in ("recipe", "memory", "frame_auc", "frame_auc_calibrated",
                                                  "fps", "wall_seconds")}), flush=True)
            done.append(row)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    if args.table:
        cmd = "OMP_NUM_THREADS=1 python recipes/ped2.py " + " ".join(
            [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
             if v not in (None, False) and k not in ("table", "speed", "option")] + [f"-o {o}" for o in args.option])
        write_table(done, Path(args.table), cmd, ds.name)
        if args.speed:
            write_speed(Path(args.table), torch.get_num_threads())


if __name__ == "__main__":
    main()
