"""Batch inspection reports (inspect_ad/reports/batch.py): one row per input, resume, sorting, escaping;
never a silent pass."""
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import encoded, frames_file, noise, one_line_error, parts_copy, png_claiming, run_cli, write_png

from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.reports.batch import CSV, JSONL, gather, inspect_images, place, read_rows, report_lock
from inspect_ad.scoring.calibration import FAIL, INVALID


def test_report_has_one_row_per_input_bad_files_included(qa_tree, tmp_path):
    root, det = qa_tree
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
            assert (r["normalized_score"] > 1) == (r["decision"] == "FAIL")
            assert r["n_regions"] == len(r["boxes"])
            assert (r["n_regions"] > 0) == (r["decision"] == "FAIL")   # regions on the failures only
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count("<tr data-decision=") == 5 and "broken.png" in page
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["total"] == 5


def test_defects_fail_and_good_parts_pass(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False)
    decision = {os.path.basename(r["path"]): r["decision"] for r in read_rows(tmp_path / "rep" / JSONL)}
    assert decision["d0.png"] == decision["d1.png"] == "FAIL"


def test_copied_photos_travel_with_the_report(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False, copy_photos=True)
    rows = read_rows(tmp_path / "rep" / JSONL)
    copied = [r for r in rows if r.get("photo")]
    assert len(copied) == 5   # the unreadable file too: it is there, only not an image
    assert all((tmp_path / "rep" / r["photo"]).read_bytes() == Path(r["path"]).read_bytes() for r in copied)
    shutil.move(tmp_path / "rep", tmp_path / "moved")
    page = (tmp_path / "moved" / "index.html").read_text()
    assert all(f'href="{r["photo"]}"' in page for r in copied) and "../" not in page


def test_resume_adds_nothing_twice(qa_tree, tmp_path):
    root, det = qa_tree
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


def test_place_copies_without_clobbering(tmp_path):
    src = write_png(tmp_path / "a.png", np.ones((3, 3), np.uint8))
    other = write_png(tmp_path / "out" / "a.png", np.zeros((3, 3), np.uint8))
    first = place(src, tmp_path / "out", src.relative_to(tmp_path), copy=True)
    assert first.name == "a_1.png" and other.read_bytes() != first.read_bytes()
    assert place(src, tmp_path / "out", src.relative_to(tmp_path), copy=True) == first


def test_gather_is_recursive_with_relative_names(qa_tree):
    root, _ = qa_tree
    found = gather([root / "parts"])
    assert [str(rel) for _, rel in found] == ["broken.png", "good/g0.png", "good/g1.png", "line2/d0.png", "line2/d1.png"]


def test_a_list_file_names_files_and_folders_and_a_missing_entry_is_an_error_row(qa_tree, tmp_path):
    root, det = qa_tree
    listed = tmp_path / "tonight.txt"
    listed.write_text(f"# line 2\n{root / 'parts' / 'line2'}\n\n{root / 'parts' / 'good' / 'g0.png'}\n"
                      f"{tmp_path / 'gone.png'}\n")
    s = inspect_images(det, [listed], tmp_path / "rep", progress=False)
    rows = {Path(r["path"]).name: r for r in read_rows(tmp_path / "rep" / JSONL)}
    assert s.total == 4 and sorted(rows) == ["d0.png", "d1.png", "g0.png", "gone.png"]
    assert rows["gone.png"]["decision"] == "ERROR" and "gone.png" in rows["gone.png"]["error"]


def test_a_url_without_the_ray_engine_is_one_line(qa_tree, tmp_path):
    root, _ = qa_tree
    r = run_cli("inspect", (root / "parts").as_uri(), "--bundle", root / "model", "--out", tmp_path / "rep")
    one_line_error(r, "--engine ray")


def test_inspect_fails_every_part_of_a_nan_model(qa, tmp_path, monkeypatch):
    _, det = qa
    monkeypatch.setattr(Detector, "score_batch", lambda self, x: (np.full((len(x), 32, 32), np.nan, np.float32),
                                                              np.full(len(x), np.nan, np.float32)))
    s = inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    text = (tmp_path / "rep" / JSONL).read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert "NaN" not in text  # not JSON: other readers of the report would choke on it
    assert s.failed == 2 and all(r["decision"] == FAIL and "invalid score" in r["error"] for r in rows)


def test_black_frame_is_invalid_never_pass(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    write_png(parts / "black.png", np.zeros((40, 48), np.uint8))
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    row = next(r for r in read_rows(tmp_path / "rep" / JSONL) if r["path"].endswith("black.png"))
    assert row["decision"] == INVALID and "blank" in row["error"]
    assert s.invalid == 1 and s.exit_code() != 0


def test_bundle_and_report_files_honour_the_umask(qa, tmp_path):
    _, det = qa
    old = os.umask(0o022)
    try:
        det.save(tmp_path / "b")
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    finally:
        os.umask(old)
    for f in (tmp_path / "b" / "model.safetensors", tmp_path / "b" / "config.json", tmp_path / "rep" / CSV,
              tmp_path / "rep" / "index.html"):
        assert oct(f.stat().st_mode & 0o777) == oct(0o644), f


def test_csv_cells_cannot_start_a_formula(qa, tmp_path, monkeypatch):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    shutil.copy(parts / "g0.png", parts / "=1+2.png")
    monkeypatch.chdir(parts)
    inspect_images(det, ["=1+2.png"], tmp_path / "rep", progress=False)
    with open(tmp_path / "rep" / CSV) as f:
        cells = [row["path"] for row in csv.DictReader(f)]
    assert cells and all(not c.startswith(("=", "+", "-", "@")) for c in cells)


def test_sort_into_refuses_a_symlinked_folder(qa, tmp_path):
    _, det = qa
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "sorted").mkdir()
    (tmp_path / "sorted" / "pass").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InspectError, match="symbolic link"):
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", sort_into=tmp_path / "sorted",
                       progress=False)
    assert not any((tmp_path / "elsewhere").iterdir())


def test_a_second_run_on_a_report_in_use_is_refused(qa, tmp_path):
    _, det = qa
    (tmp_path / "rep").mkdir()
    with report_lock(tmp_path / "rep"), pytest.raises(InspectError, match="another inspect run"):
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", resume=True, progress=False)


def test_resume_with_the_inputs_spelled_otherwise_adds_no_rows(qa, tmp_path, monkeypatch):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    inspect_images(det, [parts.resolve()], tmp_path / "rep", progress=False)
    monkeypatch.chdir(tmp_path)
    s = inspect_images(det, ["parts", "./parts/g0.png"], tmp_path / "rep", resume=True, progress=False)
    assert s.new == 0 and s.total == 2


def test_the_same_file_given_twice_is_one_row(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    s = inspect_images(det, [parts / "g0.png", parts, parts / "g0.png"], tmp_path / "rep", progress=False)
    assert s.total == 2


def test_own_output_folders_inside_the_input_are_not_scanned(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    inspect_images(det, [parts], parts / "rep", sort_into=parts / "sorted", copy=True, progress=False)
    s = inspect_images(det, [parts], parts / "rep", resume=True, sort_into=parts / "sorted", copy=True,
                       progress=False)
    assert s.new == 0 and s.total == 2


def test_reader_processes_give_the_rows_of_the_single_process_run(qa_tree, tmp_path):
    root, det = qa_tree
    for workers in (0, 2):
        inspect_images(det, [root / "parts"], tmp_path / f"w{workers}", batch_size=2, progress=False, workers=workers)
    plain, parallel = (read_rows(tmp_path / f"w{w}" / JSONL) for w in (0, 2))
    assert [r["path"] for r in parallel] == [r["path"] for r in plain]   # the order too
    assert [(r["decision"], r["score"], r["error"]) for r in parallel] == [(r["decision"], r["score"], r["error"])
                                                                        for r in plain]


def test_a_failing_report_write_stops_the_run_with_its_error(qa_tree, tmp_path, monkeypatch):
    root, det = qa_tree
    monkeypatch.setattr("inspect_ad.reports.batch.write_thumbs",
                        lambda *a: (_ for _ in ()).throw(InspectError("disk full")))
    with pytest.raises(InspectError, match="disk full"):
        inspect_images(det, [root / "parts"], tmp_path / "rep", batch_size=2, progress=False)
    assert (tmp_path / "rep" / "summary.json").is_file()   # the rows written so far are summarised


def _rows_by_name(report):
    return {os.path.basename(r["path"]): r for r in read_rows(report / JSONL)}


def test_a_file_name_that_is_not_utf8_is_inspected_and_reported(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    odd = os.fsdecode(b"pi\xe8ce \xff.png")
    shutil.copy(parts / "g0.png", parts / odd)
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    assert s.total == 3 and s.errors == 0
    row = _rows_by_name(tmp_path / "rep")[odd]
    assert row["decision"] in ("PASS", "FAIL") and Path(row["path"]).exists()   # JSON keeps the name's bytes
    assert os.fsencode(odd) in (tmp_path / "rep" / CSV).read_bytes()
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "PNG", "WEBP"])
def test_a_multi_frame_file_is_an_error_row_never_a_pass(qa, tmp_path, fmt):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    (parts / f"multi.{fmt.lower()}").write_bytes(frames_file(fmt, 2, defect_on=1))
    row = _rows_by_name(tmp_path / "rep") if inspect_images(det, [parts], tmp_path / "rep", progress=False) else {}
    assert row[f"multi.{fmt.lower()}"]["decision"] == "ERROR" and "2 frames" in row[f"multi.{fmt.lower()}"]["error"]


@pytest.mark.parametrize("side", [30000, 100000])
def test_a_decompression_bomb_is_one_error_row(qa, tmp_path, side):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    (parts / "bomb.png").write_bytes(png_claiming(side, side))
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    row = _rows_by_name(tmp_path / "rep")["bomb.png"]
    assert s.total == 3 and row["decision"] == "ERROR" and "decompression bomb" in row["error"]


def test_a_scan_gives_a_row_or_a_count_to_every_file(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    (parts / "a.jpe").write_bytes(encoded(noise(np.random.default_rng(5)), ".jpg"))
    (parts / "b.gif").write_bytes(frames_file("GIF", 1))
    shutil.copy(parts / "g0.png", parts / ".hidden.png")
    (parts / "notes.txt").write_text("not an image")
    os.symlink(parts / "nowhere.png", parts / "dangling.png")
    os.symlink(parts / "loop.png", parts / "loop.png")
    (parts / "sub").mkdir()
    os.symlink(parts, parts / "sub" / "back")
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    rows = _rows_by_name(tmp_path / "rep")
    assert sorted(rows) == ["a.jpe", "b.gif", "dangling.png", "g0.png", "g1.png", "loop.png"]
    assert rows["dangling.png"]["decision"] == "ERROR" and "broken symbolic link" in rows["dangling.png"]["error"]
    assert rows["loop.png"]["decision"] == "ERROR" and "loop" in rows["loop.png"]["error"]
    assert rows["a.jpe"]["decision"] != "ERROR" and rows["b.gif"]["decision"] != "ERROR"
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s.skipped == summary["skipped"] == 3
    assert sorted(Path(p).name for p, _ in summary["skipped_files"]) == [".hidden.png", "back", "notes.txt"]


def test_an_unreadable_sub_folder_is_an_error_row(qa, tmp_path, monkeypatch):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    shutil.copytree(parts, parts / "locked")
    real = os.scandir

    def scandir(path="."):   # the tests run as root, whom permissions do not stop
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    s = inspect_images(det, [parts], tmp_path / "rep", progress=False)
    row = _rows_by_name(tmp_path / "rep")["locked"]
    assert row["decision"] == "ERROR" and "Permission denied" in row["error"] and s.exit_code() == 3


def test_a_report_folder_that_is_its_input_is_refused(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    with pytest.raises(InspectError, match="inside the output folder"):
        inspect_images(det, [parts], parts, progress=False)
    with pytest.raises(InspectError, match="inside the output folder"):
        inspect_images(det, [parts / "sub"], parts, progress=False)
    assert sorted(p.name for p in parts.iterdir()) == ["g0.png", "g1.png"]   # not even a lock written there


def test_an_empty_input_is_an_error_not_a_report_of_nothing(qa, tmp_path):
    _, det = qa
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InspectError, match="no images found in .*empty .1 files skipped, e.g. .*readme.txt"):
        inspect_images(det, [tmp_path / "empty"], tmp_path / "rep", progress=False)
    assert not (tmp_path / "rep").exists()


def test_a_latin1_list_file_names_its_files_by_their_bytes(qa, tmp_path):
    _, det = qa
    parts = parts_copy(qa, tmp_path)
    odd = os.fsdecode("pièce.png".encode("latin-1"))
    shutil.copy(parts / "g0.png", parts / odd)
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"# pi\xe8ces\n" + os.fsencode(str(parts / odd)) + b"\n" + os.fsencode(str(parts / "g1.png")))
    s = inspect_images(det, [listed], tmp_path / "rep", progress=False)
    assert s.total == 2 and s.errors == 0


def test_a_planted_lock_symlink_creates_nothing_outside(qa, tmp_path):
    _, det = qa
    (tmp_path / "rep").mkdir()
    os.symlink(tmp_path / "outside" / "created", tmp_path / "rep" / ".lock")
    (tmp_path / "outside").mkdir()
    with pytest.raises(InspectError, match=r"\.lock is a symbolic link"):
        inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    assert not (tmp_path / "outside" / "created").exists()


def test_a_killed_runs_temporary_files_are_removed(qa, tmp_path):
    _, det = qa
    inspect_images(det, [parts_copy(qa, tmp_path)], tmp_path / "rep", progress=False)
    for leftover in (tmp_path / "rep" / ".results.csv.abcd1234.tmp", tmp_path / "rep" / "thumbs" / ".x.jpg.k2j3h4g5.tmp"):
        leftover.write_bytes(b"half")
    (tmp_path / "rep" / ".mine.abcd1234.tmp").write_bytes(b"a user's file of the same shape, not ours")
    inspect_images(det, [tmp_path / "parts"], tmp_path / "rep", resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "rep").rglob(".*.tmp")) == [".mine.abcd1234.tmp"]


def test_photos_larger_and_smaller_than_the_calibration_images_get_the_same_regions(qa_tree, tmp_path):
    import cv2
    root, det = qa_tree
    part = cv2.imread(str(root / "parts/line2/d0.png"), cv2.IMREAD_GRAYSCALE)   # 40 × 48, as calibrated
    for name, f in (("small", 0.5), ("same", 1.0), ("large", 4.0)):
        write_png(tmp_path / "parts" / f"{name}.png", cv2.resize(part, None, fx=f, fy=f, interpolation=cv2.INTER_AREA
                                                                  if f < 1 else cv2.INTER_CUBIC))
    inspect_images(det, [tmp_path / "parts"], tmp_path / "rep", progress=False)
    rows = {Path(r["path"]).stem: r for r in read_rows(tmp_path / "rep" / JSONL)}
    assert {r["decision"] for r in rows.values()} == {FAIL}
    assert rows["small"]["n_regions"] == rows["same"]["n_regions"] == rows["large"]["n_regions"]
    fraction = {k: rows[k]["defect_area"] / (f * f * 40 * 48) for k, f in (("small", 0.5), ("same", 1.0), ("large", 4.0))}
    assert max(fraction.values()) < 1.3 * min(fraction.values())   # the same share of the photo at every size


def test_a_version_1_calibration_with_a_pixel_minimum_area_still_inspects(qa_tree, tmp_path):
    root, _ = qa_tree
    bundle = shutil.copytree(root / "model", tmp_path / "old")
    meta = json.loads((bundle / "config.json").read_text())
    cal = meta["calibration"]
    cal.pop("min_area_fraction")     # as version 1 wrote it: pixels of the calibration images only
    cal.update(version=1, min_area=5, normalized_score="u = s/(2t) for s <= t, 1 - t/(2s) above; t -> 0.5")
    (bundle / "config.json").write_text(json.dumps(meta))
    inspect_images(Detector.load(bundle, "cpu"), [root / "parts"], tmp_path / "rep", progress=False)
    rows = [r for r in read_rows(tmp_path / "rep" / JSONL) if r["decision"] != "ERROR"]
    assert {r["decision"] for r in rows} == {"PASS", FAIL}
    assert all((r["n_regions"] > 0) == (r["decision"] == FAIL) for r in rows)
    assert "5 px (a version-1 calibration" in (tmp_path / "rep" / "index.html").read_text()
