"""Calibration from the command line: fit --calibration-split and calibrate (inspect_ad/cli/image.py)."""
import json


from conftest import copy_bundle, fast_fit_args, run_cli


FAST = fast_fit_args(epochs=1)


def run(*args):
    return run_cli(*args, catch_exceptions=False)


def test_fit_with_calibration_split_then_recalibrate_keeps_weights(tiny_mvtec, tmp_path):
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m", *FAST,
            "--calibration-split", "0.5", "--target-frr", "0.5")
    assert r.exit_code == 0, r.output
    assert "on 3 images" in r.output and "calibrated on 3 good images" in r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["calibration"]["n"] == 3 and cfg["calibration"]["target_frr"] == 0.5
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    r = run("calibrate", "--model", tmp_path / "m", "--good", tiny_mvtec / "widget" / "train" / "good",
            "--target-frr", "0.2", "--min-area", "3", "--quiet")
    assert r.exit_code == 0, r.output
    assert "guarantee: threshold = score ranked 6 of 6" in r.output
    cal = json.loads((tmp_path / "m" / "config.json").read_text())["calibration"]
    assert cal["n"] == 6 and cal["min_area"] == 3 and cal["min_area_source"] == "user"
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == weights


def test_calibrate_refuses_too_few_images(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    r = run("calibrate", "--model", tmp_path / "m", "--good", tiny_mvtec / "widget" / "test" / "good")
    assert r.exit_code == 2 and "has 2 good image(s)" in r.output and "at least 99" in r.output


def test_fit_refuses_a_too_small_split_before_training(tiny_mvtec, tmp_path):
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m", *FAST,
            "--calibration-split", "0.5")
    assert r.exit_code == 2 and "at least 99" in r.output
    assert not (tmp_path / "m" / "config.json").exists()
