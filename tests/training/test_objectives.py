"""Training objectives (inspect_ad/training/objectives.py)."""
import pytest
import torch

from inspect_ad.data.corruption import SyntheticDefects
from inspect_ad.training.objectives import memae_objective
from inspect_ad.models.outputs import ReconstructionOutput


def test_objective_targets_the_clean_image():
    def copy_model(inp):                       # a perfect copier: no error unless the target differs
        return ReconstructionOutput(reconstruction=inp)
    x = torch.rand(4, 1, 32, 32)
    plain, _ = memae_objective(0.0)(copy_model, x)
    repaired, parts = memae_objective(0.0, corrupt=SyntheticDefects(1.0, seed=0))(copy_model, x)
    assert plain.item() == 0.0 and repaired.item() > 0 and parts["mse"] == pytest.approx(repaired.item())
