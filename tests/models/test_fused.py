"""The fused model mmae_patchcore (inspect_ad/models/fused.py): trained as the feature MMAE, then a
PatchCore bank filled, each map standardised on the training images; a bundle round trip."""
import json

import numpy as np
import pytest
import torch

from conftest import noise, tiny_model_options, write_png

from inspect_ad.detectors.image import Detector
from inspect_ad.errors import ConfigError, InspectError
from inspect_ad.models import make_config
from inspect_ad.models.patchcore import nearest_distance
from inspect_ad.training.loop import TrainConfig

SIZE = 32


@pytest.fixture(scope="module")
def train_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    rng = np.random.default_rng(0)
    return [write_png(root / f"{i}.png", noise(rng, (SIZE, SIZE))) for i in range(8)]


def _fit(train_images, **options) -> Detector:
    det = Detector("mmae_patchcore", SIZE, train_config=TrainConfig(epochs=2, batch_size=4, seed=0, device="cpu"),
                   model_options={**tiny_model_options("mmae_patchcore"), **options})
    return det.fit(train_images, progress=False)


@pytest.fixture(scope="module")
def fitted(train_images):
    return _fit(train_images)


def _raw_maps(det: Detector, images) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([det._input(p) for p in images])
    with torch.no_grad():
        out, distance = det.model_.maps(x)
    return out.anomaly_map, distance


@pytest.mark.parametrize("normalisation", ["std", "quantile"])
def test_each_standardised_map_is_centred_on_the_training_images(train_images, normalisation):
    det = _fit(train_images, normalisation=normalisation)
    c = det.model_config_
    residual, distance = _raw_maps(det, train_images)
    for raw, centre, scale in ((residual, c.mmae_centre, c.mmae_scale), (distance, c.patchcore_centre,
                                                                          c.patchcore_scale)):
        z = (raw - centre) / scale
        assert abs(float(z.mean())) < 1e-4 and scale > 0
        if normalisation == "std":
            assert float(z.std()) == pytest.approx(1.0, rel=1e-3)
        else:   # the 99th percentile one scale above the mean
            assert float(torch.quantile(z.flatten(), 0.99)) == pytest.approx(1.0, rel=1e-3)


def test_the_map_is_the_weighted_sum_of_the_standardised_maps(fitted, train_images):
    c = fitted.model_config_
    x = torch.cat([fitted._input(p) for p in train_images[:2]])
    with torch.no_grad():
        fused = fitted.model_(x).anomaly_map
        residual, distance = _raw_maps(fitted, train_images[:2])
        # the bank is PatchCore's: its distance is patchcore's nearest_distance on its features
        assert torch.allclose(distance, nearest_distance(fitted.model_.bank, fitted.model_.patch_features(x)))
    expected = (residual - c.mmae_centre) / c.mmae_scale + (distance - c.patchcore_centre) / c.patchcore_scale
    assert torch.allclose(fused, expected, atol=1e-5)
    assert c.bank_slots == fitted.model_.bank.num_slots > 1 and fitted.history_   # trained, then filled


def test_fit_save_load_gives_identical_scores_and_keeps_the_statistics(fitted, train_images, tmp_path):
    fitted.save(tmp_path / "b")
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["model"]["config"]
    assert saved["patchcore_scale"] == fitted.model_config_.patchcore_scale and saved["bank_slots"] > 1
    loaded = Detector.load(tmp_path / "b", "cpu")
    np.testing.assert_array_equal(fitted.score_samples(train_images), loaded.score_samples(train_images))
    for a, b in zip(fitted.anomaly_maps(train_images[:2]), loaded.anomaly_maps(train_images[:2])):
        np.testing.assert_array_equal(a, b)


def test_fusion_options_are_checked():
    with pytest.raises(ConfigError, match="normalisation"):
        make_config("mmae_patchcore", normalisation="max")
    with pytest.raises(ConfigError, match="patchcore_weight=-1"):
        make_config("mmae_patchcore", patchcore_weight=-1)


def test_the_bank_is_the_one_patchcore_fills_from_the_same_images(fitted, train_images):
    """One implementation path: the fused model's bank and distances are --model patchcore's."""
    patchcore = Detector("patchcore", SIZE, train_config=TrainConfig(epochs=1, batch_size=4, seed=0, device="cpu"),
                         model_options=tiny_model_options("patchcore")).fit(train_images, progress=False)
    assert torch.equal(patchcore.model_.memory.slots, fitted.model_.bank.slots)
    x = torch.cat([fitted._input(p) for p in train_images[:2]])
    with torch.no_grad():
        assert torch.allclose(patchcore.model_(x).anomaly_map, _raw_maps(fitted, train_images[:2])[1])


def test_several_processes_are_refused_before_any_training(train_images, monkeypatch):
    monkeypatch.setattr("inspect_ad.detectors.image.world_size", lambda: 2)
    det = Detector("mmae_patchcore", SIZE, train_config=TrainConfig(epochs=2, batch_size=4, seed=0, device="cpu"),
                   model_options=tiny_model_options("mmae_patchcore"))
    monkeypatch.setattr(det, "_train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(InspectError, match="one process only; drop --nproc"):
        det.fit(train_images, progress=False)
