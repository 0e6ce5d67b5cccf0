"""Frame-level evaluation of video models: per-video AUC and each score term's AUC
(inspect_ad/reports/video.py)."""
import numpy as np
import pytest

from inspect_ad.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video_set
from inspect_ad.models import create_model, get_spec
from inspect_ad.reports.video import VideoResult, evaluate_videos, per_video_auc
from inspect_ad.scoring.video import RawScores


def test_per_video_auc_skips_unscored_frames_and_one_class_videos():
    nan = np.nan
    raw = RawScores(np.array([nan, 30.0, 20.0, 25.0, 22.0]), np.full(5, nan), np.full(5, nan))
    mixed = VideoResult("a", np.array([1, 0, 1, 0, 1]), raw, np.array([0.9, 0.1, 0.8, 0.5, 0.4]), None)
    only_normal = VideoResult("b", np.zeros(5, int), raw, np.arange(5.0), None)
    # scored frames 1-4: normal 0.1, 0.5 vs anomalous 0.8, 0.4 -> pairs won 3 of 4
    assert per_video_auc([mixed, only_normal]) == {"a": pytest.approx(0.75)}


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
