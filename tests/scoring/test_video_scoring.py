"""How a video model scores a frame: min–max, PSNR, the regular score, which clip scores which frame
(inspect_ad/scoring/video.py)."""
import numpy as np
import pytest
import torch

from inspect_ad.models import create_model, get_spec
from inspect_ad.scoring.normalize import minmax
from inspect_ad.scoring.video import RawScores, anomaly_score, frame_psnr, regular_score, scored_clips


def test_minmax_and_psnr():
    assert np.allclose(minmax(np.array([1.0, 3.0, 2.0])), [0, 1, 0.5])
    assert np.allclose(minmax(np.array([2.0, 2.0])), [0, 0])
    assert np.allclose(minmax(np.array([1.0, np.nan, 3.0]), 1.0, 5.0)[[0, 2]], [0, 0.5])
    # [-1, 1] frames: 0 vs 0.2 is 0.1 on [0, 1] -> MSE 0.01 -> 20 dB
    assert frame_psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.2)) == pytest.approx([20.0])


def test_anomaly_score_per_video_and_calibrated():
    model = create_model("mnad-pred", **get_spec("mnad-pred").tiny)           # λ = 0.6
    raw = RawScores(np.array([30.0, 20.0, 25.0]), np.array([0.3, 0.1, 0.2]), np.full(3, np.nan))
    assert np.allclose(anomaly_score(model, raw), [0.4, 0.6, 0.5])
    cal = {"psnr": [20.0, 40.0], "distance": [0.0, 0.4]}
    assert np.allclose(anomaly_score(model, raw, cal), [0.6, 0.7, 0.65])


def test_regular_score_weights_large_errors():
    target = torch.zeros(1, 1, 2, 2)
    pred = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])                # one pixel off by 1 on [0, 1]
    assert float(regular_score(pred, target)) == pytest.approx(1.0)


def test_scored_clips_centre_cuboids_and_skip_first_predicted_frames():
    memae = create_model("memae3d", **get_spec("memae3d").tiny)
    clips = scored_clips(memae, 20)
    assert clips[0] == (0, 0) and clips[10] == (10, 2) and clips[19] == (19, 4)
    pred = create_model("mnad-pred", **get_spec("mnad-pred").tiny)
    assert scored_clips(pred, 7) == [(4, 0), (5, 1), (6, 2)]
