"""Issue 18: never pass a bad part silently, never lose a row, never show a traceback."""
import copy
import csv
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import PIXEL, TINY_OPTIONS, write_png
from inspect_ad import atomic
from inspect_ad.detectors import bundle
from inspect_ad.engine import checkpoint
from inspect_ad.reports.batch import CSV, JSONL, Summary, inspect_images, read_rows, render_html, report_lock
from inspect_ad.scoring.calibration import FAIL, INVALID, calibrate, judge
from inspect_ad.cli.image import main
from inspect_ad.data.io import read_image
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.engine.loop import TrainConfig

TINY = {k: int(v) for k, v in (o.split("=") for o in TINY_OPTIONS[1::2])}
FAST = ["--epochs", "1", "--batch-size", "4", "--image-size", "32", "--quiet", "--device", "cpu", *PIXEL, *TINY_OPTIONS]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def noise(rng, shape=(40, 48)):
    return rng.integers(90, 110, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    """A calibrated tiny model (bundle at root/model) and a parts folder with 2 good images."""
    root = tmp_path_factory.mktemp("rel")
    rng = np.random.default_rng(0)
    train = [write_png(root / "train" / f"{i}.png", noise(rng)) for i in range(10)]
    for i in range(2):
        write_png(root / "parts" / f"g{i}.png", noise(rng))
    det = Detector("mmae", 32, train_config=TrainConfig(epochs=1, batch_size=4, seed=0, device="cpu"),
                   model_options=TINY)
    det.fit(train[:5], out=root / "model", progress=False)
    det.calibrate(train[5:], target_frr=0.2, progress=False)
    det.save_calibration(root / "model")
    return root, Detector.load(root / "model", "cpu")


def parts_copy(qa, tmp_path):
    root, _ = qa
    shutil.copytree(root / "parts", tmp_path / "parts")
    return tmp_path / "parts"


# --- 1. silent wrong decisions -------------------------------------------------------------

def test_fit_refuses_to_save_a_diverged_model(qa, tmp_path):
    root, _ = qa
    r = run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "--lr", "1e6")
    one_line_error(r, "diverged", "--lr")
    assert not (tmp_path / "m" / "config.json").exists()


def test_non_finite_score_is_a_fail_with_a_reason():
    cal = {"image_threshold": 1.0, "pixel_threshold": 1.0, "min_area": 1}
    j = judge(float("nan"), np.zeros((4, 4), np.float32), cal)
    assert j.decision == FAIL and "invalid score" in j.reason


def test_calibration_refuses_non_finite_scores():
    maps = [np.zeros((4, 4), np.float32)] * 9
    with pytest.raises(InspectError, match="non-finite"):
        calibrate([0.1] * 8 + [float("nan")], maps, target_frr=0.2)


def test_inspect_fails_every_part_of_a_nan_model(qa, tmp_path, monkeypatch):
    _, det = qa
    monkeypatch.setattr(Detector, "_infer", lambda self, x: (np.full((len(x), 32, 32), np.nan, np.float32),
                                                              np.full(len(x), np.nan, np.float32)))
    s = inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    text = (tmp_path / "rep" / JSONL).read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert "NaN" not in text  # not JSON: other readers of the report would choke on it
    assert s.failed == 2 and all(r["decision"] == FAIL and "invalid score" in r["error"] for r in rows)


def test_predict_fails_a_nan_score(qa, monkeypatch):
    root, det = qa
    p = next(det.predict_iter([root / "parts" / "g0.png"]))
    p.score = float("nan")
    monkeypatch.setattr(Detector, "_checked", lambda self, inputs: [p])
    assert det.predict(["any.png"]).tolist() == [True]


def crafted(qa, tmp_path, edit):
    root, _ = qa
    shutil.copytree(root / "model", tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    edit(cfg)
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "b"


def test_bundle_with_nan_weights_is_refused(qa, tmp_path):
    b = crafted(qa, tmp_path, lambda cfg: None)
    state = load_file(str(b / "model.safetensors"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][...] = float("nan")
    save_file(state, str(b / "model.safetensors"))
    with pytest.raises(InspectError, match="NaN"):
        Detector.load(b, "cpu")


CRAFTED = {
    "sigma -3": lambda c: c["anomaly_map"].update(sigma=-3),
    "channels 5": lambda c: c["preprocessing"].update(channels=5),
    "NaN pixel threshold": lambda c: c["calibration"].update(pixel_threshold=float("nan")),
    "inf image threshold": lambda c: c["calibration"].update(image_threshold=float("inf")),
    "negative min_area": lambda c: c["calibration"].update(min_area=-1),
    "script in calibration.n": lambda c: c["calibration"].update(n="<script>alert(1)</script>"),
    "memory_slots 1e9": lambda c: c["model"]["config"].update(memory_slots=1e9),
    "memory_slots 10**9": lambda c: c["model"]["config"].update(memory_slots=10 ** 9),
    "image_size 60000": lambda c: (c["preprocessing"].update(image_size=60000),
                                   c["model"]["config"].update(image_size=60000)),
    "missing calibration key": lambda c: c["calibration"].pop("image_threshold"),
    "preprocessing not an object": lambda c: c.update(preprocessing=[32, 1]),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_bundle_values_are_refused_on_load(qa, tmp_path, case):
    b = crafted(qa, tmp_path, CRAFTED[case])
    with pytest.raises(InspectError, match="config.json|model.safetensors"):
        Detector.load(b, "cpu")


def test_black_frame_is_invalid_never_pass(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    write_png(parts / "black.png", np.zeros((40, 48), np.uint8))
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    row = next(r for r in read_rows(tmp_path / "rep" / JSONL) if r["path"].endswith("black.png"))
    assert row["decision"] == INVALID and "blank" in row["error"]
    assert s.invalid == 1 and s.exit_code() != 0


def test_segment_without_calibration_still_flags_a_black_frame(qa, tmp_path):
    root, _ = qa
    shutil.copytree(root / "model", tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["calibration"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    write_png(tmp_path / "black.png", np.zeros((40, 48), np.uint8))
    r = run("segment", tmp_path / "black.png", "--model", tmp_path / "m", "--out", tmp_path / "seg", "--device", "cpu")
    assert r.exit_code == 0 and "INVALID input: blank" in r.output


def test_frame_far_brighter_than_training_is_invalid(qa):
    _, det = qa
    bright = np.full((40, 48, 1), 230, np.uint8) + np.random.default_rng(1).integers(0, 5, (40, 48, 1), dtype=np.uint8)
    assert "mean grey level" in next(det.predict_iter([bright])).invalid


def test_float_tiff_is_read_by_its_range(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.full((8, 8), 0.5, np.float32))
    assert read_image(tmp_path / "f.tif").mean() == 128


def test_truncated_jpeg_is_unreadable(tmp_path):
    ok, buf = cv2.imencode(".jpg", noise(np.random.default_rng(0)))
    (tmp_path / "t.jpg").write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    with pytest.raises(InspectError, match="file is truncated"):
        read_image(tmp_path / "t.jpg")


# --- 3. permissions and injection --------------------------------------------------------

def test_bundle_and_report_files_honour_the_umask(qa, tmp_path):
    _, det = qa
    old = os.umask(0o022)
    try:
        det.save(tmp_path / "b")
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    finally:
        os.umask(old)
    for f in (tmp_path / "b" / "model.safetensors", tmp_path / "b" / "config.json", tmp_path / "rep" / CSV,
              tmp_path / "rep" / "index.html"):
        assert oct(f.stat().st_mode & 0o777) == oct(0o644), f


def test_every_html_value_is_escaped():
    cal = {"target_frr": 0.1, "n": "<script>x</script>", "image_threshold": 1.0, "pixel_threshold": 1.0,
           "min_area": "<img src=x onerror=alert(1)>", "guarantee": "", "date": ""}
    page = render_html(Summary(0, 0, 0, 0, 0, 0.0, "r"), cal, [], 10)
    assert "<script>x" not in page and "<img src=x" not in page


def test_csv_cells_cannot_start_a_formula(qa, tmp_path, monkeypatch):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    shutil.copy(parts / "g0.png", parts / "=1+2.png")
    monkeypatch.chdir(parts)
    inspect_images(det, ["=1+2.png"], tmp_path / "rep", progress=False)
    with open(tmp_path / "rep" / CSV) as f:
        cells = [row["path"] for row in csv.DictReader(f)]
    assert cells and all(not c.startswith(("=", "+", "-", "@")) for c in cells)


def test_sort_into_refuses_a_symlinked_folder(qa, tmp_path):
    _, det = qa
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "sorted").mkdir()
    (tmp_path / "sorted" / "pass").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InspectError, match="symbolic link"):
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", sort_into=tmp_path / "sorted",
                       progress=False)
    assert not any((tmp_path / "elsewhere").iterdir())


# --- 2. rows and overwrites ----------------------------------------------------------------

def test_a_second_run_on_a_report_in_use_is_refused(qa, tmp_path):
    _, det = qa
    (tmp_path / "rep").mkdir()
    with report_lock(tmp_path / "rep"), pytest.raises(InspectError, match="another inspect run"):
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", resume=True, progress=False)


def test_resume_with_the_inputs_spelled_otherwise_adds_no_rows(qa, tmp_path, monkeypatch):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    inspect_images(det, [parts.resolve()], tmp_path / "rep", progress=False)
    monkeypatch.chdir(tmp_path)
    s = inspect_images(det, ["parts", "./parts/g0.png"], tmp_path / "rep", resume=True, progress=False)
    assert s.new == 0 and s.total == 2


def test_the_same_file_given_twice_is_one_row(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    s = inspect_images(det, [parts / "g0.png", parts, parts / "g0.png"], tmp_path / "rep", progress=False)
    assert s.total == 2


def test_own_output_folders_inside_the_input_are_not_scanned(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    inspect_images(det, [parts], parts / "rep", sort_into=parts / "sorted", copy=True, progress=False)
    s = inspect_images(det, [parts], parts / "rep", resume=True, sort_into=parts / "sorted", copy=True,
                       progress=False)
    assert s.new == 0 and s.total == 2


def test_video_fit_refuses_to_replace_a_bundle(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.json").write_text("{}")
    one_line_error(run("video", "fit", "--recipe", "memae3d", "--data", "synthetic", "--setting", "tiny",
                       "--out", tmp_path / "v"), "--overwrite")
    assert (tmp_path / "v" / "config.json").read_text() == "{}"


def test_segment_never_overwrites_a_users_file(qa, tmp_path):
    root, _ = qa
    d = parts_copy(qa, tmp_path)
    (d / "g0_mask.png").write_bytes(b"the user's own mask")
    one_line_error(run("segment", d / "g0.png", "--model", root / "model", "--out", d, "--device", "cpu"),
                   "g0_mask.png", "--overwrite")
    assert (d / "g0_mask.png").read_bytes() == b"the user's own mask"


def test_fit_without_resume_keeps_an_unfinished_checkpoint(qa, tmp_path):
    root, _ = qa
    (tmp_path / "m" / "checkpoint").mkdir(parents=True)
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST), "--resume")
    assert (tmp_path / "m" / "checkpoint").is_dir()


def test_resume_refuses_a_checkpoint_from_other_data(qa, tmp_path):
    root, _ = qa
    other = tmp_path / "other"
    for i in range(4):
        write_png(other / f"{i}.png", noise(np.random.default_rng(i)))
    assert run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST).exit_code == 0
    one_line_error(run("fit", "--train-dir", other, "--out", tmp_path / "m", *FAST, "--resume"),
                   "cannot resume", "images")


def test_interrupted_bundle_save_keeps_the_old_bundle_whole(qa, tmp_path, monkeypatch):
    _, det = qa
    det.save(tmp_path / "b")
    (tmp_path / "b" / "checkpoint").mkdir()
    before = {f.name: f.read_bytes() for f in (tmp_path / "b").iterdir() if f.is_file()}

    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(bundle, "atomic_write_json", crash)
    retrained = copy.deepcopy(det)
    with torch.no_grad():
        next(retrained.model_.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):  # while writing config.json, after the new weights
        retrained.save(tmp_path / "b")
    assert {f.name: f.read_bytes() for f in (tmp_path / "b").iterdir() if f.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left


def test_bundle_save_keeps_other_files_of_the_folder(qa, tmp_path):
    _, det = qa
    det.save(tmp_path / "b")
    (tmp_path / "b" / "checkpoint").mkdir()
    det.save(tmp_path / "b")
    assert (tmp_path / "b" / "checkpoint").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_bundle_save_through_a_symlink_writes_where_it_points(qa, tmp_path):
    _, det = qa
    det.save(tmp_path / "v3")
    (tmp_path / "current").symlink_to(tmp_path / "v3")
    det.save(tmp_path / "current")
    assert (tmp_path / "current").is_symlink() and (tmp_path / "v3" / "config.json").is_file()


def test_disk_full_checkpoint_leaves_no_debris(qa, tmp_path, monkeypatch):
    _, det = qa

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", full)
    opt = torch.optim.Adam(det.model_.parameters())
    with pytest.raises(OSError):
        checkpoint.save_checkpoint(tmp_path / "checkpoint", det.model_, opt, {"epoch": 1})
    assert list(tmp_path.iterdir()) == []


# --- 4. the error contract -------------------------------------------------------------------

def test_disk_full_output_is_one_line(qa, tmp_path, monkeypatch):
    root, _ = qa

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "rep" / "results.jsonl"))
    monkeypatch.setattr(atomic, "finish_file", full)
    one_line_error(run("inspect", parts_copy(qa, tmp_path), "--model", root / "model", "--out", tmp_path / "rep",
                       "--device", "cpu", "--quiet"), "No space left", "results.jsonl")


def test_read_only_output_folder_is_one_line(qa, tmp_path, monkeypatch):
    root, _ = qa

    def read_only(*a, **k):  # the tests run as root, whom chmod does not stop
        raise PermissionError(13, "Permission denied", str(tmp_path / "m"))
    monkeypatch.setattr(bundle.tempfile, "mkdtemp", read_only)
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST), "Permission denied")


def test_segment_with_every_input_missing_exits_2(qa, tmp_path):
    root, _ = qa
    one_line_error(run("segment", tmp_path / "a.png", tmp_path / "b.png", "--model", root / "model",
                       "--out", tmp_path / "seg", "--device", "cpu"), "none of the 2 inputs")


def test_colour_image_on_a_grey_model_does_not_suggest_a_missing_option(qa, tmp_path):
    _, det = qa
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    err = next(det.predict_iter([rgb])).error
    assert "colour" in err and "--channels" not in err


def test_video_evaluate_on_an_image_bundle_is_one_line(qa):
    root, _ = qa
    one_line_error(run("video", "evaluate", "--model", root / "model", "--data", "synthetic"), "not a video model")


def test_manifest_with_numbers_for_paths_is_one_line(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"train": [1, 2]}))
    one_line_error(run("fit", "--manifest", tmp_path / "m.json", "--out", tmp_path / "o", *FAST), "train entry 0")


def test_options_out_of_range_are_one_line_before_anything_is_written(qa, tmp_path):
    root, _ = qa
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "--epochs", "0"),
                   "--epochs")
    assert not (tmp_path / "m").exists()


def test_detector_refuses_an_image_size_out_of_range():
    with pytest.raises(InspectError, match="must lie in"):
        Detector("mmae", image_size=0)


@pytest.mark.parametrize("bad", [dict(synthetic_defects=2.0), dict(ssim_weight=float("nan")), dict(epochs=0),
                                 dict(lr=-1.0), dict(schedule="linear")])
def test_train_config_refuses_settings_out_of_range(bad):
    with pytest.raises(InspectError, match="must be a number in|choose one of"):
        TrainConfig(**bad)


def test_model_option_errors_are_one_line(qa, tmp_path):
    root, _ = qa
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "-o", "grid_stride=3"),
                   "grid_stride")
