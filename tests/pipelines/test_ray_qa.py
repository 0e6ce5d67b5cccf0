"""Batch QA on Ray (inspect_ad/reports/ray_qa.py): the local engine's rows from Ray workers, a
killed worker's chunks run again, bad files and resumed reports. One local Ray for the module."""
import csv
import os
import shutil
import signal
import sys
from functools import partial

import pytest
import torch

from conftest import frames_file, noise_after_qa_training, noise, one_line_error, png_claiming, run_cli, write_png

from inspect_ad.detectors.image import Detector
from inspect_ad.pipelines import ray_qa
from inspect_ad.reports import batch
from inspect_ad.reports.batch import COLUMNS, CSV, JSONL, inspect_images, read_rows
from inspect_ad.reports.html import NEAR, near_threshold
from inspect_ad.pipelines.ray_qa import inspect_images_ray

N_IMAGES, BATCH = 200, 8


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'inspect-ad[ray]'")
    ray_qa.init_ray(ray, None, num_cpus=4)   # the shared pool's 2 workers, and 2 for the command's
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(ray_local, qa_bundles):
    """Two workers with the tiny bundle, one thread each, shared by the module's runs."""
    with ray_qa.ScorerPool(ray_local, partial(Detector.load, qa_bundles / "model", "cpu"), 2, 1) as running:
        yield running


@pytest.fixture(scope="module")
def many(qa_bundles, tmp_path_factory):
    """200 tiny parts in two folders, one in ten with a bright square, one corrupt file; the
    calibrated tiny bundle; and the local engine's rows for them."""
    root = tmp_path_factory.mktemp("ray_parts")
    rng = noise_after_qa_training()
    for i in range(N_IMAGES - 1):
        img = noise(rng)
        if i % 10 == 0:
            img[10:22, 12:26] = 250
        write_png(root / "parts" / ("line" if i % 2 else "good") / f"{i:03d}.png", img)
    (root / "parts" / "broken.png").write_bytes(b"\x89PNG not really")
    model = qa_bundles / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a Ray worker's, of two on two CPUs: torch's sums round by thread count
    try:
        inspect_images(Detector.load(model, "cpu"), [root / "parts"], root / "local", batch_size=BATCH,
                       progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, model, read_rows(root / "local" / JSONL)


def cells(rows, keys=(*COLUMNS, "folder")) -> dict:
    return {r["resolved"]: tuple(r[k] for k in keys) for r in rows}


def test_two_ray_workers_give_the_rows_of_the_local_engine(pool, many, tmp_path):
    root, model, local = many
    s = inspect_images_ray(partial(Detector.load, model, "cpu"), [root / "parts"], tmp_path / "rep",
                           batch_size=BATCH, progress=False, pool=pool)
    rows = read_rows(tmp_path / "rep" / JSONL)
    assert s.total == s.new == len(rows) == N_IMAGES and s.failed > 0
    assert cells(rows) == cells(local)
    paths = [r["path"] for r in rows]
    assert paths == sorted(paths)
    with open(tmp_path / "rep" / CSV, newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == paths
    bad = next(r for r in rows if r["path"].endswith("broken.png"))
    assert bad["decision"] == "ERROR" and "corrupt" in bad["error"]
    for r in rows:
        if r["decision"] == "FAIL":
            assert (tmp_path / "rep" / f"{r['thumb']}_overlay.jpg").stat().st_size > 100
    assert (tmp_path / "rep" / "index.html").read_text().count("<tr data-decision=") == N_IMAGES


def test_the_passes_nearest_the_threshold_get_pictures_as_in_the_local_engine(pool, many, tmp_path):
    root, model, local = many
    inspect_images_ray(partial(Detector.load, model, "cpu"), [root / "parts"], tmp_path / "rep", batch_size=BATCH,
                       progress=False, pool=pool)
    rows = read_rows(tmp_path / "rep" / JSONL)
    nearest = {r["path"] for r in near_threshold(local, NEAR)}
    assert nearest <= {r["path"] for r in rows if r.get("thumb")}
    assert all((tmp_path / "rep" / f"{r['thumb']}_heat.jpg").is_file() for r in rows if r.get("thumb"))


def test_a_killed_worker_loses_no_row_and_duplicates_none(pool, many, tmp_path, monkeypatch):
    root, model, local = many
    victim = pool.pids()[0]
    add = batch.Report.add

    def add_then_kill(report, row, *args):
        add(report, row, *args)
        if len(report.rows) == 40:   # a fifth through: each worker has chunks queued
            os.kill(victim, signal.SIGKILL)

    monkeypatch.setattr(batch.Report, "add", add_then_kill)
    inspect_images_ray(partial(Detector.load, model, "cpu"), [root / "parts"], tmp_path / "rep", batch_size=BATCH,
                       progress=False, pool=pool)
    rows = read_rows(tmp_path / "rep" / JSONL)
    assert victim not in pool.pids()   # restarted, and its chunks run again
    assert len(rows) == len({r["resolved"] for r in rows}) == N_IMAGES
    assert cells(rows) == cells(local)


def test_resume_skips_the_rows_already_in_the_report(pool, many, tmp_path):
    root, model, local = many
    first = sorted((root / "parts" / "good").glob("*.png"))[:30]
    torch.set_num_threads(1)   # as the local rows were made
    inspect_images(Detector.load(model, "cpu"), first, tmp_path / "rep", batch_size=BATCH, progress=False)
    jsonl = tmp_path / "rep" / JSONL
    jsonl.write_text(jsonl.read_text()[:-20])   # interrupted: the last row half written
    s = inspect_images_ray(partial(Detector.load, model, "cpu"), [root / "parts"], tmp_path / "rep",
                           batch_size=BATCH, resume=True, progress=False, pool=pool)
    rows = read_rows(jsonl)
    assert s.new == N_IMAGES - 29 and len(rows) == len({r["resolved"] for r in rows}) == N_IMAGES
    assert cells(rows, COLUMNS) == cells(local, COLUMNS)


def test_list_files_take_paths_and_urls_and_a_missing_entry_is_an_error_row(pool, many, tmp_path):
    pytest.importorskip("pyarrow", reason="URL inputs need pyarrow: pip install 'inspect-ad[ray]'")
    root, model, local = many
    image = sorted((root / "parts" / "line").glob("*.png"))[0]
    listed = tmp_path / "list.txt"
    listed.write_text(f"# tonight's parts\n{image}\n\n{tmp_path / 'gone.png'}\n{image.parent.as_uri()}/\n")
    inspect_images_ray(partial(Detector.load, model, "cpu"), [listed], tmp_path / "rep", progress=False, pool=pool)
    rows = {r["path"]: r for r in read_rows(tmp_path / "rep" / JSONL)}
    assert len(rows) == 2 + len(list(image.parent.glob("*.png")))
    gone = rows[str(tmp_path / "gone.png")]
    assert gone["decision"] == "ERROR" and "does not exist" in gone["error"]
    by_url = rows[image.as_uri()]
    # read alike; in batches made up otherwise than the local run's, so equal to float rounding
    assert by_url["score"] == pytest.approx(next(r["score"] for r in local if r["path"] == str(image)), rel=1e-6)
    assert by_url["decision"] == rows[str(image)]["decision"]
    assert by_url["folder"] == "." and by_url["resolved"] == image.as_uri()


def test_the_command_runs_onnx_in_ray_workers(ray_local, qa_tree, tmp_path):
    pytest.importorskip("onnxruntime")
    root, det = qa_tree
    exported = det.export(tmp_path / "onnx", "onnx")
    inspect_images(Detector.load(exported, "cpu", "onnx"), [root / "parts"], tmp_path / "local", progress=False)
    r = run_cli("inspect", root / "parts", "--bundle", exported, "--runtime", "onnx", "--out", tmp_path / "rep",
                "--engine", "ray", "--workers", 1, "--quiet", catch_exceptions=False)
    assert r.exit_code == 0 and "5 images (5 new)" in r.output
    assert cells(read_rows(tmp_path / "rep" / JSONL)) == cells(read_rows(tmp_path / "local" / JSONL))


def test_more_workers_than_free_cpus_is_one_line(pool, qa_tree, tmp_path):   # the pool holds 2 of 4
    root, _ = qa_tree
    r = run_cli("inspect", root / "parts", "--bundle", root / "model", "--out", tmp_path / "rep", "--engine", "ray",
                "--workers", 3)
    one_line_error(r, "--workers 3", "CPUs free (of 4)")
    assert not (tmp_path / "rep").exists()


def test_without_ray_the_error_names_the_install(qa_tree, tmp_path, monkeypatch):
    root, _ = qa_tree
    monkeypatch.setitem(sys.modules, "ray", None)
    r = run_cli("inspect", root / "parts", "--bundle", root / "model", "--out", tmp_path / "rep", "--engine", "ray")
    one_line_error(r, "pip install 'inspect-ad[ray]'")


def test_an_address_without_the_ray_engine_is_one_line(qa_tree, tmp_path):
    root, _ = qa_tree
    r = run_cli("inspect", root / "parts", "--bundle", root / "model", "--out", tmp_path / "rep", "--address", "auto")
    one_line_error(r, "--engine ray")


def test_ray_workers_read_non_utf8_names_and_refuse_bombs_and_animations(pool, qa, tmp_path):
    root, _ = qa
    parts = tmp_path / "parts"
    parts.mkdir()
    odd = os.fsdecode(b"pi\xe8ce \xff.png")
    shutil.copy(root / "train" / "5.png", parts / odd)
    (parts / "bomb.png").write_bytes(png_claiming(30000, 30000))
    (parts / "anim.gif").write_bytes(frames_file("GIF", 2, defect_on=1))
    s = inspect_images_ray(partial(Detector.load, root / "model", "cpu"), [parts], tmp_path / "rep",
                           progress=False, pool=pool)
    rows = {os.path.basename(r["path"]): r for r in read_rows(tmp_path / "rep" / JSONL)}
    assert s.total == 3 and rows[odd]["decision"] in ("PASS", "FAIL")
    assert rows["bomb.png"]["decision"] == rows["anim.gif"]["decision"] == "ERROR"
    assert "decompression bomb" in rows["bomb.png"]["error"] and "2 frames" in rows["anim.gif"]["error"]
