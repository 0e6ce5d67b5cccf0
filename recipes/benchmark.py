"""One benchmark over the development sets: the default fit (and any --model or --variant) on each
set, one table of image AUROC, pixel AUROC, AUPRO, recall at 1% FRR, fit seconds and scoring
images/s per set, and the worst case over the sets.

    python recipes/benchmark.py --sets mtd,fryum,grid,hazelnut,brick --results recipes/results/benchmark.md
    python recipes/benchmark.py --sets hazelnut,mine=/data/widget --model mmae --seeds 0,1,2
    python recipes/benchmark.py --sets grid --variant "--image-size 512" --fit-arg="--device cpu"

Sets: mtd (manifest SHARED/mtd/split.json), fryum (SHARED/visa, MVTec layout), grid and hazelnut
(SHARED/mvtec_subsets), brick (the demo's built-in data, written into the work folder with seed 0),
or NAME=PATH for your own: an MVTec-layout category folder or a manifest JSON. SHARED is --shared,
else $INSPECT_AD_SHARED, else ../shared/data beside the repository.

Each fit is ``python -m inspect_ad fit`` as a user runs it, with only the set, --out and --seed
added to the configuration's options; its wall time is the fit seconds. The test set is then scored
here through the public Detector, timed apart from the metrics. The results file gets this
recipe's section (recipes/results_file.py: text around it is kept) and the raw rows go beside it
as JSON (benchmark.md -> benchmark.json).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import inspect_ad
from inspect_ad import Detector
from inspect_ad.atomic import atomic_write_json
from inspect_ad.data import load_image_set
from inspect_ad.data.synthetic import write_mvtec
from inspect_ad.training.device import describe_device, resolve_device, reuse_freed_memory
from inspect_ad.errors import InspectError
from inspect_ad.detectors.presets import DEMO_DATA
from inspect_ad.reports.evaluation import collect, compute_metrics
from results_file import publish

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "INSPECT_AD_SHARED"
BRICK_SEED = 0      # the brick data stay the same whatever --seeds
ACCURACY = ("image_auroc", "pixel_auroc", "aupro", "recall_at_1pct_frr")
TIMING = ("fit_s", "images_per_s")
# the benchmark chooses these for every fit; a configuration giving them would break the table
OWNED = ("--out", "--data-root", "--category", "--manifest", "--train-dir", "--seed", "--overwrite", "--resume",
         "--config")


class Source(NamedTuple):
    """Where one set's images are: a manifest, or an MVTec-layout root and category; ``own``: given
    as NAME=PATH rather than found in the shared folder."""

    name: str
    manifest: Path | None = None
    data_root: Path | None = None
    category: str | None = None
    own: bool = False

    def fit_args(self) -> list[str]:
        if self.manifest is not None:
            return ["--manifest", str(self.manifest)]
        return ["--data-root", str(self.data_root), "--category", self.category]

    def where(self) -> str:
        return str(self.manifest) if self.manifest is not None else str(self.data_root / self.category)


def known_sets(shared: Path, work: Path) -> dict:
    """Name -> a function giving its Source (brick writes its data first, so only when asked)."""
    return {"mtd": lambda: Source("mtd", manifest=shared / "mtd" / "split.json"),
            "fryum": lambda: Source("fryum", data_root=shared / "visa", category="fryum"),
            "grid": lambda: Source("grid", data_root=shared / "mvtec_subsets", category="grid"),
            "hazelnut": lambda: Source("hazelnut", data_root=shared / "mvtec_subsets", category="hazelnut"),
            "brick": lambda: Source("brick", data_root=brick_data(work / "data"), category="brick")}


def brick_data(root: Path) -> Path:
    """The demo's brick set under ``root`` (written once, through a temporary folder so that a
    killed write is never taken for the data)."""
    if not (root / "brick").is_dir():
        partial = root / ".brick.partial"
        if partial.exists():
            shutil.rmtree(partial)
        write_mvtec(partial, ["brick"], seed=BRICK_SEED, **DEMO_DATA)
        (partial / "brick").rename(root / "brick")
        partial.rmdir()
    return root


def own_set(name: str, path: Path) -> Source:
    if path.is_file():
        return Source(name, manifest=path, own=True)
    if (path / "train").is_dir():
        return Source(name, data_root=path.parent, category=path.name, own=True)
    raise InspectError(f"set {name}: {path} is neither a manifest JSON nor an MVTec-layout category folder "
                       f"(one with train/good/); check the path")


def resolve_sets(spec: str, shared: Path, work: Path) -> list[Source]:
    known = known_sets(shared, work)
    sources = []
    for token in filter(None, (t.strip() for t in spec.split(","))):
        name, eq, path = token.partition("=")
        if eq:
            sources.append(own_set(name, Path(path).expanduser()))
        elif name in known:
            sources.append(known[name]())
        else:
            raise InspectError(f"unknown set {name!r}; choose one of: {', '.join(known)} "
                               f"(or NAME=PATH: an MVTec-layout category folder or a manifest JSON)")
    names = [s.name for s in sources]
    if not names or len(set(names)) < len(names):
        raise InspectError(f"--sets needs one or more sets, each named once; got {spec!r}")
    return sources


def load(source: Source, shared: Path):
    """The set's paths and labels, checked (masks included) before any fit starts."""
    try:
        data = load_image_set(source.data_root, source.category, source.manifest).require_test()
        data.has_masks()
        return data
    except InspectError as e:
        hint = "" if source.own else f" (--shared or ${SHARED_ENV}: {shared})"
        raise InspectError(f"set {source.name}{hint}: {e}") from None


# --- one run -----------------------------------------------------------------------------------

def fit(source: Source, options: list[str], seed: int, bundle: Path, env: dict) -> float:
    """``inspect-ad fit`` in its own process; its wall time in seconds."""
    cmd = [sys.executable, "-m", "inspect_ad", "fit", *source.fit_args(), "--out", str(bundle), "--seed",
           str(seed), "--overwrite", "--quiet", *options]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise InspectError(f"fit on {source.name} failed ({shlex.join(cmd[1:])}): {said}")
    return seconds


def score(bundle: Path, data, device: str) -> dict:
    """The bundle's metrics on the test set, and its scoring speed (metrics not included)."""
    det = Detector.load(bundle, device)
    list(det.predict_iter([data.test[0].image], keep_image=False))   # one-off start-up, not the rate
    t0 = time.perf_counter()
    scores, maps, masks = collect(det, data.test, progress=False)
    images_per_s = len(data.test) / (time.perf_counter() - t0)
    m = compute_metrics(data.test, scores, maps, masks)
    return {**{k: m.get(k) for k in ACCURACY}, "image_f1max": m["image_f1max"], "images_per_s": images_per_s,
            "model": det.describe(), "fit_model_s": det.training_info_.get("seconds"),
            "n_train": det.training_info_.get("n_train"), "n_test": m["n_images"], "n_defective": m["n_defective"]}


def run(args, sources: list[tuple[Source, object]], configs: dict[str, list[str]], env: dict) -> list[dict]:
    rows = []
    for source, data in sources:
        for label, options in configs.items():
            for seed in args.seeds:
                bundle = args.work / "models" / source.name / f"{slug(label)}_seed{seed}"
                fit_s = fit(source, [*options, *args.fit_arg], seed, bundle, env)
                row = {"set": source.name, "config": label, "seed": seed, "fit_s": fit_s,
                       **score(bundle, data, args.device)}
                rows.append(row)
                print(f"[{source.name}] {label} seed {seed}: fit {fit_s:.0f}s, image AUROC {row['image_auroc']:.3f}, "
                      f"{row['images_per_s']:.1f} images/s", file=sys.stderr, flush=True)
    return rows


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_") or "default"


# --- the table ---------------------------------------------------------------------------------

def accuracy_cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{values[0]:.3f}" if len(values) == 1 else f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def timing_cell(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if len(values) == 1 else f"{low:.{digits}f}–{high:.{digits}f}"


def group(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["config"], r["set"]), []).append(r)
    return out


def worst_case(config: str, per_set: dict[str, list[dict]]) -> str:
    """Min over the sets of each accuracy metric's mean (naming the set), max fit seconds, min images/s."""
    cells = []
    for key in ACCURACY:
        means = {s: np.mean([r[key] for r in rs]) for s, rs in per_set.items() if rs[0][key] is not None}
        worst = min(means, key=means.get) if means else None
        cells.append(f"**{means[worst]:.3f}** ({worst})" if worst else "–")
    fit_s = max((r["fit_s"], r["set"]) for rs in per_set.values() for r in rs)
    speed = min((r["images_per_s"], r["set"]) for rs in per_set.values() for r in rs)
    return (f"| **worst case** | {config} | | | | " + " | ".join(cells)
            + f" | **{fit_s[0]:.0f}** ({fit_s[1]}) | **{speed[0]:.1f}** ({speed[1]}) |")


HEAD = ("| set | configuration | model | train / test images | seeds | image AUROC | pixel AUROC | AUPRO@30% "
        "| recall @1% FRR | fit s | images/s |")


def table(rows: list[dict]) -> list[str]:
    lines = [HEAD, "|" + "---|" * (HEAD.count("|") - 1)]
    grouped = group(rows)
    for config in dict.fromkeys(r["config"] for r in rows):
        per_set = {s: rs for (c, s), rs in grouped.items() if c == config}
        for name, rs in per_set.items():
            lines.append(f"| {name} | {config} | {rs[0]['model']} | {rs[0]['n_train']} / {rs[0]['n_test']} | "
                         f"{','.join(str(r['seed']) for r in rs)} | "
                         + " | ".join(accuracy_cell([r[k] for r in rs]) for k in ACCURACY)
                         + f" | {timing_cell([r['fit_s'] for r in rs], 0)} | "
                           f"{timing_cell([r['images_per_s'] for r in rs], 1)} |")
        lines.append(worst_case(config, per_set))
    return lines


def machine(device: str) -> dict:
    return {"device": describe_device(resolve_device(device)), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def section(command: str, sources: list[Source], about: dict, rows: list[dict], json_path: Path,
            title: str | None = None) -> str:
    several = len({r["seed"] for r in rows}) > 1
    lines = [f"### {title or 'Benchmark: the default fit over the development sets'}", "",
             f"- command: `{command}`",
             f"- {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, wall time {about['wall_s'] / 60:.1f} min; "
             f"{about['machine']['device']}; {about['machine']['cpu_count']} CPUs, torch "
             f"{about['machine']['torch_threads']} threads; load average {about['load_before']} before, "
             f"{about['load_after']} after. Timings vary with the machine's load (other jobs share it): compare "
             "them within one run" + (", and read the min–max ranges over the seeds" if several else "") + ".",
             "- sets: " + "; ".join(f"{s.name} = {s.where()}" for s in sources),
             "- fit s: wall time of `python -m inspect_ad fit` (process start-up and backbone loading included); "
             "images/s: scoring the test set in one process (reading, preprocessing, model, maps; not the "
             "metrics; malloc keeping freed memory, as in the command line), after loading the bundle and scoring one image to warm it up.",
             "- recall @1% FRR: the defective test images' recall at the threshold that leaves at most 1% of the "
             "test set's good images above it (their highest score where there are fewer than 100), i.e. chosen "
             "on the test set itself, not calibrated on held-out training images: grid and hazelnut have too few "
             "training images to hold out the 99 a 1% target needs.",
             "- AUPRO up to 30% FPR; `–`: the set has no defect masks. "
             + ("Several seeds: mean ± sd (accuracy), min–max (timings). " if several else "")
             + "Worst case: the lowest mean of each accuracy metric over the sets, the longest fit, the slowest "
               "scoring (set in brackets).",
             f"- raw rows: `{json_path.name}`", "", *table(rows)]
    return "\n".join(lines)


# --- the command line --------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def seeds(text: str) -> list[int]:
    try:
        out = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, e.g. 0 or 0,1,2; "
                                         f"got {text!r}") from None
    if len(set(out)) < len(out):
        raise argparse.ArgumentTypeError(f"--seeds lists a seed twice: {text}")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(prog="benchmark.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="mtd,fryum,grid,hazelnut,brick",
                   help="comma-separated: mtd, fryum, grid, hazelnut, brick, or NAME=PATH (default: all five)")
    p.add_argument("--model", action="append", default=[], help="one more configuration: fit --model M (repeatable)")
    p.add_argument("--variant", action="append", default=[],
                   help='one more configuration: these fit options, e.g. "--image-size 512" (repeatable)')
    p.add_argument("--fit-arg", action="append", default=[], type=shlex.split,
                   help='fit options added to every configuration, e.g. --fit-arg="--image-size 64" (repeatable)')
    p.add_argument("--no-default", action="store_true",
                   help="leave the default fit out: only the --model / --variant configurations")
    p.add_argument("--seeds", type=seeds, default=[0], help="comma-separated fit seeds (default: 0)")
    p.add_argument("--shared", type=Path, help=f"folder holding mtd/, visa/, mvtec_subsets/ (default: ${SHARED_ENV}, "
                                               f"else ../shared/data beside the repository)")
    p.add_argument("--work", type=Path, default=Path("runs/benchmark"), help="folder for the bundles and brick data")
    p.add_argument("--device", default="auto", help="scoring device (the fits use fit's default unless --fit-arg)")
    p.add_argument("--threads", type=int, help="torch threads for the fits and the scoring (default: torch's)")
    p.add_argument("--results", type=Path, help="Markdown file for the table (raw rows beside it as .json)")
    p.add_argument("--title", help="the section's heading and name in --results, so that several runs share one "
                                   "file (raw rows: RESULTS_<title as a file name>.json); default: the benchmark's own")
    args = p.parse_args(argv)
    args.fit_arg = [a for split in args.fit_arg for a in split]
    args.shared = args.shared or Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared" / "data")
    return args


def configurations(args) -> dict[str, list[str]]:
    configs = {} if args.no_default else {"default": []}
    configs.update({f"--model {m}": ["--model", m] for m in args.model})
    configs.update({v: shlex.split(v) for v in args.variant})
    if len(configs) < (not args.no_default) + len(args.model) + len(args.variant):
        raise InspectError("a configuration is given twice (--model / --variant); give each once")
    if not configs:
        raise InspectError("--no-default leaves nothing to run: add a --model or a --variant")
    for label, options in {**configs, "--fit-arg": args.fit_arg}.items():
        owned = next((o for o in options if o.split("=")[0] in OWNED), None)
        if owned:
            raise InspectError(f"{label}: {owned} is the benchmark's own (it sets {', '.join(OWNED)}); leave it out")
    return configs


def child_env(args) -> dict:
    """The fits' environment: the inspect_ad this process scores with (not another install), a state
    folder of the benchmark's own (fit records the last bundle), and the thread count if one is given."""
    package_root = str(Path(inspect_ad.__file__).resolve().parents[1])
    env = {**os.environ, "INSPECT_AD_STATE": str(args.work / "state"),
           "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    return env


def main(argv=None) -> int:
    args = parse_args(argv)
    reuse_freed_memory()   # the scoring here runs with the malloc setting of the command line, which the fits run
    command = "python " + shlex.join([sys.argv[0], *sys.argv[1:]])
    t0, load_before = time.perf_counter(), " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        configs = configurations(args)
        sources = resolve_sets(args.sets, args.shared, args.work)
        loaded = [(s, load(s, args.shared)) for s in sources]
        rows = run(args, loaded, configs, child_env(args))
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    about = {"command": command, "machine": machine(args.device), "wall_s": time.perf_counter() - t0,
             "load_before": load_before, "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    json_path = args.results.with_suffix(".json") if args.results else args.work / "benchmark.json"
    if args.title:
        json_path = json_path.with_name(f"{json_path.stem}_{slug(args.title)}.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, {**about, "sets": {s.name: s.where() for s in sources}, "rows": rows})
    publish(section(command, sources, about, rows, json_path, args.title), args.results,
            f"benchmark: {slug(args.title)}" if args.title else "benchmark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
