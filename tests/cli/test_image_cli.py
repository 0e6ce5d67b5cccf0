"""The image commands (inspect_ad/cli/image.py): fit, segment, evaluate, and their one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_bundle, fast_fit_args, write_png, run_cli


FAST = fast_fit_args(epochs=2)


def run(*args):
    return run_cli(*args, catch_exceptions=False)


def fit_tiny(root, out):
    return run("fit", "--data-root", root, "--category", "widget", "--out", out, *FAST)


def test_fit_then_segment_writes_overlays_and_maps(tiny_mvtec, tmp_path):
    r = fit_tiny(tiny_mvtec, tmp_path / "m")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model"]["name"] == "mmae" and cfg["preprocessing"]["channels"] == 1
    test_dir = tiny_mvtec / "widget" / "test" / "scratch"
    single = tiny_mvtec / "widget" / "test" / "good" / "000.png"
    r = run("segment", single, test_dir, "--model", tmp_path / "m", "--out", tmp_path / "seg")
    assert r.exit_code == 0, r.output
    assert r.output.count("score=") == 3
    m = np.load(tmp_path / "seg" / "000_map.npy")
    assert m.shape == (40, 48)  # the input's own size
    # a file given by name keeps its stem, a folder's images their path from that folder's name
    assert (tmp_path / "seg" / "000_overlay.png").is_file() and (tmp_path / "seg" / "scratch" / "000_overlay.png").is_file()


def test_segment_keeps_the_folders_apart_and_quiet_prints_the_summary_only(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    test = tiny_mvtec / "widget" / "test"          # good/000.png and scratch/000.png: the same file name
    r = run("segment", test, "--bundle", tmp_path / "m", "--out", tmp_path / "seg", "--quiet")
    assert r.exit_code == 0, r.output
    for kind in ("good", "scratch"):
        assert (tmp_path / "seg" / "test" / kind / "000_overlay.png").is_file()
        assert (tmp_path / "seg" / "test" / kind / "000_map.npy").is_file()
    assert "score=" not in r.output and r.output.strip().splitlines()[0].startswith("4 images segmented")


def test_fit_on_manifest(tiny_mvtec, tmp_path):
    manifest = {"train": [f"widget/train/good/{i:03d}.png" for i in range(6)],
                "test": [{"image": "widget/test/good/000.png", "mask": None, "label": "good"}]}
    (tiny_mvtec / "m.json").write_text(json.dumps(manifest))
    r = run("fit", "--manifest", tiny_mvtec / "m.json", "--out", tmp_path / "m", *FAST, "--model", "ae")
    assert r.exit_code == 0, r.output
    assert "on 6 images" in r.output


def test_fit_refuses_to_overwrite_a_bundle(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    r = fit_tiny(tiny_mvtec, tmp_path / "m")
    assert r.exit_code == 2 and "--overwrite" in r.output


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_error_data_root_missing(tmp_path):
    one_line_error(run("fit", "--data-root", tmp_path / "nope", "--category", "x", "--out", tmp_path / "m"),
                   "data root", "nope", "does not exist")


def test_error_category_missing_lists_choices(tiny_mvtec, tmp_path):
    one_line_error(run("fit", "--data-root", tiny_mvtec, "--category", "bottle", "--out", tmp_path / "m"),
                   "'bottle' not found", "choose one of: widget")


def test_error_empty_train_folder(tmp_path):
    (tmp_path / "root" / "empty" / "train" / "good").mkdir(parents=True)
    one_line_error(run("fit", "--data-root", tmp_path / "root", "--category", "empty", "--out", tmp_path / "m"),
                   "no training images")


def test_error_corrupt_image_in_training_set(tiny_mvtec, tmp_path):
    (tiny_mvtec / "widget" / "train" / "good" / "bad.png").write_bytes(b"not a png at all")
    one_line_error(fit_tiny(tiny_mvtec, tmp_path / "m"), "bad.png", "corrupt")


def test_error_mask_size_mismatch(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    write_png(tiny_mvtec / "widget" / "ground_truth" / "scratch" / "000_mask.png", np.zeros((10, 10), np.uint8))
    r = run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
            "--out", tmp_path / "ev")
    one_line_error(r, "000_mask.png", "10×10", "48×40")


def test_error_model_is_not_a_bundle(tmp_path):
    img = write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    one_line_error(run("segment", img, "--model", tmp_path, "--out", tmp_path / "o"), "not a model bundle")


def test_segment_reports_a_corrupt_file_and_goes_on(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    good = tiny_mvtec / "widget" / "test" / "good" / "001.png"
    r = run("segment", bad, good, "--model", tmp_path / "m", "--out", tmp_path / "seg")
    assert r.exit_code == 0
    assert "broken.png\terror:" in r.output and r.output.count("score=") == 1


@pytest.mark.parametrize("flag", ["-o", "--set"])   # --set: the video commands' older name, taken by all
def test_unknown_model_option_lists_valid_ones(tiny_mvtec, tmp_path, flag):
    one_line_error(run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m",
                       flag, "num_scale=2"), "no option num_scale", "valid options")


def test_evaluate_writes_report(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    r = run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
            "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max", "per_label", "n_images", "seconds"):
        assert key in m
    assert m["n_images"] == 4 and set(m["per_label"]) == {"scratch"}
    for png in ("roc.png", "pro_curve.png", "gallery.png"):
        assert (tmp_path / "ev" / png).stat().st_size > 1000
    rows = (tmp_path / "ev" / "scores.csv").read_text().splitlines()
    assert rows[0] == "image,label,score" and len(rows) == 1 + m["n_images"]
    assert {r.split(",")[1] for r in rows[1:]} == {"good", "scratch"}


def test_evaluate_quiet_prints_the_metrics_and_the_report_only(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    r = run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
            "--out", tmp_path / "ev", "--quiet")
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 2 and "image_auroc=" in r.output and "report:" in r.output


def test_map_scales_are_saved_and_checked(tiny_mvtec, tmp_path):
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m", "--map-scales", "1,2",
            *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["anomaly_map"]["scales"] == [1, 2]
    r = run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
            "--out", tmp_path / "ev", "--map-scales", "1,4")
    assert r.exit_code == 0, r.output
    one_line_error(run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
                       "--out", tmp_path / "ev2", "--map-metric", "ssim"), "l2 map metric")


def test_standardize_score_is_saved_and_evaluate_can_switch_it(tiny_mvtec, tmp_path):
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m",
            "--standardize", "score", *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["anomaly_map"]["standardize"] == "score"
    reports = {}
    for mode in ("score", "map", "off"):   # the saved reference maps serve both z-scored modes
        r = run("evaluate", "--model", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
                "--out", tmp_path / mode, "--standardize", mode)
        assert r.exit_code == 0, r.output
        reports[mode] = json.loads((tmp_path / mode / "metrics.json").read_text())
    # "score" keeps the plain error heatmap, so its pixel metrics are those of "off"; its image
    # scores are the z-scored ones of "map"
    assert reports["score"]["image_auroc"] == reports["map"]["image_auroc"]
    assert reports["score"]["pixel_auroc"] == reports["off"]["pixel_auroc"]
    assert reports["score"]["aupro"] == reports["off"]["aupro"]


def test_bad_map_scales_give_one_line_error(tiny_mvtec, tmp_path):
    one_line_error(run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m",
                       "--map-scales", "1,two", *FAST), "1,two", "e.g. 1,2,4")


def test_repair_training_stretch_and_gradient_map_are_saved(tiny_mvtec, tmp_path):
    from inspect_ad.detectors.image import Detector
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m", *FAST, "--model", "ae",
            "--synthetic-defects", "0.5", "--gms-weight", "0.5", "--map-metric", "gms", "--normalization", "stretch")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["anomaly_map"]["metric"] == "gms" and cfg["preprocessing"]["normalization"] == "stretch"
    assert cfg["training"]["synthetic_defects"] == 0.5 and cfg["training"]["gms_weight"] == 0.5
    det = Detector.load(tmp_path / "m", "cpu")
    tc = det.train_config
    assert (tc.synthetic_defects, tc.gms_weight, det.preprocessing_.normalization) == (0.5, 0.5, "stretch")
    pred = next(det.predict_iter([tiny_mvtec / "widget" / "test" / "good" / "000.png"]))
    assert pred.map.shape == (40, 48) and np.isfinite(pred.map).all()


def only_error_line(result, *needles):
    """Issue 19's contract: exit code 2 and the whole output one 'error:' line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert any(n in lines[0] for n in needles), lines[0]


BAD_FIT_OPTIONS = {  # the extra arguments -> what the error line must name (any of them)
    "grid_stride": (["-o", "grid_stride=12"], ["grid_stride"]),
    "similarity": (["-o", "similarity=l2"], ["similarity"]),
    # "input size": the model's own check on the first batch, until its config checks the size
    "image size": (["--image-size", "100"], ["image_size", "--image-size", "input size"]),
    "memory_slots": (["-o", "memory_slots=-1"], ["memory_slots"]),
    "unknown option": (["-o", "nonsense=1"], ["nonsense"]),
}


@pytest.mark.parametrize("extra,needles", BAD_FIT_OPTIONS.values(), ids=BAD_FIT_OPTIONS.keys())
def test_bad_fit_option_is_one_line_naming_it(tiny_mvtec, tmp_path, extra, needles):
    only_error_line(run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m",
                        *FAST, *extra), *needles)
    assert not (tmp_path / "m" / "config.json").exists()


def test_memae_refuses_more_than_one_scale(tiny_mvtec, tmp_path):
    r = run("fit", "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "m",
            *fast_fit_args(epochs=2, model="memae"), "-o", "num_scales=3")
    only_error_line(r, "num_scales")


@pytest.mark.parametrize("command", ["calibrate", "segment"])
@pytest.mark.parametrize("flag", ["--bundle", "--model"])
def test_bundle_commands_refuse_a_folder_that_is_not_a_bundle(tmp_path, command, flag):
    img = write_png(tmp_path / "imgs" / "a.png", np.zeros((8, 8), np.uint8))
    args = {"calibrate": ["calibrate", flag, tmp_path / "imgs", "--good", img],
            "segment": ["segment", img, flag, tmp_path / "imgs", "--out", tmp_path / "o"]}[command]
    only_error_line(run(*args), "not a model bundle")


def test_bundle_option_is_named_bundle_and_fit_model_is_a_name():
    for command in ("calibrate", "segment", "inspect", "evaluate"):
        text = run(command, "--help").output
        assert "--bundle" in text and "--model" not in text, command  # --model: the old name, still accepted
    text = run("fit", "--help").output
    assert "--model" in text and "--bundle" not in text and "-o, --option KEY=VALUE" in text


def test_cli_fit_defaults_to_patchcore_on_pretrained_features_and_segments(tiny_mvtec, tmp_path):
    from click.testing import CliRunner

    from inspect_ad.cli.image import main
    out = tmp_path / "pc"
    r = CliRunner().invoke(main, ["fit", "--data-root", str(tiny_mvtec), "--category", "widget", "--out", str(out),
                                  "--image-size", "32", "--device", "cpu", "--quiet", "-o", "stages=[1,2]"])
    assert r.exit_code == 0, r.output
    assert "patchcore (efficientnet_lite0 features)" in r.output and "memory bank of" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--data-root", str(tiny_mvtec), "--category",
                                  "widget", "--out", str(tmp_path / "rep"), "--device", "cpu"])
    assert r.exit_code == 0 and "image_auroc=1.0000" in r.output, r.output


def test_cli_refuses_patchcore_without_a_backbone(tiny_mvtec, tmp_path):
    from click.testing import CliRunner

    from inspect_ad.cli.image import main
    r = CliRunner().invoke(main, ["fit", "--data-root", str(tiny_mvtec), "--category", "widget", "--out",
                                  str(tmp_path / "x"), "--backbone", "none"])
    assert r.exit_code == 2 and "works on pretrained features" in r.output


@pytest.mark.slow   # a whole demo (200 training, 100 calibration images) at one epoch: 10-15 s
def test_demo_runs_on_the_device_asked_for_and_ends_with_a_qa_report(tmp_path):
    r = run("demo", "--out", tmp_path / "d", "--models", "ae", "--backbone", "none", "--epochs", "1",
            "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["settings"]["device"].startswith("CPU (") and 0 <= m["ae"]["image_auroc"] <= 1
    assert (tmp_path / "d" / "reports" / "brick" / "ae").is_dir()
    assert m["qa"]["brick"]["calibration"]["n"] == 100
    report = tmp_path / "d" / "inspect" / "brick" / "index.html"
    assert f"[brick] QA report: {report}" in r.output and report.is_file()
    assert "of 40 good images PASS" in r.output and "of 56 defective FAIL" in r.output


# --- the headline usage, as typed: fit --category NAME, segment IMAGE -----------------------------

def test_fit_with_a_category_alone_reads_the_data_root_from_the_environment_and_picks_the_out(
        tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPECT_AD_DATA", str(tiny_mvtec))
    r = run("fit", "--category", "widget", *FAST)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "models/widget/config.json").is_file() and "bundle: models/widget" in r.output
    # the last fitted bundle is segment's default, and its --out has one too
    image = tiny_mvtec / "widget/test/good/000.png"
    r = run_cli("segment", image)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "segmented/000_overlay.png").is_file()
    assert "using the last fitted bundle" in r.stderr and str(tmp_path / "models/widget") in r.stderr


def test_a_category_without_a_data_root_says_where_to_give_it(tmp_path):
    one_line_error(run_cli("fit", "--category", "bottle"), "--category bottle", "--data-root DIR", "INSPECT_AD_DATA")


def test_segment_without_a_bundle_and_nothing_fitted_says_what_to_do(tiny_mvtec, tmp_path):
    one_line_error(run_cli("segment", tiny_mvtec / "widget/test/good/000.png", "--out", tmp_path / "s"),
                   "no --bundle given", "inspect-ad fit")


def test_the_default_out_names_the_product_not_the_good_folder():
    from inspect_ad.cli.image import default_out
    assert default_out(None, None, "demo/data/brick/train/good") == Path("models/brick")
    assert default_out("bottle", None, None) == Path("models/bottle")
    assert default_out(None, "runs/mtd.json", None) == Path("models/mtd")


def test_fit_says_where_the_images_came_from_and_counts_epochs_in_words(tiny_mvtec, tmp_path):
    r = run("fit", "--train-dir", tiny_mvtec / "widget/train/good", "--out", tmp_path / "m",
            *fast_fit_args(epochs=1))
    assert r.exit_code == 0, r.output
    assert f"on 6 images from {tiny_mvtec / 'widget/train/good'} (input " in r.output and "for 1 epoch (" in r.output
