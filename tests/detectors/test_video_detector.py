"""The video detector: old bundles, fit/calibrate/save, presets, its input type
(inspect_ad/detectors/video.py)."""
import numpy as np
import pytest

from conftest import FIXTURES

from inspect_ad.data.synthetic_video import make_synthetic_video_set
from inspect_ad.detectors.presets import video_preset, video_train_config
from inspect_ad.detectors.video import VideoDetector


OLD_VIDEO_BUNDLE = FIXTURES / "bundle_0.1_video_mnad_pred"


def test_video_bundle_from_before_the_detector_loads_and_scores_identically():
    # saved by `inspect-ad video fit --recipe mnad-pred --setting tiny --epochs 2 --max-steps-per-epoch 3`
    # at 4d2404c: its score ranges sit under "calibration" and its config carries learning_rate
    det = VideoDetector.load(OLD_VIDEO_BUNDLE, "cpu")
    assert set(det.ranges_) == {"psnr", "distance"} and det.calibration_ is None
    scores = det.score_samples(make_synthetic_video_set(seed=0).test[:1])
    assert np.isnan(scores[:4]).all()      # frames 0-3 have no 4-frame history
    # that version's own scores, pinned to float32 rounding: the sum moved in the 10th digit between
    # dependency releases while the bundle and its code stayed the same
    assert float(np.nansum(scores)) == pytest.approx(64.63366320038455, rel=1e-7)
    assert scores[4:7] == pytest.approx([0.8344350810933884, 0.7714279918749963, 0.8031549616653761], rel=1e-7)


def test_video_detector_fit_calibrate_save_load(tmp_path):
    ds = make_synthetic_video_set(seed=0)
    tc = video_train_config("mnad-recon", "tiny", epochs=1, max_steps_per_epoch=2, device="cpu")
    det = VideoDetector("mnad-recon", video_preset("mnad-recon", "tiny")["model"], tc).fit(ds.train[:2], progress=False)
    det.calibrate(ds.train[2:3], target_frr=0.2)
    det.save(tmp_path / "m")
    back = VideoDetector.load(tmp_path / "m", "cpu")
    videos = ds.test[:1]
    assert np.array_equal(back.score_samples(videos), det.score_samples(videos), equal_nan=True)
    assert back.threshold_ == det.threshold_ and set(back.predict(videos)) <= {"PASS", "FAIL"}
    assert back.train_config == tc


def test_video_training_config_follows_the_papers():
    assert video_train_config("mnad-recon", "paper").lr == 2e-5 and video_train_config("mnad-pred", "paper").lr == 2e-4
    assert video_train_config("mnad-recon", "cpu", lr=None).lr == 2e-4     # None: keep the preset's value
    assert video_train_config("prototype", "paper").schedule == "cosine"


def test_score_samples_takes_a_list_of_videos_and_gives_their_frames_in_order():
    det = VideoDetector.load(OLD_VIDEO_BUNDLE, "cpu")
    videos = make_synthetic_video_set(seed=0).test[:2]
    both = det.score_samples(videos)
    apart = [det.score_samples([v]) for v in videos]
    assert len(both) == sum(len(v) for v in videos)
    assert np.array_equal(both, np.concatenate(apart), equal_nan=True)


def test_one_video_alone_still_scores_the_same_with_a_future_warning():
    det = VideoDetector.load(OLD_VIDEO_BUNDLE, "cpu")
    video = make_synthetic_video_set(seed=0).test[0]
    with pytest.warns(FutureWarning, match=r"pass \[video\]"):
        alone = det.score_samples(video)
    assert np.array_equal(alone, det.score_samples([video]), equal_nan=True)
