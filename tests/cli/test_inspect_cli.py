"""The inspect command (inspect_ad/cli/image.py) over a folder tree of parts."""
import numpy as np

from conftest import write_png, run_cli

from inspect_ad.reports.batch import JSONL, inspect_images, read_rows


def run(*args):
    return run_cli(*args, catch_exceptions=False)


def test_existing_report_needs_resume_or_overwrite(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts" / "good"], tmp_path / "rep", progress=False)
    r = run("inspect", root / "parts" / "good", "--model", root / "model", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "--resume" in r.output


def test_decisions_match_segment(qa_tree, tmp_path):
    root, _ = qa_tree
    r = run("inspect", root / "parts", "--model", root / "model", "--out", tmp_path / "rep", "--quiet")
    assert r.exit_code == 0, r.output
    seg = run("segment", root / "parts", "--model", root / "model", "--out", tmp_path / "seg")
    assert seg.exit_code == 0, seg.output
    printed = {line.split("\t")[0]: line.split("\t")[-1] for line in seg.output.splitlines() if "score=" in line}
    report = {r["path"]: r["decision"] for r in read_rows(tmp_path / "rep" / JSONL) if r["decision"] != "ERROR"}
    assert printed == report and len(report) == 4
    for stem in ("line2/d0", "good/g0"):
        out = tmp_path / "seg" / "parts"
        assert (out / f"{stem}_mask.png").is_file() and (out / f"{stem}_contour.png").is_file()


def test_fail_exit_code_and_sort_into_never_overwrites(qa_tree, tmp_path):
    root, _ = qa_tree
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


def test_uncalibrated_model_is_refused(qa_tree, tmp_path):
    root, _ = qa_tree
    r = run("inspect", root / "parts", "--model", root / "uncalibrated", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "inspect-ad calibrate" in r.output
