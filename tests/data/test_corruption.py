"""The synthetic-defect corruption (inspect_ad/data/corruption.py)."""
import pytest
import torch

from inspect_ad.data.corruption import AREA, SyntheticDefects


def test_defects_are_deterministic_and_leave_the_input_alone():
    x = torch.rand(6, 1, 48, 48)
    before = x.clone()
    a, b = SyntheticDefects(1.0, seed=3)(x), SyntheticDefects(1.0, seed=3)(x)
    assert torch.equal(a, b) and torch.equal(x, before)
    assert not torch.equal(a, SyntheticDefects(1.0, seed=4)(x))


def test_every_hit_image_gets_one_small_region_changed():
    masks = SyntheticDefects(1.0, seed=0).masks(200, (64, 64))
    area = masks.mean(dim=(1, 2, 3))
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert area.min() >= AREA[0] - 1 / 4096 and area.max() <= AREA[1] + 1 / 4096
    x = torch.full((4, 1, 64, 64), 0.5) + 0.01 * torch.rand(4, 1, 64, 64)
    changed = (SyntheticDefects(1.0, seed=0)(x) != x).float().mean(dim=(1, 2, 3))
    assert (changed > 0).all() and (changed <= AREA[1] + 1 / 4096).all()
    assert torch.equal(SyntheticDefects(0.0, seed=0)(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SyntheticDefects(1.5)
