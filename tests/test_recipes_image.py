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
