"""One-class image protocol (MemAE §4.1): the loaders and the split (inspect_ad/data/oneclass.py)."""
from __future__ import annotations

import gzip
import pickle

import cv2
import numpy as np
import pytest

from conftest import idx_bytes, write_fake_mnist

from inspect_ad.data.oneclass import (load_cifar10, load_image_folder, load_mnist, one_class_split, read_cifar10_batch,
                                      read_idx)
from inspect_ad.errors import InspectError


def test_read_idx_gzip_and_plain_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "b").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a"), arr)
    assert np.array_equal(read_idx(tmp_path / "b"), arr)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x99" + b"\x00" * 8)
    with pytest.raises(InspectError, match="not an MNIST idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8))[:-1])
    with pytest.raises(InspectError, match="truncated"):
        read_idx(tmp_path / "short")


def test_load_mnist_pools_both_splits(tmp_path):
    write_fake_mnist(tmp_path, per_class=4)
    data = load_mnist(tmp_path)
    assert data.images.shape == (40, 1, 28, 28) and data.images.dtype == np.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert np.bincount(data.labels).tolist() == [4] * 10
    with pytest.raises(InspectError, match="not found"):
        load_mnist(tmp_path / "nowhere")


def test_cifar_refuses_foreign_file_names(tmp_path):
    evil = tmp_path / "model.pkl"
    evil.write_bytes(b"never opened")
    with pytest.raises(InspectError, match="refusing to unpickle"):
        read_cifar10_batch(evil)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_unpickler_refuses_foreign_globals(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    with pytest.raises(InspectError, match="not a CIFAR-10 python batch"):
        read_cifar10_batch(tmp_path / "data_batch_1")


def test_load_cifar10_reads_the_six_batches(tmp_path):
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((2, 3072), i, np.uint8)
        (tmp_path / name).write_bytes(pickle.dumps({b"data": data, b"labels": [i % 10, 9]}))
    d = load_cifar10(tmp_path)
    assert d.images.shape == (12, 3, 32, 32)
    assert d.labels.tolist()[:4] == [0, 9, 1, 9]
    assert d.images[2, 0, 0, 0] == pytest.approx(1 / 255)
    assert d.class_names[0] == "airplane"


def test_image_folder_classes_resize_grey_and_skip_bad_files(tmp_path):
    for cls, value in (("bad_part", 200), ("good_part", 10)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            img = np.zeros((8, 12, 3), np.uint8)
            img[..., 2] = value  # red in RGB (cv2 writes BGR)
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), img)
    (tmp_path / "good_part" / "broken.png").write_bytes(b"not a png")
    d = load_image_folder(tmp_path, image_size=6, channels=1)
    assert d.class_names == ["bad_part", "good_part"]
    assert d.labels.tolist() == [0, 0, 1, 1]
    assert d.images.shape == (4, 1, 6, 6)
    # cv2 grey = 0.299 R for a pure red pixel.
    assert d.images[0, 0, 0, 0] == pytest.approx(round(0.299 * 200) / 255, abs=1 / 255)
    assert d.class_index("good_part") == 1
    with pytest.raises(InspectError, match="choose one of: bad_part, good_part"):
        d.class_index("scratch")


def test_one_class_split_sizes_and_disjointness():
    labels = np.array([0] * 30 + [1] * 50 + [2] * 50)
    s = one_class_split(labels, normal_class=0, seed=1)
    # 30 normal -> 10 test, 20 train of which round(2.0) = 2 validation; anomalies round(10·0.3/0.7) = 4.
    assert (len(s.train), len(s.val), len(s.test)) == (18, 2, 14)
    assert s.anomaly_fraction == pytest.approx(4 / 14)
    assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
    assert (labels[s.train] == 0).all() and (labels[s.val] == 0).all()
    assert np.array_equal(s.test_labels, (labels[s.test] != 0).astype(int))
    again = one_class_split(labels, normal_class=0, seed=1)
    assert np.array_equal(again.test, s.test)


def test_one_class_split_anomaly_share_near_30_percent_on_mnist_sizes():
    labels = np.repeat(np.arange(10), 700)
    s = one_class_split(labels, normal_class=3)
    assert abs(s.anomaly_fraction - 0.3) < 0.005
    assert len(set(labels[s.test[s.test_labels == 1]])) == 9  # anomalies come from every other class
