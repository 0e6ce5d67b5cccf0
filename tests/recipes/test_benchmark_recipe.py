"""recipes/benchmark.py runs end to end on a tiny MVTec-layout set given as NAME=PATH."""
import json
import sys

import numpy as np
from conftest import RECIPES, load_recipe, write_png


def tiny_category(root):
    """root/part: 8 good training images (32 px), 2 good and 2 defective test images with masks."""
    rng = np.random.default_rng(0)
    for i in range(8):
        write_png(root / "train" / "good" / f"{i:03d}.png", rng.integers(90, 110, (32, 32), dtype=np.uint8))
    for i in range(2):
        write_png(root / "test" / "good" / f"{i:03d}.png", rng.integers(90, 110, (32, 32), dtype=np.uint8))
        img, mask = rng.integers(90, 110, (32, 32), dtype=np.uint8), np.zeros((32, 32), np.uint8)
        mask[8:16, 8:16] = 255
        img[mask > 0] = 250
        write_png(root / "test" / "dent" / f"{i:03d}.png", img)
        write_png(root / "ground_truth" / "dent" / f"{i:03d}_mask.png", mask)
    return root


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_benchmark_writes_a_row_per_set_and_the_worst_case(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(RECIPES))   # the recipe imports results_file beside it
    results = tmp_path / "results" / "benchmark.md"
    argv = ["--sets", f"part={tiny_category(tmp_path / 'part')}", "--fit-arg=--image-size 32 --device cpu",
            "--device", "cpu", "--work", str(tmp_path / "work"), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", [str(RECIPES / "benchmark.py"), *argv])   # the command it records
    assert load_recipe("benchmark").main(argv) == 0
    lines = results.read_text().splitlines()
    assert any(line.startswith("- command: `python") and "--sets part=" in line for line in lines[:4])
    rows = [cells(line) for line in lines if line.startswith(("| part |", "| **worst case** |"))]
    assert [r[0] for r in rows] == ["part", "**worst case**"]
    for row in rows:
        accuracy = [float(c.split()[0].strip("*")) for c in row[5:9]]   # image/pixel AUROC, AUPRO, recall
        assert all(0 <= v <= 1 for v in accuracy), row
        assert float(row[10].split()[0].strip("*")) > 0       # images/s
    raw = json.loads(results.with_suffix(".json").read_text())
    assert [(r["set"], r["config"], r["seed"]) for r in raw["rows"]] == [("part", "default", 0)]


def test_an_unknown_set_is_one_line_listing_the_sets(tmp_path, capsys):
    assert load_recipe("benchmark").main(["--sets", "frym", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown set 'frym'; choose one of: mtd, fryum, grid, hazelnut, brick" in err[0]


def test_no_default_with_nothing_else_is_one_line(tmp_path, capsys):
    assert load_recipe("benchmark").main(["--sets", "brick", "--no-default", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-default leaves nothing to run" in err[0]


def test_no_default_keeps_only_the_named_configurations():
    bench = load_recipe("benchmark")
    args = bench.parse_args(["--no-default", "--model", "mmae", "--variant", "--model ae --epochs 2"])
    assert list(bench.configurations(args)) == ["--model mmae", "--model ae --epochs 2"]


def test_titled_runs_keep_their_own_sections_and_rows_in_one_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(RECIPES))
    bench = load_recipe("benchmark")
    row = {"set": "part", "config": "--model ae", "seed": 0, "fit_s": 1.0, "model": "ae", "n_train": 8, "n_test": 4,
           "images_per_s": 2.0, **{k: 0.5 for k in bench.ACCURACY}}
    monkeypatch.setattr(bench, "load", lambda source, shared: None)    # no fit: the table's writing only
    monkeypatch.setattr(bench, "run", lambda args, loaded, configs, env: [row])
    results = tmp_path / "mmae.md"
    for title in ("Run A: jitter", "Run B"):
        argv = ["--sets", f"part={tiny_category(tmp_path / 'part')}", "--no-default", "--model", "ae",
                "--work", str(tmp_path / "work"), "--results", str(results), "--title", title]
        assert bench.main(argv) == 0
    text = results.read_text()
    assert "### Run A: jitter" in text and "### Run B" in text
    assert (tmp_path / "mmae_Run_A_jitter.json").is_file() and (tmp_path / "mmae_Run_B.json").is_file()
