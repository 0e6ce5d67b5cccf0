"""The demo (inspect_ad/pipelines/demo.py) ends in PASS/FAIL: a calibrated model and an inspect report;
every picture and row it makes agrees with the decision; a rerun leaves nothing it no longer makes."""
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspect_ad.data.datasets import Sample
from inspect_ad.data.synthetic import DEFECT_TYPES, write_mvtec
from inspect_ad.errors import InspectError
from inspect_ad.reports.batch import JSONL, read_rows
from inspect_ad.pipelines.demo import decisions_by_label, one_per_defect, pass_fail_text, qa_lines, run_demo
from inspect_ad.reports.visualize import HEAT_LUT, PICTURE_INFO
from inspect_ad.scoring.calibration import FAIL, PASS

# Every defect kind once, and the fewest calibration images the default 1% target accepts.
TINY_DATA = dict(size=48, n_train=4, n_test_good=3, n_test_per_defect=1, n_calibration=99)


def _sample(label: str, i: int) -> Sample:
    return Sample(Path(f"/t/{label}/{i:03d}.png"), None if label == "good" else Path(f"/m/{label}/{i:03d}.png"), label)


def test_one_per_defect_takes_the_first_image_of_each_kind_and_no_good_one():
    samples = [_sample("good", 0), _sample("crack", 0), _sample("crack", 1), _sample("hole", 0), _sample("good", 1)]
    assert one_per_defect(samples) == [samples[1], samples[3]]


def test_decisions_are_counted_per_true_label_good_first_and_summed_up():
    labels = {Path("/t/crack/0.png"): "crack", Path("/t/crack/1.png"): "crack", Path("/t/good/0.png"): "good",
              Path("/t/good/1.png"): "good", Path("/t/hole/0.png"): "hole"}
    rows = [{"resolved": str(p), "decision": d}
            for p, d in zip(labels, ["FAIL", "PASS", "PASS", "FAIL", "INVALID"])]
    decisions = decisions_by_label(rows, labels)
    assert list(decisions) == ["good", "crack", "hole"]
    assert decisions == {"good": {"PASS": 1, "FAIL": 1}, "crack": {"PASS": 1, "FAIL": 1}, "hole": {"INVALID": 1}}
    assert pass_fail_text(decisions) == ("1 of 2 good images PASS, 1 of 3 defective FAIL "
                                         "(good 2: 1 PASS, 1 FAIL; crack 2: 1 PASS, 1 FAIL; hole 1: 1 INVALID)")


def test_a_tiny_demo_calibrates_the_first_model_and_inspects_every_test_image(tmp_path):
    r = run_demo(tmp_path, ["brick"], ["ae"], epochs=1, progress=False, backbone=None, device="cpu",
                 data_spec=TINY_DATA)
    qa = r["qa"]["brick"]
    assert qa["calibration"]["n"] == 99 and qa["calibration"]["target_frr"] == 0.01
    assert json.loads((tmp_path / "models/brick/ae/config.json").read_text())["calibration"]["n"] == 99
    n_test = TINY_DATA["n_test_good"] + len(DEFECT_TYPES)
    assert sum(n for c in qa["decisions"].values() for n in c.values()) == qa["passed"] + qa["failed"] == n_test
    assert set(qa["decisions"]) == {"good", *DEFECT_TYPES} and Path(qa["report"]).is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["qa"] == r["qa"]
    heatmaps = sorted(p.name for p in (tmp_path / "heatmaps/brick/ae").iterdir())
    assert heatmaps == sorted(f"{kind}_000_overlay.png" for kind in DEFECT_TYPES)
    assert qa_lines(r)[-1] == f"[brick] QA report: {tmp_path / 'inspect/brick/index.html'}"


def test_demo_data_without_calibration_images_is_refused_before_training(tmp_path):
    write_mvtec(tmp_path / "data", ["brick"], **{**TINY_DATA, "n_calibration": 0})
    with pytest.raises(InspectError, match=r"calibration is missing .*delete .*brick to have it written again"):
        run_demo(tmp_path, ["brick"], ["ae"], epochs=1, progress=False, backbone=None, device="cpu")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """A tiny demo of two pixel models (the first calibrated): its folder."""
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, ["brick"], ["ae", "memae"], epochs=1, progress=False, backbone=None, device="cpu",
             data_spec=TINY_DATA)
    return out


def heat_values(jpeg: Path, scale: dict) -> np.ndarray:
    """A heatmap thumbnail read back into scale units: each pixel's nearest colour of the table."""
    rgb = cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB).reshape(-1, 1, 3).astype(int)
    index = np.abs(rgb - HEAT_LUT[None].astype(int)).sum(axis=2).argmin(axis=1)
    return scale["vmin"] + index / 255 * (scale["vmax"] - scale["vmin"])


def test_no_picture_or_row_of_the_demo_shows_a_pass_above_the_threshold_or_with_regions(tiny_demo):
    report = tiny_demo / "inspect/brick"
    rows = read_rows(report / JSONL)
    scale = json.loads((report / "summary.json").read_text())["colour_scale"]
    assert {r["decision"] for r in rows} == {PASS, FAIL}
    for r in rows:   # the rows
        assert (r["normalized_score"] > 1) == (r["decision"] == FAIL)
        assert (r["decision"] == FAIL) or (r["n_regions"], r["defect_area"], r["boxes"]) == (0, 0, [])
    pictured = [r for r in rows if r.get("thumb") and r["decision"] == PASS]
    assert pictured
    for r in pictured:   # the thumbnails of the passes: nothing coloured above 1, no outline
        values = heat_values(report / f"{r['thumb']}_heat.jpg", scale)
        assert np.mean(values > 1.03) < 0.002, r["path"]
        overlay = cv2.imread(str(report / f"{r['thumb']}_overlay.jpg"))
        assert np.mean(overlay.min(axis=2) > 235) < 0.002   # no white outline
    page = (report / "index.html").read_text()   # the page's cards
    for decision, u in re.findall(r'<span class="(PASS|FAIL)">\1</span> ([\d.]+)', page):
        assert (float(u) > 1) == (decision == FAIL)
    pictures = list(tiny_demo.glob("heatmaps/brick/*/*.png")) + list(tiny_demo.glob("reports/brick/*/gallery.png"))
    assert len(pictures) == 2 * (len(DEFECT_TYPES) + 1)
    judged = 0
    for png in pictures:   # the demo's heatmaps and evaluate's galleries say what they show
        info = json.loads(Image.open(png).text[PICTURE_INFO])
        for shown in info if isinstance(info, list) else [info]:
            if shown.get("decision") == PASS:
                assert shown["normalized"] <= 1 and shown["max_shown"] <= 1 + 1e-6 and not shown["regions"]
            judged += "decision" in shown
    assert judged >= len(DEFECT_TYPES)   # the calibrated model's pictures carry decisions


def test_a_rerun_with_fewer_models_removes_what_it_no_longer_makes(tiny_demo, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(tiny_demo, out)
    assert (out / "reports/brick/roc_models.png").is_file() and (out / "heatmaps/brick/memae").is_dir()
    run_demo(out, ["brick"], ["ae"], epochs=1, progress=False, backbone=None, device="cpu", data_spec=TINY_DATA)
    for gone in ("models/brick/memae", "reports/brick/memae", "heatmaps/brick/memae", "reports/brick/roc_models.png"):
        assert not (out / gone).exists(), gone
    assert (out / "models/brick/ae/config.json").is_file() and (out / "heatmaps/brick/ae").is_dir()
    assert list(json.loads((out / "metrics.json").read_text())["categories"]["brick"]) == ["ae"]


def test_a_rerun_leaves_what_it_did_not_make(tmp_path):
    (tmp_path / "models/brick/mine").mkdir(parents=True)   # not recorded by an earlier demo: the user's
    run_demo(tmp_path, ["brick"], ["ae"], epochs=1, progress=False, backbone=None, device="cpu", data_spec=TINY_DATA)
    assert (tmp_path / "models/brick/mine").is_dir()
