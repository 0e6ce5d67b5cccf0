"""``inspect`` scaled out on Ray: images/s of the local engine and of 1, 2 ... Ray workers on this
machine, the driver's own writing rate, and what that says about N machines; writes its section
of recipes/results/speed.md (the rest is bench_inference.py's).

    python recipes/bench_ray.py --results recipes/results/speed.md

Model: the default patchcore bundle, fitted and calibrated with the CLI on the built-in brick data
(256 px). Inputs: ``--images`` 256² JPEGs (quality 90) made from
the test images, good and defective. Each run is ``python -m inspect_ad inspect`` in a fresh
process: "images/s" is images ÷ the report's own seconds (from the first image to the last row:
the model is loaded and Ray is started before), "end to end" is images ÷ the command's wall time.

The writer: the driver alone writes rows, thumbnails (already encoded by the workers) and, at the
end, the sorted files and the page. Its rate is measured by feeding a fresh report the rows and
thumbnail bytes of the last Ray run ``--writer-copies`` times over; the machines one driver can
keep busy is about that rate ÷ one machine's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from inspect_ad.data.io import list_images
from inspect_ad.reports.batch import JSONL, Report, locked_report, read_rows, write_jpegs
from inspect_ad.reports.visualize import ColourScale
from bench_images import jpeg_inputs
from results_file import publish

SIZE = 256


def cli(*args) -> float:
    """Run ``inspect-ad ARGS`` in a fresh process; its wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inspect_ad", *map(str, args)], check=True)
    return time.perf_counter() - t0


def bundle(work: Path) -> tuple[Path, list[str]]:
    """A calibrated default bundle, made with the commands the result file quotes."""
    data, model = work / "data", work / "model"
    steps = [["data", "synth", "--out", data, "--categories", "brick", "--size", SIZE, "--n-train", 100,
              "--n-test-good", 100, "--n-test-per-defect", 10],
             ["fit", "--data-root", data, "--category", "brick", "--out", model],
             ["calibrate", "--bundle", model, "--good", data / "brick" / "test" / "good", "--target-frr", 0.05]]
    for step in steps:
        cli(*step)
    return model, [" ".join(["python -m inspect_ad", *map(str, s)]) for s in steps]


def run(model: Path, folder: Path, out: Path, engine: str, workers: int) -> tuple[float, float, dict]:
    """(report seconds, wall seconds, decision by path) of one ``inspect``."""
    wall = cli("inspect", folder, "--bundle", model, "--out", out, "--engine", engine, "--workers", workers, "--quiet",
               "--overwrite")
    decisions = {r["path"]: r["decision"] for r in read_rows(out / JSONL)}
    return json.loads((out / "summary.json").read_text())["seconds"], wall, decisions


def measure(model: Path, folder: Path, work: Path, runs: list[tuple[str, int]], repeats: int) -> list[tuple]:
    """(engine, workers, best report seconds, best wall seconds, decisions unlike the local run's) of
    each run; the runs take turns, so that another load on the machine falls on all of them alike."""
    times: dict[tuple, list] = {r: [] for r in runs}
    decisions = {}
    for _ in range(repeats):
        for engine, workers in runs:
            seconds, wall, decisions[engine, workers] = run(model, folder, work / f"report_{engine}_{workers}",
                                                            engine, workers)
            times[engine, workers].append((seconds, wall))
    local = decisions[runs[0]]
    return [(e, w, min(t[0] for t in times[e, w]), min(t[1] for t in times[e, w]),
             sum(d != local[k] for k, d in decisions[e, w].items())) for e, w in runs]


def writer_rate(report: Path, out: Path, copies: int) -> tuple[float, float, float, float]:
    """(rows/s of the driver's row writing, seconds of the final sort + page, rows written, picture
    kB per row), replaying ``report``'s rows and thumbnails ``copies`` times under new paths."""
    rows = read_rows(report / JSONL)
    pictures = {r["path"]: {s: f.read_bytes() for s in ("_image.jpg", "_heat.jpg", "_overlay.jpg")
                            if (f := report / f"{r['thumb']}{s}").is_file()} if r.get("thumb") else None
                for r in rows}
    with locked_report(out, None):
        rep = Report(out, False, True, None, False, ColourScale(1.0))   # the page's legend is not timed
        rep.start()
        t0 = time.perf_counter()
        for k in range(copies):
            for r in rows:
                row = {**r, "path": f"{r['path']}.{k}", "resolved": f"{r['resolved']}.{k}"}
                jpegs_ = pictures[r["path"]]
                rep.add(row, Path(Path(row["path"]).name), partial(write_jpegs, out, jpegs=jpegs_) if jpegs_ else None)
        adding = time.perf_counter() - t0
        t1 = time.perf_counter()
        rep.close(json.loads((report / "summary.json").read_text())["calibration"], by_path=True)
        closing = time.perf_counter() - t1
    kb = sum(len(b) for p in pictures.values() if p for b in p.values()) / len(rows) / 1024
    return len(rows) * copies / adding, closing, len(rows) * copies, kb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--workers", default="1,2", help="Ray worker counts to run")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, the best kept")
    p.add_argument("--writer-copies", type=int, default=10)
    p.add_argument("--results", type=Path)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        model, steps = bundle(work)
        folder = jpeg_inputs(list_images(work / "data" / "brick" / "test", recursive=True), work / "jpegs", args.images,
                             SIZE)
        runs = [("local", 0)] + [("ray", int(w)) for w in args.workers.split(",")]
        load = os.getloadavg()[0]
        measured = measure(model, folder, work, runs, args.repeats)
        last = work / f"report_{runs[-1][0]}_{runs[-1][1]}"
        failed = json.loads((last / "summary.json").read_text())["failed"]
        writers = [writer_rate(last, work / f"writer_{k}", args.writer_copies) for k in range(args.repeats + 1)]
        text = report(args, steps, measured, writers, load, failed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(text, args.results, "bench_ray")
    return 0


def report(args, steps, measured, writers, load, failed) -> str:
    import ray
    import torch
    n = args.images
    base = n / measured[0][2]
    one = next((n / s for e, w, s, _, _ in measured if (e, w) == ("ray", 1)), None)
    rows = [f"| {e} | {w} | {n / s:.1f} | {n / s / base:.2f}× | "
            f"{f'{n / s / one:.2f}×' if e == 'ray' and one else '–'} | {n / wall:.1f} | {differ} |"
            for e, w, s, wall, differ in measured]
    best = max(n / s for e, w, s, _, _ in measured if e == "ray")
    rate, closing, written, kb = min(writers)   # the slowest: the bound it gives holds on a bad day too
    fastest = max(w[0] for w in writers)
    (_, _, s_local, wall_local, _), (_, _, s_ray, wall_ray, _) = measured[0], max(measured[1:], key=lambda m: n / m[2])
    gain = s_local / n - s_ray / n   # seconds an image saves on Ray
    even = f"from about {((wall_ray - s_ray) - (wall_local - s_local)) / gain:.0f} images on" if gain > 0 else "never"
    ray_rates = {w: n / s for e, w, s, _, _ in measured if e == "ray"}
    threads = (f" Two one-thread workers more than double one two-thread worker here ({ray_rates[2]:.1f} against "
               f"{ray_rates[1]:.1f}): likely torch's two-thread ops waiting for the thread another process delays "
               f"on this shared machine; not measured apart." if ray_rates.get(2, 0) > 2 * ray_rates.get(1, 1e9) else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"## `inspect` scaled out on Ray ({when})", "",
           f"`{' '.join(['python', 'recipes/bench_ray.py', *sys.argv[1:]])}` on {platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), ray {ray.__version__}, "
           f"Python {platform.python_version()}: {n} JPEGs of {SIZE}² ({failed} FAIL), the default patchcore bundle, "
           f"batch 16. The machine is shared: its load average was {load:.1f} when the runs began.", ""]
    out += ["The bundle:", "", "```", *steps, "```", ""]
    out += ["Each run: `python -m inspect_ad inspect JPEGS --bundle MODEL --out REPORT --engine ENGINE --workers N --quiet`. "
            f"Best of {args.repeats}, the runs taking turns. images/s: images ÷ the report's seconds (first image "
            "to last row); end to end: ÷ the command's wall time, with Python's start, the model's load and Ray's "
            "start. Local is the default `--workers 0`: reading in the main process, torch on all cores, a "
            "thread writing the report; Ray's N is workers, each with its own model and cores ÷ N torch threads.", "",
            "| engine | workers | images/s | × local | × 1 Ray worker | images/s end to end | decisions unlike local's |",
            "|---|---|---|---|---|---|---|", *rows, "",
            f"Starting costs: besides the run itself the command took {wall_local - s_local:.0f} s on the local "
            f"engine (Python, the model) and {wall_ray - s_ray:.0f} s on the fastest Ray one (Python, the model, "
            f"Ray, and its workers, each importing torch and loading the model), so Ray on this machine is the "
            f"faster end to end {even}.{threads}", "",
            "### The single writer", "",
            f"The driver wrote {written} rows (the last run's rows and thumbnails, {kb:.1f} kB of JPEG a row on "
            f"average, replayed {args.writer_copies}×) at **{rate:.0f} rows/s**, the slowest of {len(writers)} "
            f"tries (the fastest: {fastest:.0f}; rows are flushed, thumbnails renamed into place without an fsync); the end (rows "
            f"sorted by path, both files rewritten, the page) took {closing:.2f} s for those {written} rows.", "",
            "### N machines, on paper", "",
            f"Workers decode, score and judge on their own machine: that part grows with the machines, "
            f"{best:.1f} images/s for this {os.cpu_count()}-CPU machine (decoding, the model, judging and the "
            f"thumbnails' encoding, all in the workers). What does "
            f"not grow is the driver: one process receives every row and its thumbnails ({kb:.1f} kB a row here) "
            f"and writes them, flushing each row and renaming each thumbnail into place as it comes. "
            f"It stays ahead while N × {best:.1f} < {rate:.0f}, i.e. up to **N ≈ {rate / best:.0f} machines like "
            f"this one** (fewer with more cores each: N ≈ writer rate ÷ one machine's rate). Past that, rows wait "
            f"in Ray's object store and the run goes at the writer's {rate:.0f} rows/s. A share of failures "
            f"higher than this data's adds thumbnails to write and lowers the rate; the final sort and page "
            f"grow with the report, once per run."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
