"""The gradient-magnitude-similarity maps (inspect_ad/ops/gms.py)."""
import pytest
import torch

from inspect_ad.ops.gms import C, gms_map, msgms_map
from inspect_ad.scoring.anomaly_map import MapConfig, anomaly_maps


def test_gms_of_an_edge_against_a_flat_reconstruction():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0                                  # a vertical step between columns 3 and 4
    g = gms_map(x, torch.full_like(x, 0.5))[0]
    # Prewitt / 3 gives magnitude 1 beside the step, 0 on the flat reconstruction: c / (1 + c)
    assert g[2, 3].item() == pytest.approx(C / (1 + C), abs=1e-5)
    assert g[2, 4].item() == pytest.approx(C / (1 + C), abs=1e-5)
    assert g[2, 0].item() == pytest.approx(1.0) and g[2, 7].item() == pytest.approx(1.0)  # both flat there


def test_gms_map_ignores_a_brightness_offset_and_has_finite_gradients():
    x = (0.6 * torch.rand(1, 1, 32, 32)).requires_grad_()
    maps, _ = anomaly_maps(x + 0.2, x, MapConfig(sigma=0, metric="gms"))
    assert maps.abs().max().item() < 1e-5            # the squared error would be 0.04 everywhere
    flat = torch.zeros(1, 1, 16, 16, requires_grad=True)
    (1 - msgms_map(flat, torch.zeros(1, 1, 16, 16))).mean().backward()
    assert torch.isfinite(flat.grad).all()
