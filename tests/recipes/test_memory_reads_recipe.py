"""recipes/memory_reads.py: the read statistics of addressing weights."""
import math

import pytest
import torch
from conftest import load_recipe


def test_read_stats_tell_a_uniform_read_from_one_slot_reads():
    stats = load_recipe("memory_reads").read_stats
    uniform = stats(torch.full((6, 8), 1 / 8))
    assert uniform["entropy"] == pytest.approx(math.log(8)) and uniform["max_weight"] == pytest.approx(1 / 8)
    assert uniform["nonzero_per_read"] == 8
    one_hot = stats(torch.eye(8)[[0, 0, 3, 3, 3, 5]])
    assert one_hot["entropy"] == pytest.approx(0, abs=1e-6) and one_hot["max_weight"] == 1
    assert one_hot["nonzero_per_read"] == 1 and one_hot["argmax_slots"] == 3
