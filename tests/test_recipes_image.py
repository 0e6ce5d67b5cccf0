"""The comparison recipes run end to end on a generated MVTec-layout folder."""
import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = ["--image-size", "32", "--epochs", "1", "--batch-size", "4", "-o", "grid_stride=8", "-o", "latent_channels=8",
        "-o", "base_channels=4", "-o", "max_channels=8", "-o", "num_scales=3", "-o", "memory_slots=10"]


def test_mvtec_recipe_writes_table1_layout(tiny_mvtec, tmp_path):
    table = tmp_path / "mvtec.md"
    r = subprocess.run([sys.executable, str(RECIPES / "mvtec.py"), "--data-root", str(tiny_mvtec),
                        "--out", str(tmp_path / "runs"), "--table", str(table), *TINY],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    text = table.read_text()
    assert "| other | widget |" in text and "mean (1 categories)" in text
    assert text.count("| ae (ours) | memae (ours) | mmae (ours) |") == 1
    assert "- command: `python" in text and "wall time" in text


def test_seed_summary_means_and_wins(tmp_path):
    import json
    values = {"ae": [0.6, 0.8], "mmae": [0.7, 0.7]}          # one metric varied, the others equal
    runs = []
    for i in range(2):
        run = tmp_path / f"seed{i}"
        for model, v in values.items():
            (run / model / "report").mkdir(parents=True)
            (run / model / "report" / "metrics.json").write_text(json.dumps(
                {"image_auroc": v[i], "pixel_auroc": 0.5, "aupro": 0.4}))
        runs.append(str(run))
    r = subprocess.run([sys.executable, str(RECIPES / "seed_summary.py"), *runs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in r.stdout.splitlines()[2:]}
    assert "0.700 ± 0.141" in rows["ae"] and "0.700 ± 0.000" in rows["mmae"]   # sd of (0.6, 0.8), ddof 1
    assert "image_auroc 1/2" in rows["ae"] and "image_auroc 1/2" in rows["mmae"]


def test_mtd_pretrained_recipe_writes_recall_at_both_targets(tmp_path):
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
    r = subprocess.run([sys.executable, str(RECIPES / "mtd_pretrained.py"), "--data", str(tmp_path), "--models",
                        "patchcore", "--image-size", "32", "--device", "cpu", "-o", "stages=[1,2]",
                        "--out", str(tmp_path / "runs"), "--results", str(results)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(line for line in results.read_text().splitlines() if line.startswith("| patchcore |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "1.000" and cells[6] == "1.000"   # both bright defects caught at 1% and 5% FRR
    assert "MiB" in cells[-1] and "- command: `python" in results.read_text()
