"""Video datasets: the frame-folder and UCSD layouts (inspect_ad/data/video.py) and the synthetic set
(inspect_ad/data/synthetic_video.py)."""
import cv2
import numpy as np
import pytest

from inspect_ad.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video_set
from inspect_ad.data.video import load_frame_folders, load_ucsd_original, load_video_dataset, parse_ucsd_m_file
from inspect_ad.errors import InspectError


def _write_frames(folder, n, ext=".jpg", size=(12, 10)):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}{ext}"), np.full(size, 10 * i, np.uint8))


def test_frame_folder_layout_with_concatenated_labels(tmp_path):
    for v in ("01", "02"):
        _write_frames(tmp_path / "training" / "frames" / v, 3)
    _write_frames(tmp_path / "testing" / "frames" / "01", 2)
    _write_frames(tmp_path / "testing" / "frames" / "02", 3)
    np.save(tmp_path / "frame_labels_ped2.npy", np.array([[0, 1, 1, 0, 0]]))
    ds = load_video_dataset(tmp_path)
    assert [len(v) for v in ds.train] == [3, 3]
    assert ds.test[0].labels.tolist() == [0, 1] and ds.test[1].labels.tolist() == [1, 0, 0]
    frames = ds.test[1].frames(8, 1)
    assert frames.shape == (3, 1, 8, 8) and frames.min() >= -1 and frames.max() <= 1


def test_frame_folder_label_count_mismatch_names_the_file(tmp_path):
    _write_frames(tmp_path / "testing" / "frames" / "01", 2)
    np.save(tmp_path / "frame_labels_x.npy", np.zeros(5))
    with pytest.raises(InspectError, match="frame_labels_x.npy"):
        load_frame_folders(tmp_path)


def test_shanghaitech_per_video_label_files(tmp_path):
    _write_frames(tmp_path / "training" / "frames" / "01_001", 2)
    _write_frames(tmp_path / "testing" / "frames" / "01_0014", 3)
    (tmp_path / "testing" / "test_frame_mask").mkdir()
    np.save(tmp_path / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 0, 1]))
    ds = load_video_dataset(tmp_path)
    assert ds.test[0].labels.tolist() == [0, 0, 1]


def test_ucsd_original_layout_with_m_file(tmp_path):
    root = tmp_path / "UCSDped2"
    _write_frames(root / "Train" / "Train001", 3, ".tif")
    _write_frames(root / "Test" / "Test001", 6, ".tif")
    _write_frames(root / "Test" / "Test001_gt", 6, ".bmp")          # pixel masks: not a video
    _write_frames(root / "Test" / "Test002", 4, ".tif")
    (root / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3, 5:6];\n"
        "TestVideoFile{end+1}.gt_frame = [4:9];\n")
    assert parse_ucsd_m_file(root / "Test" / "UCSDped2.m") == [[(2, 3), (5, 6)], [(4, 9)]]
    ds = load_ucsd_original(root)
    assert [v.name for v in ds.test] == ["Test001", "Test002"]
    assert ds.test[0].labels.tolist() == [0, 1, 1, 0, 1, 1] and ds.test[1].labels.tolist() == [0, 0, 0, 1]


def test_unknown_layout_lists_the_layouts(tmp_path):
    with pytest.raises(InspectError, match="layouts understood"):
        load_video_dataset(tmp_path)


def test_synthetic_set_is_deterministic_and_labelled():
    cfg = SyntheticVideoConfig(size=32, train_videos=1, test_videos=3, frames=40, anomaly_start=(10, 12))
    a, b = make_synthetic_video_set(3, cfg), make_synthetic_video_set(3, cfg)
    assert np.array_equal(a.train[0].array, b.train[0].array)
    assert all(np.array_equal(x.array, y.array) for x, y in zip(a.test, b.test))
    for v in a.test:
        assert v.labels[:10].sum() == 0 and v.labels.sum() > 0
        assert np.all(v.masks[v.labels > 0].reshape(int(v.labels.sum()), -1).any(axis=1))
    assert not np.array_equal(a.train[0].array, make_synthetic_video_set(4, cfg).train[0].array)
