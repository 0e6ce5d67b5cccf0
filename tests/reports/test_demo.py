"""The demo (inspect_ad/reports/demo.py) ends in PASS/FAIL: a calibrated model and an inspect report."""
import json
from pathlib import Path

import pytest

from inspect_ad.data.datasets import Sample
from inspect_ad.data.synthetic import DEFECT_TYPES, write_mvtec
from inspect_ad.errors import InspectError
from inspect_ad.reports.demo import decisions_by_label, one_per_defect, pass_fail_text, qa_lines, run_demo

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
