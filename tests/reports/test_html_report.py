"""The batch report's page (inspect_ad/reports/html.py) and the pictures it shows: escaping, links to
the originals, counts per folder, the parts nearest the threshold, the legend."""
import re

import numpy as np

from inspect_ad.detectors.image import Prediction
from inspect_ad.reports.batch import (OVERLAY_SIDE, THUMB_SIDE, Pictures, inspect_images, read_rows, thumb_jpegs,
                                      write_thumbs)
from inspect_ad.reports.html import HEAT, IMAGE, NEAR, OVERLAY, file_url, near_threshold, render_html
from inspect_ad.reports.visualize import ColourScale
from inspect_ad.scoring.calibration import ERROR, FAIL, INVALID, PASS, Judgement

CAL = {"target_frr": 0.1, "n": 20, "image_threshold": 2.0, "pixel_threshold": 1.5, "min_area": 3,
       "min_area_fraction": 0.0123, "guarantee": "", "date": ""}
SCALE = ColourScale(2.0, "anomaly ÷ image threshold", ((1.0, "FAIL threshold"), (0.75, "outline")))


def page(rows, out, cal=CAL):
    return render_html(rows, cal, out, SCALE.to_dict())


def row(path, decision=PASS, u=0.3, folder="good", **extra):
    return {"path": str(path), "resolved": str(path), "score": u, "normalized_score": u, "decision": decision,
            "defect_area": 0, "n_regions": 0, "boxes": [], "error": None, "folder": folder, **extra}


def test_every_html_value_is_escaped(tmp_path):
    cal = {**CAL, "n": "<script>x</script>", "min_area": "<img src=x onerror=alert(1)>"}
    evil = "<img src=x onerror=alert(1)>"
    rows = [row(tmp_path / f"{evil}.png", FAIL, 0.9, folder=evil, error=evil, thumb="javascript:alert(1)//",
                photo="javascript:alert(2)"), row(tmp_path / "a.png", decision=evil)]
    html = page(rows, tmp_path / "rep", cal)
    assert "<script>x" not in html and "<img src=x" not in html
    assert 'href="javascript:' not in html and 'src="javascript:' not in html


def test_links_to_the_original_are_relative_and_percent_encoded(tmp_path):
    image = tmp_path / "data" / "a b#1?.png"
    assert file_url(row(image), tmp_path / "rep") == "../data/a%20b%231%3F.png"
    assert 'href="../data/a%20b%231%3F.png"' in page([row(image)], tmp_path / "rep")
    # a photo copied into the report (--copy-photos) is linked there
    assert file_url(row(image, photo="photos/000000_a b.png"), tmp_path / "rep") == "photos/000000_a%20b.png"


def test_a_failure_links_its_full_size_overlay_once_written(tmp_path):
    out = tmp_path / "rep"
    (out / "thumbs").mkdir(parents=True)
    fail = row(tmp_path / "d.png", FAIL, 0.8, thumb="thumbs/000000")
    assert f'href="thumbs/000000{HEAT}"' in page([fail], out)
    (out / f"thumbs/000000{OVERLAY}").write_bytes(b"jpg")
    html = page([fail], out)
    assert f'href="thumbs/000000{OVERLAY}"' in html and f'src="thumbs/000000{IMAGE}"' in html


def test_counts_per_folder_and_decision(tmp_path):
    rows = [row(tmp_path / "1.png", folder="good"), row(tmp_path / "2.png", FAIL, 0.7, folder="crack"),
            row(tmp_path / "3.png", FAIL, 0.9, folder="crack"), row(tmp_path / "4.png", ERROR, None, folder=".")]
    html = page(rows, tmp_path / "rep")

    def counts(folder):  # PASS, FAIL, INVALID, ERROR, total
        cells = re.search(rf"<tr><td>{re.escape(folder)}</td>(.*?)</tr>", html).group(1)
        return re.findall(r'<td class="n"[^>]*>(\d*)</td>', cells)
    assert counts("crack") == ["", "2", "", "", "2"] and counts(".") == ["", "", "", "1", "1"]


def test_near_threshold_takes_the_closest_on_either_side(tmp_path):
    us = [0.1, 0.9, 0.98, 1.04, 1.4, 1.98]
    rows = [row(tmp_path / f"{u}.png", FAIL if u > 1 else PASS, u) for u in us]
    rows += [row(tmp_path / "e.png", ERROR, None), row(tmp_path / "i.png", INVALID, 1.0),
             row(tmp_path / "nan.png", FAIL, None, error="invalid score (nan)")]
    assert [r["normalized_score"] for r in near_threshold(rows, 3)] == [1.04, 0.98, 0.9]


def test_the_legend_shows_the_colour_scale_and_says_what_outline_number_and_boxes_mean(tmp_path):
    html = page([row(tmp_path / "a.png")], tmp_path / "rep")
    legend = re.search(r"<div id='legend'>(.*?)</ul></div>", html).group(1)
    assert "linear-gradient" in legend and "1 FAIL threshold" in legend and "0.75 outline" in legend
    assert "normalised score" in legend and "White outline" in legend and "not a measured defect" in legend
    assert "[x0, y0, x1, y1]" in legend and "1.230% of the image" in legend


# --- the pictures batch.py writes for the page ---------------------------------------------------------

def judgement(decision, u, reason=None):
    return Judgement(decision, u, np.zeros((2, 2), bool), [], reason)


def test_failures_and_the_passes_nearest_so_far_get_pictures(tmp_path):
    # a resumed report already holds NEAR passes at 0.6
    pictures = Pictures([row(tmp_path / f"{i}.png", PASS, 0.6) for i in range(NEAR)])
    assert not pictures.wants(judgement(PASS, 0.5)) and pictures.wants(judgement(PASS, 0.8))
    assert pictures.wants(judgement(FAIL, 1.9)) and not pictures.wants(judgement(FAIL, float("nan"), "invalid score"))
    assert not pictures.wants(judgement(INVALID, float("nan"), "invalid input: blank")) and not pictures.wants(None)


def test_the_full_size_overlay_of_a_failure_is_bounded(tmp_path):
    import cv2
    image = np.full((1500, 2400, 1), 100, np.uint8)
    p = Prediction("big.png", 2.0, np.zeros((1500, 2400), np.float32), image)
    write_thumbs(tmp_path, "000000", p, Judgement(FAIL, 2.0, np.zeros((1500, 2400), bool), []), ColourScale(1.0))
    sides = {s: cv2.imread(str(tmp_path / f"000000{s}")).shape[:2] for s in (IMAGE, HEAT, OVERLAY)}
    assert sides == {IMAGE: (100, THUMB_SIDE), HEAT: (100, THUMB_SIDE), OVERLAY: (640, OVERLAY_SIDE)}


def test_a_report_records_each_input_folder(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False)
    folders = {r["path"].rsplit("/", 1)[-1]: r["folder"] for r in read_rows(tmp_path / "rep" / "results.jsonl")}
    assert folders == {"g0.png": "good", "g1.png": "good", "d0.png": "line2", "d1.png": "line2", "broken.png": "."}


def test_the_heatmap_thumbnail_is_the_map_alone_and_the_overlay_is_it_over_the_photo():
    import cv2
    image = np.zeros((64, 64, 1), np.uint8)
    image[::8] = 255                                    # stripes only the photo has
    amap = np.tile(np.linspace(0, 3, 64, dtype=np.float32), (64, 1))
    mask = np.zeros((64, 64), bool)
    mask[20:40, 40:60] = True
    jpegs = thumb_jpegs(Prediction("a.png", 3.0, amap, image), Judgement(FAIL, 1.5, mask, [[40, 20, 60, 40]]),
                        ColourScale(2.0))
    heat, overlay = (cv2.imdecode(np.frombuffer(jpegs[s], np.uint8), cv2.IMREAD_COLOR).astype(int)
                     for s in (HEAT, OVERLAY))
    assert np.abs(heat - overlay).mean() > 20                        # not the same picture
    assert np.abs(np.diff(heat[:, 5, 1])).max() < 40 < np.abs(np.diff(overlay[:, 5, 1])).max()   # stripes: overlay only
    assert (heat[22:38, 38:42].min(axis=2).max(axis=1) > 180).all()   # the region's outline, white
