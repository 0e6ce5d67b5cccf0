"""recipes/mvtec.py runs end to end on a generated MVTec-layout folder."""
import sys

from conftest import RECIPES, TINY_IMAGE_SIZE, TINY_OPTIONS, load_recipe

TINY = ["--image-size", str(TINY_IMAGE_SIZE), "--epochs", "1", "--batch-size", "4", *TINY_OPTIONS]


def test_mvtec_recipe_writes_table1_layout(tiny_mvtec, tmp_path, monkeypatch):
    table = tmp_path / "mvtec.md"
    argv = ["--data-root", str(tiny_mvtec), "--out", str(tmp_path / "runs"), "--table", str(table), *TINY]
    monkeypatch.syspath_prepend(str(RECIPES))   # mvtec.py imports compare.py beside it
    monkeypatch.setattr(sys, "argv", [str(RECIPES / "mvtec.py"), *argv])   # the command it records
    load_recipe("mvtec").main(argv)
    text = table.read_text()
    assert "| other | widget |" in text and "mean (1 categories)" in text
    assert text.count("| ae (ours) | memae (ours) | mmae (ours) |") == 1
    assert "- command: `python" in text and "wall time" in text
