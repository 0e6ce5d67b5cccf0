"""KDDCUP99 protocol (DAGMM / MemAE §4.3) on small in-memory tables: loading and split (inspect_ad/data/tabular.py)."""
import numpy as np
import pytest

from conftest import toy_table as toy

from inspect_ad.data.tabular import load_kddcup99, protocol_split
from inspect_ad.errors import InspectError


def test_split_trains_on_normal_rows_of_half_and_tests_on_the_rest():
    data = toy()
    split = protocol_split(data, seed=3)
    assert len(split.test) == 200
    assert not (split.train > 1.5).any()  # no shifted (anomalous) row reached training
    n_train_normal = len(data.features) - len(split.test) - (data.anomaly.sum() - split.test_anomaly.sum())
    assert len(split.train) == n_train_normal
    assert np.array_equal(split.test_anomaly, split.test.mean(1) > 1.5)


def test_split_depends_on_seed_only():
    data = toy()
    a, b, c = protocol_split(data, 1), protocol_split(data, 1), protocol_split(data, 2)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InspectError, match="no such file"):
        load_kddcup99(tmp_path / "missing.npz")
    np.savez(tmp_path / "wrong.npz", other=np.zeros((2, 3)))
    with pytest.raises(InspectError, match=r"wrong\.npz.*no array 'kdd'"):
        load_kddcup99(tmp_path / "wrong.npz")
    np.savez(tmp_path / "badlabel.npz", kdd=np.full((2, 3), 2.0))
    with pytest.raises(InspectError, match="0/1 label"):
        load_kddcup99(tmp_path / "badlabel.npz")


def test_load_treats_label_one_as_anomaly(tmp_path):
    np.savez(tmp_path / "k.npz", kdd=np.array([[0.5, 0.0], [0.25, 1.0], [0.0, 0.0]]))
    data = load_kddcup99(tmp_path / "k.npz")
    assert data.features.dtype == np.float32 and data.features.shape == (3, 1)
    assert data.anomaly.tolist() == [False, True, False]
