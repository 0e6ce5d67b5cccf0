"""KDDCUP99 protocol (DAGMM / MemAE §4.3) on small in-memory tables, and the tabular models."""
from pathlib import Path

import numpy as np
import pytest
import torch

from inspect_ad.data.tabular import (TabularData, flag_top_fraction, load_kddcup99, precision_recall_f1,
                                     protocol_split, subsample)
from inspect_ad.errors import InspectError
from inspect_ad.models import create_model, get_spec, list_models, make_config
from inspect_ad.detectors.tabular import TabularDetector, evaluate_on_split, tabular_train_config

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kddcup99" / "kdd_cup.npz"


def toy(n=400, d=6, seed=0) -> TabularData:
    """Normal rows near 0, anomalies (25 %) shifted by +3 on every feature."""
    rng = np.random.default_rng(seed)
    anomaly = rng.random(n) < 0.25
    x = rng.normal(0, 0.1, (n, d)) + 3.0 * anomaly[:, None]
    return TabularData(x.astype(np.float32), anomaly)


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


def test_flag_top_fraction_flags_exactly_k_highest():
    flagged = flag_top_fraction(np.array([0.1, 5.0, 0.3, 2.0, 0.2, 0.0, 0.5, 0.4, 0.6, 0.7]), 0.2)
    assert flagged.tolist() == [False, True, False, True] + [False] * 6
    assert flag_top_fraction(np.zeros(7), 0.2).sum() == 1  # ties: still round(0.2 * 7)


def test_precision_recall_f1_of_positive_class():
    pred = np.array([1, 1, 1, 0, 0, 0], bool)
    true = np.array([1, 1, 0, 1, 0, 0], bool)
    p, r, f1 = precision_recall_f1(pred, true)
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f1 == pytest.approx(2 / 3)
    assert precision_recall_f1(np.zeros(3, bool), np.ones(3, bool)) == (0.0, 0.0, 0.0)


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


@pytest.mark.parametrize("name", ["ae_fc", "memae_fc", "memae_fc_nonspar"])
def test_tabular_models_registered_with_tiny_variant(name):
    spec = get_spec(name)
    assert spec.family == "tabular" and name in list_models("tabular")
    cfg = make_config(name, **spec.tiny)
    out = create_model(name, cfg)(spec.example_input(cfg))
    assert out.reconstruction.shape == (4, cfg.in_features)
    if cfg.use_memory:
        w = out.weights[0]
        assert w.shape == (4, cfg.memory.slots) and torch.allclose(w.sum(1), torch.ones(4))
    else:
        assert out.weights == []


def test_paper_architecture_and_variants():
    memae = create_model("memae_fc")
    linears = [m for m in memae.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(118, 60), (60, 30), (30, 10), (10, 3)]
    assert memae.memory.slots.shape == (50, 3) and memae.config.entropy_weight == 0.0002
    nonspar = make_config("memae_fc_nonspar")
    assert nonspar.memory.shrink_threshold == 0 and nonspar.entropy_weight == 0


def test_protocol_end_to_end_on_toy_table():
    data = toy(600, d=8)
    split = protocol_split(data, seed=0)
    det = TabularDetector("ae_fc", dict(hidden=(6, 4), latent_dim=2),
                          tabular_train_config(lr=1e-2, batch_size=64, epochs=5, seed=0))
    res = evaluate_on_split(det, split)
    assert res.n_flagged == round(0.2 * len(split.test))
    assert res.precision > 0.9  # the shifted rows reconstruct far worse
    assert res.recall == pytest.approx(res.precision * res.n_flagged / split.test_anomaly.sum())


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
