"""recipes/mvtec.py runs end to end on a generated MVTec-layout folder."""
import subprocess
import sys

from conftest import RECIPES, TINY_IMAGE_SIZE, TINY_OPTIONS

TINY = ["--image-size", str(TINY_IMAGE_SIZE), "--epochs", "1", "--batch-size", "4", *TINY_OPTIONS]


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
