"""inspect_ad/data/datasets.py: what a command line's files and folders expand to."""
import numpy as np
from conftest import write_png

from inspect_ad.data.datasets import expand_inputs, named_inputs


def test_named_inputs_keep_the_folders_and_never_repeat_a_name(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    a = write_png(tmp_path / "test" / "color" / "000.png", img)
    b = write_png(tmp_path / "test" / "crack" / "000.png", img)
    c = write_png(tmp_path / "loose" / "000.png", img)
    named = named_inputs([tmp_path / "test", c, c])
    assert named == [(a, "test/color/000"), (b, "test/crack/000"), (c, "000"), (c, "000_1")]
    assert expand_inputs([tmp_path / "test", c, c]) == [a, b, c, c]
