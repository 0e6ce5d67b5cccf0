"""recipes/long_parts.py keeps the long images of a split, each in its own part of it, turned landscape."""
import json

import cv2
import numpy as np
from conftest import load_recipe, write_png


def test_long_parts_keep_their_split_and_lie_flat_with_their_masks(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mtd"
    for name, shape in (("wide", (20, 50)), ("tall", (60, 20)), ("squat", (30, 40)), ("bad", (50, 20))):
        write_png(root / f"{name}.jpg", rng.integers(0, 255, shape, dtype=np.uint8))
    mask = np.zeros((50, 20), np.uint8)
    mask[:5] = 255
    write_png(root / "bad.png", mask)
    split = root / "split.json"
    split.write_text(json.dumps({"train": ["wide.jpg", "tall.jpg", "squat.jpg"],
                                 "test": [{"image": "bad.jpg", "mask": "bad.png", "label": "crack"}]}))
    manifest = json.loads(load_recipe("long_parts").write_long_parts(split, tmp_path / "out").read_text())
    assert [p.rsplit("/", 1)[1] for p in manifest["train"]] == ["wide.jpg", "tall.jpg"]
    assert [cv2.imread(p, 0).shape for p in manifest["train"]] == [(20, 50), (20, 60)]
    (entry,) = manifest["test"]
    turned = cv2.imread(entry["mask"], 0)
    assert entry["label"] == "crack" and turned.shape == (20, 50) and turned[:, -5:].min() == 255
