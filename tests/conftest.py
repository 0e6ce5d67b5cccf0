import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The pixel MMAE (trained from scratch): the CLI's default is patchcore on a pretrained backbone.
PIXEL = ["--model", "mmae", "--backbone", "none"]
# Small enough that a fit takes a second or two on a CPU.
TINY_OPTIONS = ["-o", "grid_stride=8", "-o", "latent_channels=8", "-o", "base_channels=4",
                "-o", "max_channels=8", "-o", "num_scales=3", "-o", "memory_slots=10"]


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(name: str):
    """Import ``recipes/<name>.py`` (recipes are scripts, not a package) to call its main()."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def tiny_mvtec(tmp_path):
    """root/widget in MVTec AD layout: 6 good train images, 2 good + 2 defective test images."""
    rng = np.random.default_rng(0)
    cat = tmp_path / "mvtec" / "widget"
    for i in range(6):
        write_png(cat / "train" / "good" / f"{i:03d}.png", rng.integers(90, 110, (40, 48), dtype=np.uint8))
    for i in range(2):
        write_png(cat / "test" / "good" / f"{i:03d}.png", rng.integers(90, 110, (40, 48), dtype=np.uint8))
        img = rng.integers(90, 110, (40, 48), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:20, 12:24] = 255
        img[mask > 0] = 250
        write_png(cat / "test" / "scratch" / f"{i:03d}.png", img)
        write_png(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png", mask)
    return tmp_path / "mvtec"
