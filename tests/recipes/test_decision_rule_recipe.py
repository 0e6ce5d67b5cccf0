"""recipes/decision_rule.py counts each rule's FAILs per label on a demo folder."""
from conftest import RECIPES, load_recipe

from inspect_ad.pipelines.demo import run_demo

TINY_DATA = dict(size=48, n_train=4, n_test_good=3, n_test_per_defect=1, n_calibration=99)


def test_the_table_counts_every_test_image_under_each_rule(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(RECIPES))   # the recipe imports results_file beside it
    run_demo(tmp_path / "tiny", ["brick"], ["ae"], epochs=1, progress=False, backbone=None, device="cpu",
             data_spec=TINY_DATA)
    assert load_recipe("decision_rule").main([str(tmp_path / "tiny"), "--results", str(tmp_path / "r.md")]) == 0
    rows = [line.split(" | ") for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("| tiny |")]
    by_label = {r[1]: [int(v.strip(" |")) for v in r[2:]] for r in rows}
    assert by_label["good"][0] == 3 and by_label["all defective"][0] == 7
    for n, image, region, either in by_label.values():
        assert max(image, region) <= either <= min(n, image + region)
