"""Issue 18's fuzz test: generated bad inputs (options, files, crafted bundle fields) through the
CLI, in-process. Each must end with exit code 2, one line on stderr, no traceback, and leave the
input folders (data and bundles) exactly as they were."""
import hashlib
import json
import shutil

import cv2
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import (TINY_MODEL_OPTIONS as TINY, fast_fit_args, noise as noise_of, noise_after_qa_training, qa_root,
                      write_png)

from inspect_ad.cli.image import main
from inspect_ad.detectors.image import Detector
from inspect_ad.engine.loop import TrainConfig
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
                                             "--setting", "tiny", "--out", "{out}/v", "--set", "memory_slots=-1"],
               "memory_slots"),
              ("video fit unknown option", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic",
                                            "--setting", "tiny", "--out", "{out}/v", "--set", "nope=1"], "nope"),
              ("no such command", ["nosuchcommand"], "nosuchcommand"),
              ("fit unknown flag", fit + ["--no-such-flag"], "--no-such-flag"),
              ("video fit over a bundle", ["video", "fit", "--recipe", "memae3d", "--data", "synthetic",
                                           "--setting", "tiny", "--out", "{root}/model"], "--overwrite")]
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


@pytest.mark.parametrize("name,args,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(world, tmp_path, name, args, needle):
    root, _ = world
    before = _digest(root)
    r = CliRunner().invoke(main, [a.format(root=root, out=tmp_path) for a in args])
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.output}\n{r.exception!r}"
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.output, r.stderr
    assert needle.format(root=root) in lines[0], lines[0]
    assert _digest(root) == before, "the inputs changed"
