import csv
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_OPTIONS, write_png
from inspect_ad.reports.batch import CSV, JSONL, gather, inspect_images, place, read_rows
from inspect_ad.cli.image import main
from inspect_ad.detectors.image import Detector
from inspect_ad.engine.loop import TrainConfig


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    """A calibrated tiny model, and a folder tree of 4 test images (2 good, 2 with a bright
    square) plus one corrupt file."""
    root = tmp_path_factory.mktemp("qa")
    rng = np.random.default_rng(0)
    noise = lambda: rng.integers(90, 110, (40, 48), dtype=np.uint8)  # noqa: E731
    train = [write_png(root / "train" / f"{i}.png", noise()) for i in range(10)]
    for i in range(2):
        write_png(root / "parts" / "good" / f"g{i}.png", noise())
        img = noise()
        img[10:22, 12:26] = 250
        write_png(root / "parts" / "line2" / f"d{i}.png", img)
    (root / "parts" / "broken.png").write_bytes(b"\x89PNG not really")
    opts = {k: int(v) for k, v in (o.split("=") for o in TINY_OPTIONS[1::2])}
    det = Detector("mmae", 32, train_config=TrainConfig(epochs=2, batch_size=4, seed=0, device="cpu"),
                   model_options=opts)
    det.fit(train[:5], out=root / "model", progress=False)
    shutil.copytree(root / "model", root / "uncalibrated")
    det.calibrate(train[5:], target_frr=0.2, progress=False)   # n = 5: the largest score
    det.save_calibration(root / "model")
    return root, Detector.load(root / "model", "cpu")


def test_report_has_one_row_per_input_bad_files_included(qa, tmp_path):
    root, det = qa
    s = inspect_images(det, [root / "parts"], tmp_path / "rep", batch_size=2, progress=False)
    rows = read_rows(tmp_path / "rep" / JSONL)
    assert s.total == len(rows) == 5 and s.new == 5
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["broken.png", "d0.png", "d1.png", "g0.png", "g1.png"]
    bad = next(r for r in rows if r["path"].endswith("broken.png"))
    assert bad["decision"] == "ERROR" and "corrupt" in bad["error"] and s.errors == 1
    with open(tmp_path / "rep" / CSV, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert all(json.loads(t["boxes"]) == r["boxes"] for t, r in zip(table, rows))
    for r in rows:
        if r["decision"] == "FAIL":
            assert (tmp_path / "rep" / f"{r['thumb']}_heat.jpg").stat().st_size > 100
        if r["decision"] != "ERROR":
            assert (r["normalized_score"] > 0.5) == (r["decision"] == "FAIL")
            assert r["n_regions"] == len(r["boxes"])
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<table>" in page and page.count("<tr>") == 6 and "broken.png" in page
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["total"] == 5


def test_defects_fail_and_good_parts_pass(qa, tmp_path):
    root, det = qa
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False)
    decision = {os.path.basename(r["path"]): r["decision"] for r in read_rows(tmp_path / "rep" / JSONL)}
    assert decision["d0.png"] == decision["d1.png"] == "FAIL"


def test_resume_adds_nothing_twice(qa, tmp_path):
    root, det = qa
    parts = tmp_path / "parts"
    parts.mkdir()
    for p in sorted((root / "parts").rglob("*.png"))[:3]:
        (parts / p.name).write_bytes(p.read_bytes())
    inspect_images(det, [parts], tmp_path / "rep", progress=False)
    # an interrupted run: a half-written last line, then two more images arrive
    jsonl = tmp_path / "rep" / JSONL
    jsonl.write_text(jsonl.read_text()[:-20])
    for p in sorted((root / "parts").rglob("*.png"))[3:]:
        (parts / p.name).write_bytes(p.read_bytes())
    s = inspect_images(det, [parts], tmp_path / "rep", resume=True, progress=False)
    rows = read_rows(jsonl)
    paths = [r["path"] for r in rows]
    assert s.new == 3 and len(paths) == len(set(paths)) == 5
    with open(tmp_path / "rep" / CSV, newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == paths
    assert inspect_images(det, [parts], tmp_path / "rep", resume=True, progress=False).new == 0


def test_existing_report_needs_resume_or_overwrite(qa, tmp_path):
    root, det = qa
    inspect_images(det, [root / "parts" / "good"], tmp_path / "rep", progress=False)
    r = run("inspect", root / "parts" / "good", "--model", root / "model", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "--resume" in r.output


def test_decisions_match_segment(qa, tmp_path):
    root, _ = qa
    r = run("inspect", root / "parts", "--model", root / "model", "--out", tmp_path / "rep", "--quiet")
    assert r.exit_code == 0, r.output
    seg = run("segment", root / "parts", "--model", root / "model", "--out", tmp_path / "seg")
    assert seg.exit_code == 0, seg.output
    printed = {line.split("\t")[0]: line.split("\t")[-1] for line in seg.output.splitlines() if "score=" in line}
    report = {r["path"]: r["decision"] for r in read_rows(tmp_path / "rep" / JSONL) if r["decision"] != "ERROR"}
    assert printed == report and len(report) == 4
    for stem in ("d0", "g0"):
        assert (tmp_path / "seg" / f"{stem}_mask.png").is_file() and (tmp_path / "seg" / f"{stem}_contour.png").is_file()


def test_fail_exit_code_and_sort_into_never_overwrites(qa, tmp_path):
    root, _ = qa
    sort = tmp_path / "sorted"
    write_png(sort / "fail" / "line2" / "d0.png", np.zeros((4, 4), np.uint8))   # a user's own file
    user_bytes = (sort / "fail" / "line2" / "d0.png").read_bytes()
    args = ["inspect", root / "parts", "--model", root / "model", "--out", tmp_path / "rep", "--quiet",
            "--sort-into", sort, "--fail-exit-code"]
    r = run(*args)
    assert r.exit_code == 1, r.output   # the two defective parts fail
    assert (sort / "fail" / "line2" / "d0.png").read_bytes() == user_bytes
    assert (sort / "fail" / "line2" / "d0_1.png").resolve() == (root / "parts" / "line2" / "d0.png").resolve()
    assert (sort / "error" / "broken.png").is_symlink()
    assert len(list((sort / "pass").rglob("*.png"))) + len(list((sort / "fail").rglob("*.png"))) == 5
    # resuming re-links nothing
    assert run(*args, "--resume").exit_code == 1
    assert len(list(sort.rglob("*.png"))) == 6


def test_place_copies_without_clobbering(tmp_path):
    src = write_png(tmp_path / "a.png", np.ones((3, 3), np.uint8))
    other = write_png(tmp_path / "out" / "a.png", np.zeros((3, 3), np.uint8))
    first = place(src, tmp_path / "out", src.relative_to(tmp_path), copy=True)
    assert first.name == "a_1.png" and other.read_bytes() != first.read_bytes()
    assert place(src, tmp_path / "out", src.relative_to(tmp_path), copy=True) == first


def test_uncalibrated_model_is_refused(qa, tmp_path):
    root, _ = qa
    r = run("inspect", root / "parts", "--model", root / "uncalibrated", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "inspect-ad calibrate" in r.output


def test_gather_is_recursive_with_relative_names(qa):
    root, _ = qa
    found = gather([root / "parts"])
    assert [str(rel) for _, rel in found] == ["broken.png", "good/g0.png", "good/g1.png", "line2/d0.png", "line2/d1.png"]
