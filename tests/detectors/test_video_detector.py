"""The video detector: frame scores, per-video AUC, clips, old bundles, fit/calibrate/save
(inspect_ad/detectors/video.py)."""
import numpy as np
import pytest
import torch

from conftest import FIXTURES

from inspect_ad.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video_set
from inspect_ad.detectors.video import (RawScores, VideoDetector, VideoResult, anomaly_score, evaluate_videos,
                                        frame_psnr, per_video_auc, recipe_setting, regular_score, scored_clips,
                                        video_train_config)
from inspect_ad.models import create_model, get_spec
from inspect_ad.scoring.normalize import minmax


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


def test_per_video_auc_skips_unscored_frames_and_one_class_videos():
    nan = np.nan
    raw = RawScores(np.array([nan, 30.0, 20.0, 25.0, 22.0]), np.full(5, nan), np.full(5, nan))
    mixed = VideoResult("a", np.array([1, 0, 1, 0, 1]), raw, np.array([0.9, 0.1, 0.8, 0.5, 0.4]), None)
    only_normal = VideoResult("b", np.zeros(5, int), raw, np.arange(5.0), None)
    # scored frames 1-4: normal 0.1, 0.5 vs anomalous 0.8, 0.4 -> pairs won 3 of 4
    assert per_video_auc([mixed, only_normal]) == {"a": pytest.approx(0.75)}


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


@pytest.mark.parametrize("weight,term", [(1.0, "psnr"), (0.0, "distance")])
def test_term_auc_is_the_frame_auc_when_the_score_is_that_term_alone(weight, term):
    cfg = SyntheticVideoConfig(size=32, train_videos=0, test_videos=2, frames=20, anomaly_start=(6, 8))
    videos = make_synthetic_video_set(0, cfg).test
    model = create_model("mnad-recon", **{**get_spec("mnad-recon").tiny, "score_weight": weight,
                                          "in_channels": 1, "image_size": 32})
    metrics, _ = evaluate_videos(model, videos, test_time_update=False)
    assert metrics["term_auc"][term] == pytest.approx(metrics["frame_auc"])
    nomem = create_model("mnad-recon", **{**get_spec("mnad-recon").tiny, "use_memory": False, "in_channels": 1,
                                          "image_size": 32})
    assert "term_auc" not in evaluate_videos(nomem, videos, test_time_update=False)[0]


OLD_VIDEO_BUNDLE = FIXTURES / "bundle_0.1_video_mnad_pred"


def test_video_bundle_from_before_the_detector_loads_and_scores_identically():
    # saved by `inspect-ad video fit --recipe mnad-pred --setting tiny --epochs 2 --max-steps-per-epoch 3`
    # at 4d2404c: its score ranges sit under "calibration" and its config carries learning_rate
    det = VideoDetector.load(OLD_VIDEO_BUNDLE, "cpu")
    assert set(det.ranges_) == {"psnr", "distance"} and det.calibration_ is None
    scores = det.score_samples(make_synthetic_video_set(seed=0).test[0])
    assert np.isnan(scores[:4]).all()      # frames 0-3 have no 4-frame history
    # that version's own scores, pinned to float32 rounding: the sum moved in the 10th digit between
    # dependency releases while the bundle and its code stayed the same
    assert float(np.nansum(scores)) == pytest.approx(64.63366320038455, rel=1e-7)
    assert scores[4:7] == pytest.approx([0.8344350810933884, 0.7714279918749963, 0.8031549616653761], rel=1e-7)


def test_video_detector_fit_calibrate_save_load(tmp_path):
    ds = make_synthetic_video_set(seed=0)
    tc = video_train_config("mnad-recon", "tiny", epochs=1, max_steps_per_epoch=2, device="cpu")
    det = VideoDetector("mnad-recon", recipe_setting("mnad-recon", "tiny")["model"], tc).fit(ds.train[:2], progress=False)
    det.calibrate(ds.train[2:3], target_frr=0.2)
    det.save(tmp_path / "m")
    back = VideoDetector.load(tmp_path / "m", "cpu")
    video = ds.test[0]
    assert np.array_equal(back.score_samples(video), det.score_samples(video), equal_nan=True)
    assert back.threshold_ == det.threshold_ and set(back.predict(video)) <= {"PASS", "FAIL"}
    assert back.train_config == tc


def test_video_training_config_follows_the_papers():
    assert video_train_config("mnad-recon", "paper").lr == 2e-5 and video_train_config("mnad-pred", "paper").lr == 2e-4
    assert video_train_config("mnad-recon", "cpu", lr=None).lr == 2e-4     # None: keep the setting's value
    assert video_train_config("prototype", "paper").schedule == "cosine"
