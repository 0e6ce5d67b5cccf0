"""recipes/ped2.py passes model options and skips finished runs."""
import json

from conftest import load_recipe


def test_ped2_recipe_passes_model_options_and_skips_finished_runs(tmp_path, capsys):
    ped2 = load_recipe("ped2")
    argv = ["--data", "synthetic", "--setting", "tiny", "--recipes", "memae3d", "--memory", "yes",
            "--epochs", "1", "--max-steps-per-epoch", "1", "-o", "logit_scale=20", "--out", str(tmp_path),
            "--table", str(tmp_path / "t.md")]
    ped2.main(argv)
    row = json.loads((tmp_path / "results.jsonl").read_text())
    assert row["model"]["logit_scale"] == 20 and row["options"] == ["logit_scale=20"]
    assert "| memae3d `logit_scale=20` | yes |" in (tmp_path / "t.md").read_text()
    capsys.readouterr()
    ped2.main(argv)                                                   # same run again: nothing retrained
    assert capsys.readouterr().out == "" and len((tmp_path / "results.jsonl").read_text().splitlines()) == 1
