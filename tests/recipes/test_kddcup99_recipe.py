"""recipes/kddcup99.py: its variants take the memory's options by their flat names."""
import numpy as np
import pytest
from conftest import load_recipe, toy_table

from inspect_ad.errors import InspectError


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("kddcup99")


def write_toy_npz(path):
    data = toy_table(600, d=8)
    np.savez(path, kdd=np.column_stack([data.features, data.anomaly.astype(np.float32)]))
    return path


def test_variants_with_memory_options_run_and_fill_the_table(recipe, tmp_path):
    data = write_toy_npz(tmp_path / "kdd.npz")
    recipe.main(["--data", str(data), "--runs", "1", "--epochs", "1", "--batch-size", "64", "--out",
                 str(tmp_path / "k.md"), "--variant", "memae_fc:logit_scale=10,similarity=dot", "--variant", "ae_fc"])
    rows = [line for line in (tmp_path / "k.md").read_text().splitlines() if line.startswith("| ")]
    assert any("memae_fc:logit_scale=10,similarity=dot" in r for r in rows) and any("`ae_fc`" in r for r in rows)


def test_an_unknown_variant_option_is_one_line_listing_the_valid_ones(recipe):
    with pytest.raises(InspectError) as e:
        recipe.parse_variant("memae_fc:nonsense=1")
    message = str(e.value)
    assert "\n" not in message and "nonsense" in message and "logit_scale" in message and "shrink_threshold" in message
