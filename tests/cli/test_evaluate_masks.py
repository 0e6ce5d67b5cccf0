"""``inspect-ad evaluate`` on test sets whose labels come from folder names only, and on a set
with one mask missing."""
import json
import shutil

from conftest import copy_bundle, one_line_error, run_cli


def evaluate(tiny_mvtec, tmp_path, mvtec_bundle):
    copy_bundle(mvtec_bundle[2], tmp_path / "m")
    return run_cli("evaluate", "--bundle", tmp_path / "m", "--data-root", tiny_mvtec, "--category", "widget",
                   "--out", tmp_path / "ev")


def test_without_masks_evaluate_reports_image_metrics_and_says_why_there_are_no_pixel_ones(
        tiny_mvtec, tmp_path, mvtec_bundle):
    shutil.rmtree(tiny_mvtec / "widget" / "ground_truth")
    r = evaluate(tiny_mvtec, tmp_path, mvtec_bundle)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("image_auroc", "image_f1max", "recall_at_1pct_frr"):
        assert 0 <= m[key] <= 1, key
    assert (m["pixel_auroc"], m["aupro"], m["pixel_f1max"]) == (None, None, None)
    assert [line for line in r.output.splitlines() if "need defect masks" in line] == [m["pixel_metrics_reason"]]
    assert (tmp_path / "ev" / "roc.png").is_file() and not (tmp_path / "ev" / "pro_curve.png").exists()


def test_a_mask_missing_from_a_set_with_masks_is_one_line_naming_it(tiny_mvtec, tmp_path, mvtec_bundle):
    (tiny_mvtec / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    one_line_error(evaluate(tiny_mvtec, tmp_path, mvtec_bundle), "001_mask.png", "does not exist")
