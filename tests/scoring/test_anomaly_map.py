"""Anomaly maps: metrics, pooling, smoothing, standardisation, scales (inspect_ad/scoring/anomaly_map.py)."""
import pytest
import torch

from inspect_ad.errors import InspectError
from inspect_ad.scoring.anomaly_map import METRICS, MapConfig, anomaly_maps, smooth


def test_identical_images_give_zero_maps():
    x = torch.rand(2, 3, 32, 32)
    for metric in METRICS:
        maps, scores = anomaly_maps(x, x.clone(), MapConfig(sigma=2.0, metric=metric))
        assert maps.shape == (2, 32, 32)
        assert torch.allclose(maps, torch.zeros_like(maps), atol=1e-5)


def test_max_pooling_finds_a_local_defect():
    x = torch.zeros(1, 1, 32, 32)
    recon = x.clone()
    recon[..., 10:14, 20:24] = 1.0
    maps, scores = anomaly_maps(x, recon, MapConfig(sigma=0.0))
    assert scores.item() == pytest.approx(1.0)
    assert maps[0, 12, 22] == 1.0 and maps[0, 0, 0] == 0.0
    _, mean_score = anomaly_maps(x, recon, MapConfig(sigma=0.0, pooling="mean"))
    assert mean_score.item() == pytest.approx(16 / 1024)


def test_smoothing_preserves_mass_away_from_borders():
    m = torch.zeros(1, 33, 33)
    m[0, 16, 16] = 1.0
    s = smooth(m, 2.0)
    assert s.sum().item() == pytest.approx(1.0, rel=1e-4) and s[0, 16, 16] < 1.0


def test_unknown_map_options_list_choices():
    with pytest.raises(ValueError, match="choose one of: l2, ssim, gms"):
        MapConfig(metric="l1")
    with pytest.raises(ValueError, match="choose one of: max, mean"):
        MapConfig(pooling="p99")


def test_standardized_map_is_a_per_pixel_z_score():
    import torch

    from inspect_ad.scoring.anomaly_map import MapConfig, anomaly_maps, reference_maps
    good = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]])          # pixel 0: mean 2, std √2; pixel 1: never varies
    ref = reference_maps(good, floor=0.1)
    assert torch.allclose(ref[0], torch.tensor([[2.0, 0.0]]))
    assert torch.allclose(ref[1], torch.tensor([[2 ** 0.5, 0.1 * 2 ** 0.5 / 2]]))  # floor: 0.1 × mean std
    x, recon = torch.zeros(1, 1, 1, 2), torch.tensor([[[[2.0 + 2 ** 0.5, 0.1]]]]).sqrt()
    maps, score = anomaly_maps(x, recon, MapConfig(sigma=0, standardize=True), ref)
    assert torch.allclose(maps, torch.tensor([[[1.0, 0.1 / (0.1 * 2 ** 0.5 / 2)]]]))
    assert torch.isclose(score[0], maps.max())


def test_standardize_score_z_scores_the_score_and_keeps_the_error_map():
    ref = torch.tensor([[[0.0, 4.0]], [[1.0, 1.0]]])             # pixel 1 is always bad on good parts
    x, recon = torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 2.0]]]])   # errors 1 and 4
    plain, plain_score = anomaly_maps(x, recon, MapConfig(sigma=0))
    maps, score = anomaly_maps(x, recon, MapConfig(sigma=0, standardize="score"), ref)
    assert torch.equal(maps, plain) and plain_score[0] == 4.0     # the raw max sits on pixel 1
    assert score[0] == 1.0                                        # z-scores 1 and 0: pixel 0 decides
    z_maps, _ = anomaly_maps(x, recon, MapConfig(sigma=0, standardize="map"), ref)
    assert torch.equal(z_maps, torch.tensor([[[1.0, 0.0]]]))


def test_standardize_reads_old_boolean_bundles_and_lists_choices():
    assert MapConfig(standardize=True).standardize == "map"
    assert not MapConfig(standardize=False).standardized
    with pytest.raises(ValueError, match="choose one of: off, map, score"):
        MapConfig(standardize="pixel")


def test_multiscale_map_compares_local_means():
    # a checkerboard against its flat mean: every pixel is off by 0.5, every 2x2 mean is exact
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(2, 2)[None, None]
    recon = torch.full_like(x, 0.5)
    fine, _ = anomaly_maps(x, recon, MapConfig(sigma=0))
    both, _ = anomaly_maps(x, recon, MapConfig(sigma=0, scales=(1, 2)))
    assert torch.allclose(fine, torch.full((1, 4, 4), 0.25))
    assert torch.allclose(both, torch.full((1, 4, 4), 0.125))       # (0.25 + 0) / 2
    # a dark 2x2 hole is still seen at factor 2
    hole = torch.zeros(1, 1, 4, 4)
    hole[..., :2, :2] = -1.0
    coarse, _ = anomaly_maps(hole, torch.zeros_like(hole), MapConfig(sigma=0, scales=(2,)))
    assert coarse[0, 0, 0] == pytest.approx(1.0) and coarse[0, 3, 3] == pytest.approx(0.0)


def test_multiscale_map_options_are_checked():
    with pytest.raises(InspectError, match="scales=.*: must be a non-empty list of integers >= 1"):
        MapConfig(scales=(0, 2))
    with pytest.raises(InspectError, match="l2 map metric"):
        MapConfig(metric="ssim", scales=(1, 2))
    assert MapConfig(scales=[1, 2]).scales == (1, 2)               # as read back from JSON


@pytest.mark.parametrize("shape,sigma", [((2, 40, 56), 4.0), ((1, 9, 13), 4.0), ((1, 5, 30), 0.5)])
def test_smoothing_matches_torchvision_gaussian_blur(shape, sigma):
    from torchvision.transforms.functional import gaussian_blur
    from inspect_ad.scoring.anomaly_map import gaussian_kernel_size
    m = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    k = gaussian_kernel_size(sigma, *shape[1:])
    expected = gaussian_blur(m.unsqueeze(1), [k, k], [sigma, sigma]).squeeze(1)
    assert torch.allclose(smooth(m, sigma), expected, atol=1e-5)
