"""Issue 18 at the command line: never a traceback, never a lost file; every error is one line and exit
code 2 (inspect_ad/cli/image.py)."""
import json
import shutil

import numpy as np

from conftest import fast_fit_args, noise, parts_copy, write_png, one_line_error, run_cli

from inspect_ad import atomic

FAST = fast_fit_args(epochs=1)


run = run_cli


def test_fit_refuses_to_save_a_diverged_model(qa, tmp_path):
    root, _ = qa
    r = run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "--lr", "1e6")
    one_line_error(r, "diverged", "--lr")
    assert not (tmp_path / "m" / "config.json").exists()


def test_segment_without_calibration_still_flags_a_black_frame(qa, tmp_path):
    root, _ = qa
    shutil.copytree(root / "model", tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["calibration"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    write_png(tmp_path / "black.png", np.zeros((40, 48), np.uint8))
    r = run("segment", tmp_path / "black.png", "--model", tmp_path / "m", "--out", tmp_path / "seg", "--device", "cpu")
    assert r.exit_code == 0 and "INVALID input: blank" in r.output


def test_segment_never_overwrites_a_users_file(qa, tmp_path):
    root, _ = qa
    d = parts_copy(qa, tmp_path)
    (d / "g0_mask.png").write_bytes(b"the user's own mask")
    one_line_error(run("segment", d / "g0.png", "--model", root / "model", "--out", d, "--device", "cpu"),
                   "g0_mask.png", "--overwrite")
    assert (d / "g0_mask.png").read_bytes() == b"the user's own mask"


def test_fit_without_resume_keeps_an_unfinished_checkpoint(qa, tmp_path):
    root, _ = qa
    (tmp_path / "m.checkpoint").mkdir(parents=True)
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST),
                   "m.checkpoint", "--resume")
    assert (tmp_path / "m.checkpoint").is_dir()


def test_resume_refuses_a_checkpoint_from_other_data(qa, tmp_path):
    root, _ = qa
    other = tmp_path / "other"
    for i in range(4):
        write_png(other / f"{i}.png", noise(np.random.default_rng(i)))
    assert run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST).exit_code == 0
    one_line_error(run("fit", "--train-dir", other, "--out", tmp_path / "m", *FAST, "--resume"),
                   "cannot resume", "images")


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
    monkeypatch.setattr(atomic.tempfile, "mkdtemp", read_only)
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST), "Permission denied")


def test_segment_with_every_input_missing_exits_2(qa, tmp_path):
    root, _ = qa
    one_line_error(run("segment", tmp_path / "a.png", tmp_path / "b.png", "--model", root / "model",
                       "--out", tmp_path / "seg", "--device", "cpu"), "none of the 2 inputs")


def test_manifest_with_numbers_for_paths_is_one_line(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"train": [1, 2]}))
    one_line_error(run("fit", "--manifest", tmp_path / "m.json", "--out", tmp_path / "o", *FAST), "train entry 0")


def test_options_out_of_range_are_one_line_before_anything_is_written(qa, tmp_path):
    root, _ = qa
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "--epochs", "0"),
                   "--epochs")
    assert not (tmp_path / "m").exists()


def test_model_option_errors_are_one_line(qa, tmp_path):
    root, _ = qa
    one_line_error(run("fit", "--train-dir", root / "train", "--out", tmp_path / "m", *FAST, "-o", "grid_stride=3"),
                   "grid_stride")


def test_evaluate_on_a_folder_of_good_images_says_what_it_needs(tmp_path, mvtec_bundle):
    one_line_error(run("evaluate", "--bundle", mvtec_bundle[2], "--train-dir", tmp_path, "--out", tmp_path / "r"),
                   "--train-dir", "--data-root", "--manifest")
