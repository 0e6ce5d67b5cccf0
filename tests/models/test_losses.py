"""The MemAE training loss (inspect_ad/models/losses.py)."""
import pytest
import torch

from inspect_ad.models import create_model, get_spec
from inspect_ad.models.losses import memae_loss


def test_loss_is_mse_plus_weighted_entropy():
    torch.manual_seed(0)
    model = create_model("mmae", **get_spec("mmae").tiny)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    total, parts = memae_loss(out, x, entropy_weight=0.5)
    assert total.item() == pytest.approx(parts["mse"] + 0.5 * parts["entropy"], rel=1e-5)
    with_terms, parts = memae_loss(out, x, entropy_weight=0.5, ssim_weight=2.0, gms_weight=3.0)
    assert 0 < parts["dgms"] <= 1 and 0 < parts["dssim"] <= 2
    assert with_terms.item() == pytest.approx(total.item() + 2.0 * parts["dssim"] + 3.0 * parts["dgms"], rel=1e-5)
