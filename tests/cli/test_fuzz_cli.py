"""Issue 18's fuzz test: generated bad inputs (options, files, crafted bundle fields) through the
CLI, in-process. Each must end with exit code 2, one line on stderr, no traceback, and leave the
input folders (data and bundles) exactly as they were. Issue 31's classes below: hostile files,
names, folders and outputs."""
import hashlib
import importlib.util
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import (TINY_MODEL_OPTIONS as TINY, encoded, fast_fit_args, frames_file, noise as noise_of,
                      noise_after_qa_training, png_claiming, qa_root, write_png)

from inspect_ad.cli.image import main
from inspect_ad.deploy.export import FORMATS
from inspect_ad.training.device import usable_cpus
from inspect_ad.reports.batch import read_rows
from inspect_ad.detectors.image import Detector
from inspect_ad.training.loop import TrainConfig
from inspect_ad.scoring.anomaly_map import MapConfig

FAST = fast_fit_args(epochs=1)


def _set(section, **values):
    def edit(cfg):
        (cfg["model"]["config"] if section == "model.config" else cfg[section]).update(values)
    return edit


def _drop(section, key=None):
    return lambda cfg: cfg.pop(section) if key is None else cfg[section].pop(key)


CONFIG_EDITS = {
    "sigma -3": _set("anomaly_map", sigma=-3), "sigma text": _set("anomaly_map", sigma="x"),
    "pooling bogus": _set("anomaly_map", pooling="median"), "metric bogus": _set("anomaly_map", metric="l7"),
    "scales 0": _set("anomaly_map", scales=[0]), "standardize bogus": _set("anomaly_map", standardize="yes"),
    "unknown map field": _set("anomaly_map", colour="red"),
    "channels 5": _set("preprocessing", channels=5), "channels 0": _set("preprocessing", channels=0),
    "channels text": _set("preprocessing", channels="1"), "image_size 60000": _set("preprocessing", image_size=60000),
    "image_size 30.5": _set("preprocessing", image_size=30.5), "image_size 0": _set("preprocessing", image_size=0),
    "normalization bogus": _set("preprocessing", normalization="zscore"),
    "pixel threshold NaN": _set("calibration", pixel_threshold=float("nan")),
    "image threshold inf": _set("calibration", image_threshold=float("inf")),
    "image threshold text": _set("calibration", image_threshold="a"),
    "min_area -1": _set("calibration", min_area=-1), "min_area 1.5": _set("calibration", min_area=1.5),
    "n script": _set("calibration", n="<script>alert(1)</script>"),
    "min_area img": _set("calibration", min_area="<img src=x onerror=alert(1)>"),
    "target_frr 2": _set("calibration", target_frr=2), "no image threshold": _drop("calibration", "image_threshold"),
    "calibration list": lambda cfg: cfg.update(calibration=[1, 2]),
    "memory_slots 1e9": _set("model.config", memory_slots=1e9),
    "memory_slots 10**9": _set("model.config", memory_slots=10 ** 9),
    "latent_channels 7": _set("model.config", latent_channels=7),
    "num_scales text": _set("model.config", num_scales="three"),
    "model name bogus": lambda cfg: cfg["model"].update(name="mmea"),
    "no model": _drop("model"), "format bogus": lambda cfg: cfg.update(format="other"),
    "bundle_version 99": lambda cfg: cfg.update(bundle_version=99),
    "preprocessing list": lambda cfg: cfg.update(preprocessing=[32, 1]), "no preprocessing": _drop("preprocessing"),
    "reference p99 NaN": _set("reference", pixel_p99=float("nan")),
}


def _weights_nan(b):
    state = load_file(str(b / "model.safetensors"))
    for v in state.values():
        if v.is_floating_point():
            v[...] = float("nan")
    save_file(state, str(b / "model.safetensors"))


FILE_EDITS = {
    "config not JSON": lambda b: (b / "config.json").write_text("{not json"),
    "config an array": lambda b: (b / "config.json").write_text("[1, 2]"),
    "weights garbage": lambda b: (b / "model.safetensors").write_bytes(b"\x00" * 64),
    "weights truncated": lambda b: (b / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes()[:200]),
    "weights NaN": _weights_nan,
    "weights missing": lambda b: (b / "model.safetensors").unlink(),
}


def _reference_edit(change):
    def edit(b):
        ref = load_file(str(b / "extra.safetensors"))["map_reference"]
        save_file({"map_reference": change(ref).contiguous()}, str(b / "extra.safetensors"))
    return edit


def _zero_std(ref):
    ref[1] = 0
    return ref


REFERENCE_EDITS = {  # on a bundle with standardized maps (extra.safetensors holds the reference maps)
    "reference map too small": _reference_edit(lambda ref: ref[:, :8, :8]),
    "reference std zero": _reference_edit(_zero_std),
    "reference NaN": _reference_edit(lambda ref: ref * float("nan")),
    "reference file garbage": lambda b: (b / "extra.safetensors").write_bytes(b"garbage"),
}


@pytest.fixture(scope="module")
def world(qa_bundles, tmp_path_factory):
    """The shared tiny model (model/ calibrated, uncalibrated/) and its training images (train/), with
    the bad inputs, manifests and broken bundles the cases name, and a bundle with standardized maps."""
    root = qa_root(qa_bundles, tmp_path_factory.mktemp("fuzz"))
    train = sorted((root / "train").glob("*.png"), key=lambda p: int(p.stem))
    rng = noise_after_qa_training()
    noise = lambda: noise_of(rng)  # noqa: E731
    for i in range(2):
        write_png(root / "parts" / f"p{i}.png", noise())
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "x.png").write_bytes(b"not a png")
    ok, buf = cv2.imencode(".jpg", noise())
    (root / "truncated").mkdir()
    (root / "truncated" / "t.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    (root / "afile.txt").write_text("a file, not a folder")
    manifests = {"not json": "{", "a list": "[]", "numbers": json.dumps({"train": [1, 2]}),
                 "missing files": json.dumps({"train": ["nope.png"]}),
                 "bad test entry": json.dumps({"train": ["train/0.png"], "test": [{"mask": None}]}),
                 "test image number": json.dumps({"train": ["train/0.png"], "test": [{"image": 3}]}),
                 "test not a list": json.dumps({"train": ["train/0.png"], "test": "x"})}
    for i, text in enumerate(manifests.values()):
        (root / f"manifest{i}.json").write_text(text)
    for i, edit in enumerate(CONFIG_EDITS.values()):
        shutil.copytree(root / "model", root / "bundles" / f"c{i}")
        cfg_file = root / "bundles" / f"c{i}" / "config.json"
        cfg = json.loads(cfg_file.read_text())
        edit(cfg)
        cfg_file.write_text(json.dumps(cfg))
    for i, edit in enumerate(FILE_EDITS.values()):
        shutil.copytree(root / "model", root / "bundles" / f"f{i}")
        edit(root / "bundles" / f"f{i}")
    det = Detector("mmae", 32, train_config=TrainConfig(epochs=1, batch_size=4, seed=0, device="cpu"),
                   model_options=TINY, map_config=MapConfig(standardize="map"))
    det.fit(train[:5], out=root / "standardized", progress=False)
    det.calibrate(train[5:], target_frr=0.2, progress=False)
    det.save_calibration(root / "standardized")
    for i, edit in enumerate(REFERENCE_EDITS.values()):
        shutil.copytree(root / "standardized", root / "bundles" / f"r{i}")
        edit(root / "bundles" / f"r{i}")
    return root, len(manifests)


def _cases(n_manifests: int) -> list[tuple[str, list[str], str]]:
    """(name, arguments, a word the error line must contain, so that a case cannot pass by failing
    for another reason)."""
    fit = ["fit", "--train-dir", "{root}/train", "--out", "{out}/m", *FAST]
    cases = [(f"fit {' '.join(extra)}", fit + extra, _needle(extra)) for extra in (
        ["--batch-size", "0"], ["--batch-size", "-1"], ["--batch-size", "x"], ["--image-size", "0"],
        ["--image-size", "-32"], ["--image-size", "4"], ["--image-size", "30"], ["--image-size", "5000"],
        ["--epochs", "0"], ["--epochs", "-1"], ["--lr", "-1"], ["--lr", "0"], ["--lr", "1e6"],
        ["--synthetic-defects", "2"], ["--synthetic-defects", "-0.5"], ["--ssim-weight", "-1"], ["--sigma", "-3"],
        ["--target-frr", "0"], ["--target-frr", "1"], ["--target-frr", "2"], ["--min-area", "-1"],
        ["--checkpoint-every", "-1"], ["--calibration-split", "-1"], ["--calibration-split", "0.999"],
        ["--calibration-split", "0.5"], ["--reference-split", "0.5"], ["--model", "mmea"], ["--augment", "rotate"],
        ["--normalization", "zscore"], ["--resize", "crop"], ["--map-metric", "l7"], ["--map-scales", "0"],
        ["--map-scales", "a"], ["--standardize", "always"], ["--device", "tpu"], ["-o", "num_scales=0"],
        ["-o", "grid_stride=3"], ["-o", "grid_stride=12"], ["-o", "similarity=l2"], ["-o", "nope=1"], ["-o", "memory_slots=-1"], ["-o", "latent_channels=0"],
        ["-o", "noequals"], ["--out", "{root}/afile.txt"])]
    src = ["fit", "--out", "{out}/m", *FAST]
    cases += [(f"fit source {' '.join(extra)}", src + extra, _needle(extra)) for extra in (
        ["--train-dir", "{root}/missing"], ["--train-dir", "{root}/empty"], ["--train-dir", "{root}/corrupt"],
        ["--train-dir", "{root}/truncated"], ["--manifest", "{root}/missing.json"],
        ["--data-root", "{root}/missing", "--category", "x"], ["--data-root", "{root}", "--category", "bottle"],
        ["--data-root", "{root}"], [], ["--train-dir", "{root}/train", "--manifest", "{root}/manifest0.json"],
        *(["--manifest", f"{{root}}/manifest{i}.json"] for i in range(n_manifests)))]
    cal = ["calibrate", "--model", "{root}/model", "--good", "{root}/parts", "--quiet", "--device", "cpu"]
    cases += [(f"calibrate {' '.join(extra)}", cal + extra, _needle(extra)) for extra in (
        ["--target-frr", "0"], ["--target-frr", "2"], ["--min-area", "-1"], ["--batch-size", "0"],
        ["--good", "{root}/missing"], ["--target-frr", "0.01"], ["--good", "{root}/truncated", "--target-frr", "0.5"])]
    cases += [("calibrate not a bundle", ["calibrate", "--model", "{root}/train", "--good", "{root}/parts"], "bundle"),
              ("calibrate --bundle not a bundle", ["calibrate", "--bundle", "{root}/train", "--good", "{root}/parts"],
               "bundle"),
              ("calibrate model a file", ["calibrate", "--model", "{root}/afile.txt", "--good", "{root}/parts"],
               "afile.txt")]
    seg = ["segment", "{root}/parts", "--model", "{root}/model", "--out", "{out}/seg", "--device", "cpu"]
    cases += [("segment batch 0", seg + ["--batch-size", "0"], "--batch-size"),
              ("segment out file", seg + ["--out", "{root}/afile.txt"], "afile.txt"),
              ("segment all missing", ["segment", "{root}/a.png", "{root}/b.png"] + seg[2:], "none of the 2"),
              ("segment only truncated", ["segment", "{root}/truncated"] + seg[2:], "none of the 1"),
              ("segment not a bundle", ["segment", "{root}/parts", "--model", "{root}/parts", "--out", "{out}/s"],
               "not a model bundle"),
              ("segment --bundle not a bundle", ["segment", "{root}/parts", "--bundle", "{root}/parts", "--out",
                                                 "{out}/s"], "not a model bundle")]
    ins = ["inspect", "{root}/parts", "--model", "{root}/model", "--out", "{out}/rep", "--device", "cpu", "--quiet"]
    cases += [("inspect batch 0", ins + ["--batch-size", "0"], "--batch-size"),
              ("inspect out file", ins + ["--out", "{root}/afile.txt"], "afile.txt"),
              ("inspect sort-into file", ins + ["--sort-into", "{root}/afile.txt"], "afile.txt"),
              ("inspect uncalibrated", ["inspect", "{root}/parts", "--model", "{root}/uncalibrated", "--out", "{out}/r"],
               "no threshold"),
              ("inspect input missing", ["inspect", "{root}/missing"] + ins[2:], "missing")]
    cases += [("data synth size 0", ["data", "synth", "--out", "{out}/d", "--size", "0"], "--size"),
              ("data synth size -1", ["data", "synth", "--out", "{out}/d", "--size", "-1"], "--size"),
              ("data synth n-train 0", ["data", "synth", "--out", "{out}/d", "--n-train", "0"], "--n-train"),
              ("data synth out file", ["data", "synth", "--out", "{root}/afile.txt"], "afile.txt"),
              ("demo epochs 0", ["demo", "--out", "{out}/demo", "--epochs", "0"], "--epochs"),
              ("video evaluate image bundle", ["video", "evaluate", "--model", "{root}/model", "--data", "synthetic"],
               "not a video model"),
              ("video score image bundle", ["video", "score", "{root}/parts", "--model", "{root}/model"],
               "not a video model"),
              ("video fit batch 0", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic", "--out", "{out}/v",
                                     "--batch-size", "0"], "--batch-size"),
              ("video fit memory_slots -1", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic",
                                             "--preset", "tiny", "--out", "{out}/v", "--set", "memory_slots=-1"],
               "memory_slots"),
              ("video fit unknown option", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic",
                                            "--preset", "tiny", "--out", "{out}/v", "--set", "nope=1"], "nope"),
              ("no such command", ["nosuchcommand"], "nosuchcommand"),
              ("fit unknown flag", fit + ["--no-such-flag"], "--no-such-flag"),
              ("video fit over a bundle", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic",
                                           "--preset", "tiny", "--out", "{root}/model"], "--overwrite")]
    bundles = [(f"{prefix}{i}", name) for prefix, edits in (("c", CONFIG_EDITS), ("f", FILE_EDITS), ("r", REFERENCE_EDITS))
               for i, name in enumerate(edits)]
    for folder, name in bundles:
        model = f"{{root}}/bundles/{folder}"
        cases += [(f"segment bundle {name}", ["segment", "{root}/parts", "--model", model, "--out", "{out}/s",
                                              "--device", "cpu"], folder),
                  (f"inspect bundle {name}", ["inspect", "{root}/parts", "--model", model, "--out", "{out}/r",
                                              "--device", "cpu", "--quiet"], folder),
                  (f"calibrate bundle {name}", ["calibrate", "--model", model, "--good", "{root}/train",
                                                "--target-frr", "0.2", "--device", "cpu", "--quiet"], folder)]
    return cases


NEEDLES = {"--lr 1e6": "diverged", "--image-size 30": "grid_stride=8", "--calibration-split 0.999": "calibration split",
           "--calibration-split 0.5": "calibration split", "--reference-split 0.5": "reference split",
           "--map-scales 0": "scales", "--map-scales a": "scales", "--device tpu": "device",
           "--model mmea": "mmea", "--out {root}/afile.txt": "afile.txt", "--train-dir {root}/missing": "missing",
           "--train-dir {root}/empty": "no training images", "--train-dir {root}/corrupt": "x.png",
           "--train-dir {root}/truncated": "truncated", "--manifest {root}/missing.json": "missing.json",
           "--data-root {root}/missing --category x": "missing", "--data-root {root} --category bottle": "bottle",
           "--data-root {root}": "--category", "": "exactly one data source",
           "--train-dir {root}/train --manifest {root}/manifest0.json": "exactly one data source",
           "--good {root}/missing": "missing", "--target-frr 0.01": "at least",
           "--good {root}/truncated --target-frr 0.5": "truncated"}


def _needle(extra: list[str]) -> str:
    """What the error line names: the option, the model option's key, or what NEEDLES says."""
    text = " ".join(extra)
    if text in NEEDLES:
        return NEEDLES[text]
    if text.startswith("--manifest"):
        return "manifest"
    return extra[1].split("=")[0] if extra[0] == "-o" else extra[0]


CASES = _cases(7)


def _digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_there_are_at_least_100_cases():
    assert len(CASES) >= 100


def _one_line_error(root, out, args, needle):
    """The command ``args`` (``{root}``, ``{out}`` filled in) exits 2 with one error line holding
    ``needle``, no traceback, and leaves ``root`` as it was."""
    before = _digest(root)
    r = CliRunner().invoke(main, [a.format(root=root, out=out) for a in args])
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.output}\n{r.exception!r}"
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.output, r.stderr
    assert needle.format(root=root) in lines[0], lines[0]
    assert _digest(root) == before, "the inputs changed"


@pytest.mark.parametrize("name,args,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(world, tmp_path, name, args, needle):
    _one_line_error(world[0], tmp_path, args, needle)


# --- issue 31: hostile files, names, folders and outputs -------------------------------------------
# Each class of the second audit, generated: bad files are an ERROR or INVALID row (exit 3 with
# --fail-exit-code, never a PASS) or a one-line error where the command cannot go on (fit, calibrate,
# segment of nothing readable); odd but good names are judged; files that are not images are counted.

def _jpeg(progressive=False, shape=(64, 64)):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    return encoded(img, ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1) if progressive else ())


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: max(4, int(len(data) * fraction))]


def _late_end_marker(offset: int) -> bytes:
    """A progressive JPEG with FF D9 in a comment before its last scan, cut ``offset`` bytes into that scan."""
    jpeg = _jpeg(progressive=True)
    last = jpeg.rindex(b"\xff\xda")
    jpeg = jpeg[:last] + b"\xff\xfe\x00\x0a" + b"\xff\xd9" * 4 + jpeg[last:]
    return jpeg[: last + 10 + offset]


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _file(name, data):
    return lambda d: (d / name).write_bytes(data() if callable(data) else data)


def _fifo(d):
    os.mkfifo(d / "x.png")


def _two_link_loop(d):
    os.symlink(d / "y.png", d / "x.png")
    os.symlink(d / "x.png", d / "y.png")


def _part(value=None):
    img = noise_of(np.random.default_rng(7))
    if value is not None:
        img[:] = value
    return encoded(img)


ROWS = {   # name: (make the bad file in a folder, a word its row's reason holds)
    **{f"jpeg cut at {f:g}{' progressive' * p}": (_file("x.jpg", _cut(_jpeg(p), f)), "truncated")
       for p in (False, True) for f in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)},
    **{f"png cut at {f:g}": (_file("x.png", lambda f=f: _cut(_part(), f)), "truncated")
       for f in (0.1, 0.3, 0.5, 0.7, 0.9, 0.999)},
    **{f"jpeg FF D9 in a late header, cut {o} into the scan": (_file("x.jpg", _late_end_marker(o)), "truncated")
       for o in (1, 40, 120)},
    **{f"{fmt} of {n} frames": (_file(f"x.{fmt.lower()}", frames_file(fmt, n, defect_on=1)), f"{n} frames")
       for fmt in ("TIFF", "GIF", "PNG", "WEBP") for n in (2, 5)},
    **{f"png claiming {w}x{h}": (_file("x.png", png_claiming(w, h)), "decompression bomb")
       for w, h in ((14000, 14000), (20000, 20000), (30000, 30000), (100000, 100000), (2 ** 31 - 1, 1))},
    **{f"jpeg claiming {w}x{h}": (_file("x.jpg", _jpeg_claiming(w, h)), "decompression bomb")
       for w, h in ((30000, 30000), (65535, 65535))},
    "dangling link": (lambda d: os.symlink(d / "gone.png", d / "x.png"), "broken symbolic link"),
    "link to itself": (lambda d: os.symlink(d / "x.png", d / "x.png"), "loop"),
    "two links in a loop": (_two_link_loop, "loop"),
    "fifo": (_fifo, "FIFO"),
    **{f"{kind} {suffix}": (_file(f"x{suffix}", data), "cannot read")
       for kind, data in (("random bytes", os.urandom(3000)), ("empty", b""))
       for suffix in (".png", ".jpg", ".tif", ".webp", ".gif", ".bmp")},
    "blank frame": (_file("x.png", lambda: _part(100)), "blank"),
    "black frame": (_file("x.png", lambda: _part(0)), "blank"),
    "saturated frame": (_file("x.png", lambda: encoded(np.vstack([np.full((30, 48), 255, np.uint8),
                                                                   noise_of(np.random.default_rng(7))[:10]]))),
                        "saturated"),
}
# one of each kind, also through the commands that stop at a bad file
STOPPERS = ["jpeg cut at 0.6", "png cut at 0.5", "jpeg FF D9 in a late header, cut 40 into the scan",
            "TIFF of 2 frames", "GIF of 2 frames", "PNG of 2 frames", "WEBP of 2 frames", "png claiming 30000x30000",
            "jpeg claiming 65535x65535", "dangling link", "link to itself", "fifo", "random bytes .png"]
NAMES = [b"pi\xe8ce", b"\xff\xfe", b"caf\xc3", b"new\nline", b"tab\there", b"back\\slash", b"-dash", b"=1+2",
         b"<img src=x onerror=alert(1)>", b"x" * 251, "é".encode() * 100, b" spaces ", "\u202eevil".encode(),
         b"percent%41", b"quote\"'", b"star*?"]
SKIPS = {".hidden.png": _file(".hidden.png", _part), "notes.txt": _file("notes.txt", b"notes"),
         "README": _file("README", b"read me"), "Thumbs.db": _file("Thumbs.db", b"\0" * 64),
         "x.png~": _file("x.png~", _part), "broken link": lambda d: os.symlink(d / "gone", d / "link"),
         "hidden folder": lambda d: ((d / ".cache").mkdir(), (d / ".cache" / "y.png").write_bytes(_part()))}


def _relabel(b, to):
    data = bytearray((b / "model.safetensors").read_bytes())
    at = data.index(b'"F32"', 8, 8 + int.from_bytes(data[:8], "little"))
    data[at + 1:at + 4] = to
    (b / "model.safetensors").write_bytes(bytes(data))


def _as_export(fmt):
    def edit(b):
        cfg = json.loads((b / "config.json").read_text())
        cfg["export"] = {"format": fmt, "file": FORMATS[fmt], "anomaly_map": cfg["anomaly_map"]}
        (b / "config.json").write_text(json.dumps(cfg))
        (b / "model.safetensors").rename(b / FORMATS[fmt])
    return edit


def _nested(depth, kind="list"):
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


HOSTILE_BUNDLES = {
    **{f"config nested {d} deep ({k})": (lambda b, d=d, k=k: (b / "config.json").write_text(_nested(d, k)),
                                         "too deeply") for d, k in ((100_000, "list"), (100_000, "dict"), (10 ** 6, "list"))},
    **{f"weights relabelled F32 to {t}": (lambda b, t=t: _relabel(b, t.encode()), f"stored torch.{n}")
       for t, n in (("I32", "int32"), ("U32", "uint32"))},
    **{f"exported as {fmt} without --runtime": (_as_export(fmt), f"--runtime {fmt}") for fmt in FORMATS},
}


@pytest.fixture(scope="module")
def hostile(qa_bundles, tmp_path_factory):
    """The calibrated tiny model and its calibration images (good/), two parts, and a folder for
    each hostile file (rows/), odd name (names/), skipped file (skips/) and broken bundle (bundles/),
    with planted links in would-be outputs."""
    root = qa_root(qa_bundles, tmp_path_factory.mktemp("hostile"))
    (root / "good").mkdir()
    for i in range(5, 10):
        shutil.copy(root / "train" / f"{i}.png", root / "good" / f"{i}.png")
    (root / "parts").mkdir()
    for i in range(2):
        (root / "parts" / f"p{i}.png").write_bytes(_part())
    for i, (make, _) in enumerate(ROWS.values()):
        (root / "rows" / str(i)).mkdir(parents=True)
        make(root / "rows" / str(i))
    for i, name in enumerate(NAMES):
        (root / "names" / str(i)).mkdir(parents=True)
        (root / "names" / str(i) / os.fsdecode(name + b".png")).write_bytes(_part())
    for i, make in enumerate(SKIPS.values()):
        (root / "skips" / str(i)).mkdir(parents=True)
        (root / "skips" / str(i) / "p.png").write_bytes(_part())
        make(root / "skips" / str(i))
    for i, (edit, _) in enumerate(HOSTILE_BUNDLES.values()):
        shutil.copytree(root / "model", root / "bundles" / str(i))
        edit(root / "bundles" / str(i))
    (root / "empty").mkdir()
    (root / "only_notes").mkdir()
    (root / "only_notes" / "notes.txt").write_text("no images")
    (root / "outside").mkdir()
    (root / "lockrep").mkdir()
    os.symlink(root / "outside" / "created", root / "lockrep" / ".lock")
    (root / "segout").mkdir()
    os.symlink(root / "outside", root / "segout" / "parts")
    (root / "nested.json").write_text(_nested(100_000))
    (root / "nested_dict.json").write_text(_nested(100_000, "dict"))
    (root / "nested.yaml").write_text(_nested(10_000))
    return root


def _hostile_cases() -> list[tuple[str, list[str], str]]:
    ins = ["inspect", "{root}/parts", "--bundle", "{root}/model", "--out", "{out}/rep", "--device", "cpu", "--quiet"]
    seg = ["--bundle", "{root}/model", "--out", "{out}/seg", "--device", "cpu"]
    cases = []
    for name in STOPPERS:
        i, needle = list(ROWS).index(name), ROWS[name][1]
        folder = f"{{root}}/rows/{i}"
        cases += [(f"fit on {name}", ["fit", "--train-dir", folder, "--out", "{out}/m", *FAST], needle),
                  (f"calibrate on {name}", ["calibrate", "--bundle", "{root}/model", "--good", folder, "--target-frr",
                                            "0.5", "--device", "cpu", "--quiet"], needle),
                  (f"segment of only {name}", ["segment", folder, *seg], needle)]
    for i, (name, (_, needle)) in enumerate(HOSTILE_BUNDLES.items()):
        b = f"{{root}}/bundles/{i}"
        cases += [(f"inspect bundle {name}", ["inspect", "{root}/parts", "--bundle", b, "--out", "{out}/r"], needle),
                  (f"segment bundle {name}", ["segment", "{root}/parts", "--bundle", b, "--out", "{out}/s"], needle)]
    cases += [("inspect into its input", ins[:4] + ["--out", "{root}/parts"], "inside the output folder"),
              ("inspect into its input's parent", ins[:4] + ["--out", "{root}"], "inside the output folder"),
              ("inspect sorting into its input", ins + ["--sort-into", "{root}/parts"], "inside the output folder"),
              ("inspect an empty folder", ["inspect", "{root}/empty"] + ins[2:], "no images found"),
              ("inspect a folder of no images", ["inspect", "{root}/only_notes"] + ins[2:], "1 files skipped"),
              ("segment an empty folder", ["segment", "{root}/empty", *seg], "no images found"),
              ("calibrate on an empty folder", ["calibrate", "--bundle", "{root}/model", "--good", "{root}/empty"],
               "has 0 good image"),
              ("inspect through a planted .lock link", ins[:4] + ["--out", "{root}/lockrep"], "symbolic link"),
              ("segment through a planted folder link", ["segment", "{root}/parts", "--bundle", "{root}/model",
                                                          "--out", "{root}/segout"], "symbolic link"),
              *((f"inspect --workers {w}", ins + ["--workers", str(w)], f"--workers {w}")
                for w in (2 * usable_cpus() + 1, 200, 10 ** 6)),
              *((f"calibrate --target-frr {t}", ["calibrate", "--bundle", "{root}/model", "--good", "{root}/good",
                                                 "--target-frr", t], "--target-frr")
                for t in ("5e-324", "1e-300", "1e-15", "1e-13")),
              ("fit --target-frr 5e-324", ["fit", "--train-dir", "{root}/train", "--out", "{out}/m", *FAST,
                                           "--calibration-split", "0.5", "--target-frr", "5e-324"], "--target-frr"),
              *((f"fit --config {f}", ["fit", "--config", f"{{root}}/{f}"], "nests too deeply")
                for f in ("nested.json", "nested_dict.json", "nested.yaml"))]
    if importlib.util.find_spec("ray") is not None:
        cases += [(f"inspect --engine ray --address {a}", ins + ["--engine", "ray", "--address", a], a)
                  for a in ("127.0.0.1:1", "127.0.0.1:2", "localhost:1", "ray://127.0.0.1:1")]
    return cases


HOSTILE_CASES = _hostile_cases()


def test_there_are_at_least_80_cases_of_issue_31():
    assert len(HOSTILE_CASES) + len(ROWS) + len(NAME_CASES) + len(SKIPS) >= 80


@pytest.mark.parametrize("name,args,needle", HOSTILE_CASES, ids=[c[0] for c in HOSTILE_CASES])
def test_hostile_input_is_one_line_and_exit_2(hostile, tmp_path, name, args, needle):
    _one_line_error(hostile, tmp_path, args, needle.replace("{", "{{").replace("}", "}}"))


@pytest.mark.parametrize("i,name", enumerate(ROWS), ids=list(ROWS))
def test_a_bad_file_is_an_error_or_invalid_row_never_a_pass(hostile, tmp_path, i, name):
    folder = hostile / "rows" / str(i)
    before = _digest(folder)
    r = CliRunner().invoke(main, ["inspect", str(folder), "--bundle", str(hostile / "model"), "--out",
                                  str(tmp_path / "rep"), "--device", "cpu", "--quiet", "--fail-exit-code"])
    assert r.exit_code == 3, f"exit {r.exit_code}: {r.output}\n{r.exception!r}"
    rows = read_rows(tmp_path / "rep" / "results.jsonl")   # one, or two for two links to each other
    assert rows and all(r["decision"] in ("ERROR", "INVALID") and ROWS[name][1] in r["error"] for r in rows), rows
    assert _digest(folder) == before


NAME_CASES = [(i, "inspect") for i in range(len(NAMES))] + [(i, "segment") for i in range(0, len(NAMES), 2)]


@pytest.mark.parametrize("i,command", NAME_CASES, ids=[f"{c} {repr(NAMES[i])[2:-1][:40]}" for i, c in NAME_CASES])
def test_a_good_part_under_an_odd_name_is_judged(hostile, tmp_path, i, command):
    folder = hostile / "names" / str(i)
    r = CliRunner().invoke(main, [command, str(folder), "--bundle", str(hostile / "model"), "--out",
                                  str(tmp_path / "o"), "--device", "cpu"])
    assert r.exit_code == 0 and r.exception is None, f"exit {r.exit_code}: {r.output}\n{r.exception!r}"
    if command == "segment":
        assert "1 images segmented, 0 unreadable" in r.output
        assert len(list((tmp_path / "o" / str(i)).iterdir())) == 4
    else:
        [row] = read_rows(tmp_path / "o" / "results.jsonl")
        assert row["decision"] in ("PASS", "FAIL") and os.fsencode(row["path"]).endswith(NAMES[i] + b".png")


@pytest.mark.parametrize("i,name", enumerate(SKIPS), ids=list(SKIPS))
def test_a_file_that_is_not_an_image_is_counted_as_skipped(hostile, tmp_path, i, name):
    r = CliRunner().invoke(main, ["inspect", str(hostile / "skips" / str(i)), "--bundle", str(hostile / "model"),
                                  "--out", str(tmp_path / "rep"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0 and "1 other files skipped" in r.output, r.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["total"] == 1 and summary["skipped"] == len(summary["skipped_files"]) == 1
