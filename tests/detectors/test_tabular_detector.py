"""The tabular detector on the KDDCUP99 protocol (inspect_ad/detectors/tabular.py)."""
from pathlib import Path

import numpy as np
import pytest

from conftest import toy_table as toy

from inspect_ad.data.tabular import load_kddcup99, protocol_split, subsample
from inspect_ad.detectors.presets import tabular_train_config
from inspect_ad.detectors.tabular import TabularDetector, evaluate_on_split
from inspect_ad.models import get_spec

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kddcup99" / "kdd_cup.npz"


def test_protocol_end_to_end_on_toy_table():
    data = toy(600, d=8)
    split = protocol_split(data, seed=0)
    tiny = {k: v for k, v in get_spec("ae_fc").tiny.items() if k != "in_features"}   # the detector sets it
    det = TabularDetector("ae_fc", tiny,
                          tabular_train_config(lr=1e-2, batch_size=64, epochs=5, seed=0))
    res = evaluate_on_split(det, split)
    assert res.n_flagged == round(0.2 * len(split.test))
    assert res.precision > 0.9  # the shifted rows reconstruct far worse
    assert res.recall == pytest.approx(res.precision * res.n_flagged / split.test_anomaly.sum())


# a run of the protocol on 4000 rows of the real data (about 6 s alone): -m slow
@pytest.mark.slow
@pytest.mark.skipif(not REAL.exists(), reason="real KDDCUP99 file not beside the repo")
def test_real_kddcup_subset_protocol():
    data = subsample(load_kddcup99(REAL), 4000, seed=0)
    assert data.features.shape[1] == 118 and 0.15 < data.anomaly.mean() < 0.25  # label 1 ~ 20 %
    for seed in (0, 1):
        split = protocol_split(data, seed)
        assert not data.anomaly[split.train_index].any()  # label-0 ("attack") rows only
        assert len(np.intersect1d(split.train_index, split.test_index)) == 0
        assert np.array_equal(split.test_anomaly, data.anomaly[split.test_index])
        det = TabularDetector("memae_fc", dict(logit_scale=10), tabular_train_config(lr=1e-3, batch_size=256,
                                                                                    epochs=1, seed=seed))
        res = evaluate_on_split(det, split)
        assert res.n_flagged == round(0.2 * len(split.test)) == 400
        # precision/recall are those of the anomaly class: TP is shared, denominators differ
        assert res.precision * res.n_flagged == pytest.approx(res.recall * split.test_anomaly.sum())
