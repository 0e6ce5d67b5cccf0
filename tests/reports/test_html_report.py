"""The batch report's page (inspect_ad/reports/html.py) and the pictures it shows: escaping, links to
the originals, counts per folder, the parts nearest the threshold."""
import re

import numpy as np

from inspect_ad.detectors.image import Prediction
from inspect_ad.reports.batch import OVERLAY_SIDE, THUMB_SIDE, Pictures, inspect_images, read_rows, write_thumbs
from inspect_ad.reports.html import HEAT, IMAGE, NEAR, OVERLAY, file_url, near_threshold, render_html
from inspect_ad.scoring.calibration import ERROR, FAIL, INVALID, PASS, Judgement

CAL = {"target_frr": 0.1, "n": 20, "image_threshold": 1.0, "pixel_threshold": 1.0, "min_area": 3,
       "guarantee": "", "date": ""}


def row(path, decision=PASS, u=0.3, folder="good", **extra):
    return {"path": str(path), "resolved": str(path), "score": u, "normalized_score": u, "decision": decision,
            "defect_area": 0, "n_regions": 0, "boxes": [], "error": None, "folder": folder, **extra}


def test_every_html_value_is_escaped(tmp_path):
    cal = {**CAL, "n": "<script>x</script>", "min_area": "<img src=x onerror=alert(1)>"}
    evil = "<img src=x onerror=alert(1)>"
    rows = [row(tmp_path / f"{evil}.png", FAIL, 0.9, folder=evil, error=evil, thumb="javascript:alert(1)//"),
            row(tmp_path / "a.png", decision=evil)]
    page = render_html(rows, cal, tmp_path / "rep")
    assert "<script>x" not in page and "<img src=x" not in page
    assert 'href="javascript:' not in page and 'src="javascript:' not in page


def test_links_to_the_original_are_relative_and_percent_encoded(tmp_path):
    image = tmp_path / "data" / "a b#1?.png"
    assert file_url(row(image), tmp_path / "rep") == "../data/a%20b%231%3F.png"
    page = render_html([row(image)], CAL, tmp_path / "rep")
    assert 'href="../data/a%20b%231%3F.png"' in page


def test_a_failure_links_its_full_size_overlay_once_written(tmp_path):
    out = tmp_path / "rep"
    (out / "thumbs").mkdir(parents=True)
    fail = row(tmp_path / "d.png", FAIL, 0.8, thumb="thumbs/000000")
    assert f'href="thumbs/000000{HEAT}"' in render_html([fail], CAL, out)
    (out / f"thumbs/000000{OVERLAY}").write_bytes(b"jpg")
    page = render_html([fail], CAL, out)
    assert f'href="thumbs/000000{OVERLAY}"' in page and f'src="thumbs/000000{IMAGE}"' in page


def test_counts_per_folder_and_decision(tmp_path):
    rows = [row(tmp_path / "1.png", folder="good"), row(tmp_path / "2.png", FAIL, 0.7, folder="crack"),
            row(tmp_path / "3.png", FAIL, 0.9, folder="crack"), row(tmp_path / "4.png", ERROR, None, folder=".")]
    page = render_html(rows, CAL, tmp_path / "rep")

    def counts(folder):  # PASS, FAIL, INVALID, ERROR, total
        cells = re.search(rf"<tr><td>{re.escape(folder)}</td>(.*?)</tr>", page).group(1)
        return re.findall(r'<td class="n">(\d*)</td>', cells)
    assert counts("crack") == ["", "2", "", "", "2"] and counts(".") == ["", "", "", "1", "1"]


def test_near_threshold_takes_the_closest_on_either_side(tmp_path):
    us = [0.1, 0.45, 0.49, 0.52, 0.7, 0.99]
    rows = [row(tmp_path / f"{u}.png", FAIL if u > 0.5 else PASS, u) for u in us]
    rows += [row(tmp_path / "e.png", ERROR, None), row(tmp_path / "i.png", INVALID, 0.5),
             row(tmp_path / "nan.png", FAIL, 1.0, error="invalid score (nan)")]
    assert [r["normalized_score"] for r in near_threshold(rows, 3)] == [0.52, 0.49, 0.45]


# --- the pictures batch.py writes for the page ---------------------------------------------------------

def judgement(decision, u, reason=None):
    return Judgement(decision, u, np.zeros((2, 2), bool), [], reason)


def test_failures_and_the_passes_nearest_so_far_get_pictures(tmp_path):
    # a resumed report already holds NEAR passes at 0.3
    pictures = Pictures([row(tmp_path / f"{i}.png", PASS, 0.3) for i in range(NEAR)])
    assert not pictures.wants(judgement(PASS, 0.2)) and pictures.wants(judgement(PASS, 0.4))
    assert pictures.wants(judgement(FAIL, 0.99)) and not pictures.wants(judgement(FAIL, 1.0, "invalid score (nan)"))
    assert not pictures.wants(judgement(INVALID, float("nan"), "invalid input: blank")) and not pictures.wants(None)


def test_the_full_size_overlay_of_a_failure_is_bounded(tmp_path):
    import cv2
    image = np.full((1500, 2400, 1), 100, np.uint8)
    p = Prediction("big.png", 2.0, np.zeros((1500, 2400), np.float32), image)
    write_thumbs(tmp_path, "000000", p, Judgement(FAIL, 0.8, np.zeros((1500, 2400), bool), []), 1.0)
    sides = {s: cv2.imread(str(tmp_path / f"000000{s}")).shape[:2] for s in (IMAGE, HEAT, OVERLAY)}
    assert sides == {IMAGE: (100, THUMB_SIDE), HEAT: (100, THUMB_SIDE), OVERLAY: (640, OVERLAY_SIDE)}


def test_a_report_records_each_input_folder(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False)
    folders = {r["path"].rsplit("/", 1)[-1]: r["folder"] for r in read_rows(tmp_path / "rep" / "results.jsonl")}
    assert folders == {"g0.png": "good", "g1.png": "good", "d0.png": "line2", "d1.png": "line2", "broken.png": "."}
