"""recipes/mtd_pretrained.py runs end to end on a generated manifest in MTD's layout."""
import sys

from conftest import RECIPES, load_recipe


def test_mtd_pretrained_recipe_writes_recall_at_both_targets(tmp_path, monkeypatch):
    """A generated manifest in MTD's layout: 110 good training images (100 calibrate), 2 + 2 test images."""
    import json

    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    train, test = [], []
    for i in range(110):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), rng.integers(90, 110, (40, 30), dtype=np.uint8))
        train.append(f"t{i}.png")
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"g{i}.png"), rng.integers(90, 110, (40, 30), dtype=np.uint8))
        img, mask = rng.integers(90, 110, (40, 30), dtype=np.uint8), np.zeros((40, 30), np.uint8)
        mask[10:20, 5:15] = 255
        img[mask > 0] = 250
        cv2.imwrite(str(tmp_path / f"d{i}.png"), img)
        cv2.imwrite(str(tmp_path / f"d{i}_mask.png"), mask)
        test += [{"image": f"g{i}.png", "mask": None, "label": "good"},
                 {"image": f"d{i}.png", "mask": f"d{i}_mask.png", "label": "blowhole"}]
    (tmp_path / "split.json").write_text(json.dumps({"train": train, "test": test}))
    results = tmp_path / "mtd.md"
    argv = ["--data", str(tmp_path), "--models", "patchcore", "--image-size", "32", "--device", "cpu",
            "-o", "stages=[1,2]", "--out", str(tmp_path / "runs"), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", [str(RECIPES / "mtd_pretrained.py"), *argv])   # the command it records
    assert load_recipe("mtd_pretrained").main(argv) == 0
    row = next(line for line in results.read_text().splitlines() if line.startswith("| patchcore |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "1.000" and cells[6] == "1.000"   # both bright defects caught at 1% and 5% FRR
    assert "MiB" in cells[-1] and "- command: `python" in results.read_text()
