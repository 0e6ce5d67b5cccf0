"""Issue 31 at the command line: hostile inputs a second audit found (calibration sets, file names,
multi-frame files, bombs, writes outside --out, leftovers of killed runs). Each is a one-line error
(exit 2), an ERROR or INVALID row, or a right decision; never a traceback or a PASS."""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError

from conftest import (TINY_IMAGE_SIZE, TINY_MODEL_OPTIONS, encoded, fast_fit_args, one_line_error, parts_copy,
                      png_claiming, run_cli as run)

from inspect_ad import atomic
from inspect_ad.detectors import bundle
from inspect_ad.detectors.image import Detector
from inspect_ad.training.loop import TrainConfig
from inspect_ad.pipelines import ray_qa
from inspect_ad.reports.batch import JSONL, read_rows

FAST = fast_fit_args(epochs=1)
ODD = os.fsdecode(b"pi\xe8ce \xff")   # a Latin-1 file name: not UTF-8


def colour_part(rng, shape=(40, 48)):
    """A part with real colour: the channels differ."""
    return np.stack([rng.integers(60, 80, shape), rng.integers(90, 110, shape), rng.integers(130, 150, shape)],
                    axis=2).astype(np.uint8)


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """A tiny pixel MMAE fitted on 5 colour parts, uncalibrated, and 5 other colour parts (good/)
    with their grey versions (grey/)."""
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    for i in range(10):
        img = colour_part(rng)
        folder = root / ("train" if i < 5 else "good")
        folder.mkdir(exist_ok=True)
        (folder / f"{i}.png").write_bytes(encoded(img[:, :, ::-1]))
        if i >= 5:
            (root / "grey").mkdir(exist_ok=True)
            (root / "grey" / f"{i}.png").write_bytes(encoded(img.mean(axis=2).astype(np.uint8)))
    det = Detector("mmae", TINY_IMAGE_SIZE, train_config=TrainConfig(epochs=1, batch_size=4, seed=0, device="cpu"),
                   model_options=TINY_MODEL_OPTIONS)
    det.fit(sorted((root / "train").glob("*.png")), out=root / "model", progress=False)
    assert det.preprocessing_.channels == 3
    return root


def _calibrate(bundle_dir, *args):
    return run("calibrate", "--bundle", bundle_dir, "--target-frr", "0.2", "--device", "cpu", "--quiet", *args)


# --- 1. calibration inputs against the training images -----------------------------------------

def test_grey_calibration_images_for_a_colour_model_are_refused(colour, tmp_path):
    b = shutil.copytree(colour / "model", tmp_path / "m")
    one_line_error(_calibrate(b, "--good", colour / "grey"), "5 of the 5", "a grey image", "--force")
    assert "calibration" not in json.loads((b / "config.json").read_text())
    assert _calibrate(b, "--good", colour / "good").exit_code == 0


def test_force_calibrates_on_them_anyway(colour, tmp_path):
    b = shutil.copytree(colour / "model", tmp_path / "m")
    r = _calibrate(b, "--good", colour / "grey", "--force")
    assert r.exit_code == 0 and "calibrated on 5 good images" in r.output


def test_calibration_images_of_another_size_are_refused(colour, tmp_path):
    b = shutil.copytree(colour / "model", tmp_path / "m")
    big = tmp_path / "big"
    big.mkdir()
    rng = np.random.default_rng(3)
    for i in range(5):
        (big / f"{i}.png").write_bytes(encoded(colour_part(rng, (120, 144))[:, :, ::-1]))
    one_line_error(_calibrate(b, "--good", big), "144×120 pixels", "48-48 × 40-40")


# --- 6. each calibration image counts once -------------------------------------------------------

def test_calibrate_counts_repeats_once(qa, tmp_path, caplog):
    caplog.set_level("WARNING")
    root, _ = qa
    b = shutil.copytree(root / "uncalibrated", tmp_path / "m")
    good = tmp_path / "good"
    good.mkdir()
    for i in range(5, 10):
        shutil.copy(root / "train" / f"{i}.png", good / f"{i}.png")
    r = _calibrate(b, "--good", good, "--good", good, "--good", good / "5.png")
    assert r.exit_code == 0 and "calibrated on 5 good images" in r.output
    assert "6 images repeat another" in caplog.text and "5 distinct" in caplog.text   # on stderr in a shell
    links = tmp_path / "links"
    links.mkdir()
    for i in range(19):
        os.symlink(good / "5.png", links / f"{i}.png")
    shutil.copy(good / "6.png", links / "copy_of_6.png")
    one_line_error(_calibrate(b, "--good", links, "--good", good / "6.png"), "has 2 good image(s)")


# --- 2. file names that are not UTF-8 ----------------------------------------------------------

@pytest.fixture
def odd_parts(qa, tmp_path):
    parts = parts_copy(qa, tmp_path)
    shutil.copy(parts / "g0.png", parts / f"{ODD}.png")
    return parts


def test_segment_reads_and_names_a_non_utf8_file(qa, odd_parts, tmp_path):
    root, _ = qa
    r = run("segment", odd_parts, "--bundle", root / "model", "--out", tmp_path / "seg", "--device", "cpu")
    assert r.exit_code == 0 and "3 images segmented, 0 unreadable" in r.output
    assert "pi\\xe8ce \\xff.png" in r.output   # shown with its bytes escaped
    assert (tmp_path / "seg" / "parts" / f"{ODD}_overlay.png").is_file()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_inspect_and_resume_read_a_non_utf8_file(qa, odd_parts, tmp_path, workers):
    root, _ = qa
    args = ["inspect", odd_parts, "--bundle", root / "model", "--out", tmp_path / "rep", "--device", "cpu",
            "--quiet", "--workers", workers]
    r = run(*args)
    assert r.exit_code == 0 and "3 images" in r.output and "0 unreadable" in r.output
    assert run(*args, "--resume").exit_code == 0
    assert len(read_rows(tmp_path / "rep" / JSONL)) == 3


def test_fit_and_calibrate_read_non_utf8_files(qa, tmp_path):
    root, _ = qa
    train = tmp_path / "train"
    train.mkdir()
    for i in range(10):
        shutil.copy(root / "train" / f"{i}.png", train / f"{ODD} {i}.png")
    r = run("fit", "--train-dir", train, "--out", tmp_path / "m", *FAST, "--calibration-split", "5",
            "--target-frr", "0.2")
    assert r.exit_code == 0, r.output
    assert _calibrate(tmp_path / "m", "--good", train).exit_code == 0


# --- 3, 7, 8. multi-frame files and bombs through the commands ------------------------------------

def test_segment_refuses_a_bomb_in_one_line_and_goes_on(qa, tmp_path):
    root, _ = qa
    parts = parts_copy(qa, tmp_path)
    (parts / "bomb.png").write_bytes(png_claiming(20000, 20000))
    r = run("segment", parts, "--bundle", root / "model", "--out", tmp_path / "seg", "--device", "cpu")
    assert r.exit_code == 0 and "2 images segmented, 1 unreadable" in r.output and "decompression bomb" in r.output


# --- 4, 10. what inspect must not do quietly ------------------------------------------------------

def test_inspect_into_its_own_input_folder_is_one_line(qa, tmp_path):
    root, _ = qa
    parts = parts_copy(qa, tmp_path)
    one_line_error(run("inspect", parts, "--bundle", root / "model", "--out", parts, "--fail-exit-code"),
                   "inside the output folder")


def test_inspect_of_an_empty_folder_is_one_line(qa, tmp_path):
    root, _ = qa
    (tmp_path / "empty").mkdir()
    one_line_error(run("inspect", tmp_path / "empty", "--bundle", root / "model", "--out", tmp_path / "rep"),
                   "no images found")


def test_workers_beyond_twice_the_cpus_are_one_line(qa, tmp_path):
    root, _ = qa
    one_line_error(run("inspect", parts_copy(qa, tmp_path), "--bundle", root / "model", "--out", tmp_path / "rep",
                       "--workers", "200"), "--workers 200", "CPUs")
    assert not (tmp_path / "rep" / JSONL).exists()


# --- 9. Ray addresses ---------------------------------------------------------------------------

def test_a_ray_address_where_nothing_listens_is_one_line_within_seconds(qa, tmp_path):
    pytest.importorskip("ray")
    root, _ = qa
    t0 = time.monotonic()
    r = run("inspect", parts_copy(qa, tmp_path), "--bundle", root / "model", "--out", tmp_path / "rep",
            "--engine", "ray", "--address", "127.0.0.1:1")
    one_line_error(r, "cannot reach the Ray cluster at --address 127.0.0.1:1")
    assert time.monotonic() - t0 < 30


def test_a_ray_client_address_without_ray_client_is_one_line(qa, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    root, _ = qa
    real = ray_qa.importlib.util.find_spec
    monkeypatch.setattr(ray_qa.importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else
                        real(name, *a))
    one_line_error(run("inspect", parts_copy(qa, tmp_path), "--bundle", root / "model", "--out", tmp_path / "rep",
                       "--engine", "ray", "--address", "ray://127.0.0.1:10001"), "ray[client]")


# --- 11, 14, 18. segment's writes -------------------------------------------------------------------

def test_segment_never_writes_through_a_symlink_planted_in_out(qa, tmp_path):
    root, _ = qa
    parts = parts_copy(qa, tmp_path)
    (tmp_path / "seg").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "seg" / "parts")
    one_line_error(run("segment", parts, "--bundle", root / "model", "--out", tmp_path / "seg", "--device", "cpu"),
                   "symbolic link")
    assert not any((tmp_path / "outside").iterdir())


@pytest.mark.parametrize("length", [245, 252])
def test_segment_writes_outputs_of_a_long_name(qa, tmp_path, length):
    root, _ = qa
    parts = parts_copy(qa, tmp_path)
    long = "x" * (length - 4) + ".png"
    shutil.copy(parts / "g0.png", parts / long)
    r = run("segment", parts, "--bundle", root / "model", "--out", tmp_path / "seg", "--device", "cpu")
    assert r.exit_code == 0 and "3 images segmented" in r.output
    outputs = [p.name for p in (tmp_path / "seg" / "parts").iterdir() if p.name.startswith("xxx")]
    assert len(outputs) == 4 and all(len(n) <= 255 for n in outputs)
    assert all(("~" in n) == (length - 4 + 12 > 255) for n in outputs)   # shortened, a hash kept, only where needed


def test_segment_removes_a_killed_runs_temporary_files_only(qa, tmp_path):
    root, _ = qa
    parts = parts_copy(qa, tmp_path)
    out = tmp_path / "seg" / "parts"
    out.mkdir(parents=True)
    (out / ".g0_map.npy.abcd1234.tmp").write_bytes(b"half a map")
    (out / ".notes.abcd1234.tmp").write_bytes(b"not one of segment's")
    with atomic.atomic_path(out / "g1_mask.png") as live:   # a writer still at work
        live.write_bytes(b"being written")
        r = run("segment", parts, "--bundle", root / "model", "--out", tmp_path / "seg", "--device", "cpu",
                "--overwrite")
        assert r.exit_code == 0 and live.exists()
    assert sorted(p.name for p in out.glob(".*.tmp")) == [".notes.abcd1234.tmp"]


def test_export_removes_a_killed_exports_staging_folder(qa, tmp_path):
    root, _ = qa
    (tmp_path / ".exp.new-abcd1234").mkdir()
    (tmp_path / ".exp.new-abcd1234" / "model.torchscript").write_bytes(b"\0" * 1000)
    r = run("export", "--bundle", root / "model", "--format", "torchscript", "--out", tmp_path / "exp")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


# --- 13, 15, 17, 19. bundles, options, messages --------------------------------------------------

def test_fit_onto_a_full_disk_is_one_line(qa, tmp_path, monkeypatch):
    root, _ = qa

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(bundle, "save_file", full)
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST),
                   "No space left on device", "free space")


def test_a_denormal_target_frr_is_one_line(qa, tmp_path):
    root, _ = qa
    one_line_error(run("calibrate", "--bundle", root / "model", "--good", root / "train", "--target-frr", "5e-324"),
                   "--target-frr")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_bundle_config_nested_100000_deep_is_one_line(qa, tmp_path):
    root, _ = qa
    b = shutil.copytree(root / "model", tmp_path / "m")
    (b / "config.json").write_text(_nested(100_000))
    one_line_error(run("segment", root / "train", "--bundle", b, "--out", tmp_path / "s"), "nests its JSON too deeply")


def test_a_config_option_file_nested_100000_deep_is_one_line(qa, tmp_path):
    root, _ = qa
    (tmp_path / "fit.json").write_text(_nested(100_000))
    one_line_error(run("fit", "--config", tmp_path / "fit.json"), "nests too deeply")


def _relabel_first_f32(weights: Path, to: bytes = b"I32") -> None:
    data = bytearray(weights.read_bytes())
    header = int.from_bytes(data[:8], "little")
    at = data.index(b'"F32"', 8, 8 + header)
    data[at + 1:at + 4] = to
    weights.write_bytes(bytes(data))


def test_weights_relabelled_f32_to_i32_are_refused(qa, tmp_path):
    root, _ = qa
    b = shutil.copytree(root / "model", tmp_path / "m")
    _relabel_first_f32(b / "model.safetensors")
    one_line_error(run("segment", root / "train", "--bundle", b, "--out", tmp_path / "s"),
                   "stored torch.int32, model torch.float32")


def test_an_exported_folder_without_runtime_says_which_runtime(qa, tmp_path):
    root, _ = qa
    exp = shutil.copytree(root / "model", tmp_path / "exp")
    cfg = json.loads((exp / "config.json").read_text())
    cfg["export"] = {"format": "onnx", "file": "model.onnx", "anomaly_map": cfg["anomaly_map"]}
    (exp / "config.json").write_text(json.dumps(cfg))
    (exp / "model.safetensors").rename(exp / "model.onnx")
    one_line_error(run("inspect", root / "train", "--bundle", exp, "--out", tmp_path / "rep"), "--runtime onnx")


def test_a_fifo_input_is_named_as_one(qa, tmp_path):
    root, _ = qa
    os.mkfifo(tmp_path / "pipe.png")
    one_line_error(run("segment", tmp_path / "pipe.png", "--bundle", root / "model", "--out", tmp_path / "s"),
                   "is a FIFO")
