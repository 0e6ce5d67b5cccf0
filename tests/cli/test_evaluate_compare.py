"""``inspect-ad evaluate`` with several bundles: a report each and their curves drawn together."""
import json

from conftest import copy_bundle, one_line_error, run_cli


def test_several_bundles_get_a_report_each_and_one_comparison(tiny_mvtec, tmp_path, mvtec_bundle):
    for name in ("first", "second"):
        copy_bundle(mvtec_bundle[2], tmp_path / name)
    r = run_cli("evaluate", "--bundle", tmp_path / "first", "--bundle", tmp_path / "second", "--data-root",
                tiny_mvtec, "--category", "widget", "--out", tmp_path / "ev", catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for name in ("first", "second"):
        assert json.loads((tmp_path / "ev" / name / "metrics.json").read_text())["n_images"] == 4
    assert {p.name for p in (tmp_path / "ev").glob("*.png")} == {"roc_models.png", "pro_models.png"}


def test_bundles_whose_folders_share_a_name_are_refused(tiny_mvtec, tmp_path, mvtec_bundle):
    for parent in ("a", "b"):
        copy_bundle(mvtec_bundle[2], tmp_path / parent / "m")
    one_line_error(run_cli("evaluate", "--bundle", tmp_path / "a" / "m", "--bundle", tmp_path / "b" / "m",
                           "--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "ev"),
                   "must differ", str(tmp_path / "a" / "m"))
