"""recipes/oneclass.py (MemAE §4.1): a smoke run, folders, seeds, tables."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import load_recipe, write_fake_mnist

from inspect_ad.data.oneclass import LabelledImages
from inspect_ad.models import create_model


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("oneclass")


def test_recipe_smoke_run_writes_a_table(tmp_path, recipe):
    write_fake_mnist(tmp_path, per_class=60)
    out = tmp_path / "mnist.md"
    rc = recipe.main(["--dataset", "mnist", "--data", str(tmp_path), "--classes", "0", "--epochs", "1",
                      "--max-per-class", "50", "--tiny", "--device", "cpu", "--out", str(out)])
    text = out.read_text()
    assert rc == 0 and "Status: complete" in text and "- Device: CPU (" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    values = [float(v) for v in row.strip("| ").split(" | ")[1:]]
    assert len(values) == 3 and all(v > 0.9 for v in values)
    # the overall AUROC is the size-weighted mean of the per-class ones, so the hardest is no higher
    hardest = next(line for line in text.split("Hardest anomaly class")[1].splitlines() if line.startswith("| 0 |"))
    for cell, overall in zip(hardest.strip("| ").split(" | ")[1:], values):
        name, value = cell.rstrip(")").split(" (")
        assert name in "123456789" and float(value) <= overall + 5e-4
    fraction = float(text.split("anomaly fraction ")[1].split(")")[0])
    assert abs(fraction - 0.3) < 0.03
    slots = next(line for line in text.splitlines() if line.startswith("| memory slots read"))
    ae, nonspar, memae = slots.strip("| ").split(" | ")[1:]
    assert ae == "—" and 1 <= float(memae) <= float(nonspar) == 8   # nonSpar's softmax zeroes no slot


def test_recipe_runs_on_a_colour_folder_and_names_bad_classes(tmp_path, recipe, capsys):
    rng = np.random.default_rng(0)
    for cls, lo in (("ok", 0), ("scratch", 180)):
        (tmp_path / cls).mkdir()
        for i in range(12):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), rng.integers(lo, lo + 60, (20, 20, 3), dtype=np.uint8))
    out = tmp_path / "folder.md"
    common = ["--dataset", "folder", "--data", str(tmp_path), "--image-size", "16", "--channels", "3",
              "--epochs", "1", "--tiny", "--variants", "memae", "--out", str(out)]
    assert recipe.main(common + ["--classes", "ok"]) == 0
    assert "| ok |" in out.read_text()
    assert recipe.main(common + ["--classes", "dent"]) == 2
    assert "choose one of: ok, scratch" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_recipe_names_a_missing_gpu_in_one_line(tmp_path, recipe, capsys):
    write_fake_mnist(tmp_path, per_class=20)
    rc = recipe.main(["--dataset", "mnist", "--data", str(tmp_path), "--classes", "0", "--variants", "ae",
                      "--epochs", "1", "--tiny", "--device", "cuda", "--out", str(tmp_path / "t.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no CUDA GPU" in err and "--device cpu" in err and len(err.splitlines()) == 1


def test_code_channels_narrows_the_code_of_every_variant(recipe):
    data = LabelledImages(np.zeros((4, 1, 28, 28), np.float32), np.arange(4), [str(i) for i in range(4)])
    args = recipe.parse_args(["--code-channels", "2"])
    for variant in ("ae", "memae"):
        model = create_model(*(lambda d: (d.model, d.config))(recipe.build(args, data, variant, seed=0)))
        out = model(torch.rand(3, 1, 28, 28))
        assert model.latent_shape == (2, 4, 4) and out.reconstruction.shape == (3, 1, 28, 28)
    assert model.memory.slots.shape[1] == 2 * 4 * 4     # the memory addresses the narrower code
    paper = recipe.build(recipe.parse_args([]), data, "ae", seed=0)
    assert create_model(paper.model, paper.config).latent_shape == (64, 4, 4)   # the paper's


def test_auroc_rows_average_over_seeds(recipe):
    results = [dict(cls=c, variant="memae", seed=s, auroc=a)
               for c, s, a in ((0, 0, 0.9), (0, 1, 0.7), (1, 0, 0.5), (1, 1, 0.9))]
    rows = recipe.auroc_rows(results, [0, 1], ["memae"], [0, 1], ["zero", "one"])
    assert rows[2] == "| zero | 0.8000 ± 0.1414 |"                  # sd of (0.9, 0.7), ddof 1
    assert rows[4] == "| **mean ± sd over seeds 0, 1** | **0.7500 ± 0.0707** |"   # seed means 0.7, 0.8
    assert rows[5:] == ["| mean, seed 0 | 0.7000 |", "| mean, seed 1 | 0.8000 |"]


def test_recipe_repeats_each_task_per_seed(tmp_path, recipe):
    write_fake_mnist(tmp_path, per_class=30)
    common = ["--dataset", "mnist", "--data", str(tmp_path), "--classes", "3", "--variants", "memae",
              "--epochs", "1", "--tiny", "--device", "cpu"]
    assert recipe.main(common + ["--seed", "0,1", "--out", str(tmp_path / "two.md")]) == 0
    assert recipe.main(common + ["--seed", "1", "--out", str(tmp_path / "one.md")]) == 0
    two, one = (tmp_path / "two.md").read_text(), (tmp_path / "one.md").read_text()
    assert "Status: complete" in two and "seeds 0, 1," in two
    seed1 = next(line for line in two.splitlines() if line.startswith("| mean, seed 1 |"))
    single = next(line for line in one.splitlines() if line.startswith("| 3 |"))
    assert seed1.split(" | ")[1] == single.split(" | ")[1]      # the same task, trained alone, gives the same AUROC
    with pytest.raises(SystemExit):
        recipe.parse_args(["--seed", "0,0"])
