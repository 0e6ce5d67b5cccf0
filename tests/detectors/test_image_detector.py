"""The image Detector (inspect_ad/detectors/image.py): reference maps, resizing, input checks, and the
models on pretrained features."""
import json
import logging

import cv2
import numpy as np
import pytest

from conftest import copy_bundle, tiny_model_options, TINY_IMAGE_SIZE, TINY_MODEL_OPTIONS

import inspect_ad
from inspect_ad.data import from_mvtec
from inspect_ad.detectors.bundle import BUNDLE_FILES
from inspect_ad.detectors.image import Detector, checkpoint_path
from inspect_ad.training.loop import TrainConfig
from inspect_ad.errors import InspectError
from inspect_ad.models import FeatureMMAEConfig, TINY_FEATURE
from inspect_ad.scoring.anomaly_map import MapConfig

TINY_AE = tiny_model_options("ae")   # the registered tiny variant


def test_reference_split_takes_reference_maps_from_unseen_images(tiny_mvtec, tmp_path):
    from inspect_ad.scoring.anomaly_map import MapConfig
    from inspect_ad.scoring.calibration import holdout_split
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4, seed=3), model_options=TINY_AE,
                   map_config=MapConfig(sigma=1.0, standardize=True))
    det.fit(paths, progress=False, reference_split=2)
    assert det.training_info_["n_train"] == 4 and det.training_info_["n_reference_held_out"] == 2
    fitted_ref = [t.clone() for t in det.map_reference_]
    det.fit_reference(holdout_split(paths, 2, seed=4, purpose="reference")[1], progress=False)
    for a, b in zip(fitted_ref, det.map_reference_):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_reference_split_without_standardized_maps_is_refused(tiny_mvtec):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY_AE)
    with pytest.raises(InspectError, match="--standardize"):
        det.fit(paths, progress=False, reference_split=0.3)


def test_changed_map_settings_need_new_reference_maps(tiny_mvtec, tmp_path):
    from dataclasses import replace

    from inspect_ad.scoring.anomaly_map import MapConfig
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY_AE,
                   map_config=MapConfig(sigma=1.0, standardize="score"))
    det.fit(paths, out=tmp_path / "z", progress=False)
    loaded = Detector.load(tmp_path / "z", device="cpu")
    assert loaded.reference_is_current()
    for d in (det, loaded):
        d.map_config = replace(d.map_config, sigma=2.0)    # z-scores against sigma-1 maps would be wrong
        with pytest.raises(InspectError, match=r"made with map settings .*'l2', 1\.0.* now uses .*'l2', 2\.0"):
            d.score_samples(paths)
    loaded.fit_reference(paths, progress=False)
    assert loaded.reference_is_current() and np.isfinite(loaded.score_samples(paths)).all()
    loaded.map_config = replace(loaded.map_config, pooling="mean", standardize="map")   # not a raw setting
    assert loaded.reference_is_current()


def test_pad_resize_mode_is_saved_and_maps_keep_the_input_shape(tiny_mvtec, tmp_path):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY_AE,
                   resize_mode="pad")
    det.fit(paths, out=tmp_path / "p", progress=False)
    loaded = Detector.load(tmp_path / "p", device="cpu")
    assert loaded.preprocessing_.resize_mode == "pad"
    wide = np.random.default_rng(0).integers(0, 255, (20, 50), dtype=np.uint8)
    (amap,) = loaded.anomaly_maps([wide])
    assert amap.shape == (20, 50)
    with pytest.raises(InspectError, match="choose one of: squash, pad"):
        Detector("ae", 32, resize_mode="fit")


def test_predict_fails_a_nan_score(qa, monkeypatch):
    root, det = qa
    p = next(det.predict_iter([root / "parts" / "g0.png"]))
    p.score = float("nan")
    monkeypatch.setattr(Detector, "_checked", lambda self, inputs: [p])
    assert det.predict(["any.png"]).tolist() == ["FAIL"]


def test_predict_returns_decisions_that_compare_with_strings_and_the_enum(qa):
    root, det = qa
    black = np.zeros((40, 48), np.uint8)
    pred = det.predict([root / "train" / "5.png", black])    # a calibration image: at most the threshold
    assert pred.tolist() == ["PASS", "INVALID"]
    assert (pred == inspect_ad.Decision.PASS).tolist() == [True, False]
    assert (pred == "INVALID").tolist() == [False, True]
    assert f"{inspect_ad.Decision.FAIL}" == "FAIL"


def test_a_16_bit_file_scores_like_its_8_bit_picture_and_shows_as_8_bits(qa, tmp_path):
    root, det = qa
    eight = cv2.imread(str(root / "parts" / "g0.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(tmp_path / "g0.tif"), eight.astype(np.uint16) * 257)
    a, b = det.predict_iter([root / "parts" / "g0.png", tmp_path / "g0.tif"], keep_image=True)
    assert b.score == pytest.approx(a.score, rel=1e-2) and b.invalid is None   # resizing rounds to each depth's levels
    assert b.image.dtype == np.uint8 and np.array_equal(a.image, b.image)


def test_frame_far_brighter_than_training_is_invalid(qa):
    _, det = qa
    bright = np.full((40, 48, 1), 230, np.uint8) + np.random.default_rng(1).integers(0, 5, (40, 48, 1), dtype=np.uint8)
    assert "mean grey level" in next(det.predict_iter([bright])).invalid


def test_colour_image_on_a_grey_model_does_not_suggest_a_missing_option(qa, tmp_path):
    _, det = qa
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    err = next(det.predict_iter([rgb])).error
    assert "colour" in err and "--channels" not in err


def test_detector_refuses_an_image_size_out_of_range():
    with pytest.raises(InspectError, match=r"image_size=0: must be .*one side or a \(height, width\) pair"):
        Detector("mmae", image_size=0)


def fit_tiny(name, root, tmp_path, **options):
    data = from_mvtec(root, "widget")
    det = Detector(name, 32, train_config=TrainConfig(epochs=2, batch_size=4, lr=1e-3, seed=0, device="cpu"),
                   model_options={k: v for k, v in options.items() if k != "image_size"})
    det.fit(data.train, out=tmp_path / name, progress=False)
    return det, data


def test_patchcore_fits_without_training_and_reloads_identically(tiny_mvtec, tmp_path):
    det, data = fit_tiny("patchcore", tiny_mvtec, tmp_path, stages=[1, 2], coreset_ratio=0.5)
    assert det.history_ == [] and det.model_.memory.num_slots > 1
    assert det.training_info_["backbone_weights"].startswith("efficientnet-lite0")
    paths = [s.image for s in data.test]
    again = Detector.load(tmp_path / "patchcore", "cpu")
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))


def test_patchcore_scores_the_defects_above_the_good_parts(tiny_mvtec, tmp_path):
    det, data = fit_tiny("patchcore", tiny_mvtec, tmp_path, stages=[1, 2], coreset_ratio=0.5)
    scores = det.score_samples([s.image for s in data.test])
    labels = np.array([s.is_anomalous for s in data.test])
    assert scores[labels].min() > scores[~labels].max()


def test_feature_mmae_fits_on_cached_features_and_reloads_identically(tiny_mvtec, tmp_path):
    det, data = fit_tiny("mmae", tiny_mvtec, tmp_path, **TINY_FEATURE)
    assert len(det.history_) == 2 and np.isfinite(det.history_[-1]["loss"])
    paths = [s.image for s in data.test]
    again = Detector.load(tmp_path / "mmae", "cpu")
    assert isinstance(again.model_config_, FeatureMMAEConfig)
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))


def test_fit_seeds_the_memories_from_the_cached_features_before_training(tiny_mvtec, tmp_path, monkeypatch):
    from inspect_ad.models import FeatureMMAE
    calls, original = [], FeatureMMAE.seed_memories

    def spy(model, batches, seed=0):
        calls.append((seed, not model.training or all(p.grad is None for p in model.parameters())))
        return original(model, batches, seed)
    monkeypatch.setattr(FeatureMMAE, "seed_memories", spy)
    fit_tiny("mmae", tiny_mvtec, tmp_path, **TINY_FEATURE, slot_init="data")
    assert calls == [(0, True)]   # once, with the training seed, before any step


@pytest.mark.parametrize("name", ["mmae", "patchcore"])
def test_feature_models_refuse_pixel_only_training_terms(tiny_mvtec, name):
    data = from_mvtec(tiny_mvtec, "widget")
    options = {k: v for k, v in TINY_FEATURE.items() if k != "image_size"} if name == "mmae" else {}
    det = Detector(name, 32, train_config=TrainConfig(epochs=1, device="cpu", synthetic_defects=0.5),
                   model_options=options)
    with pytest.raises(InspectError, match="apply to pixel models"):
        det.fit(data.train, progress=False)


@pytest.mark.parametrize("settings", [dict(resize_mode="pad"), dict(normalization="stretch"),
                                      dict(map_config=MapConfig(sigma=2, standardize="score"))])
def test_patchcore_takes_the_preprocessing_and_map_options(tiny_mvtec, tmp_path, settings):
    data = from_mvtec(tiny_mvtec, "widget")
    det = Detector("patchcore", 32, train_config=TrainConfig(batch_size=4, device="cpu"),
                   model_options={"stages": [1, 2], "coreset_ratio": 0.5}, **settings)
    det.fit(data.train, out=tmp_path / "m", progress=False)
    again = Detector.load(tmp_path / "m", "cpu")
    paths = [s.image for s in data.test]
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))
    assert [m.shape for m in again.anomaly_maps(paths)] == [(40, 48)] * len(paths)


def test_calibrate_writes_into_the_detectors_bundle_unless_told_not_to(mvtec_bundle, tmp_path):
    _, paths, bundle = mvtec_bundle
    copy_bundle(bundle, tmp_path / "m")
    det = Detector.load(tmp_path / "m", "cpu")
    saved = lambda: json.loads((tmp_path / "m" / "config.json").read_text()).get("calibration")  # noqa: E731
    det.calibrate(paths, target_frr=0.2, progress=False, save=False)
    assert saved() is None and det.calibration_ is not None
    det.calibrate(paths, target_frr=0.2, progress=False)
    assert saved() == json.loads(json.dumps(det.calibration_))
    assert Detector.load(tmp_path / "m", "cpu").threshold_ == det.threshold_


def tiny_detector(epochs=1):
    return Detector("mmae", TINY_IMAGE_SIZE, model_options=TINY_MODEL_OPTIONS,
                    train_config=TrainConfig(epochs=epochs, batch_size=4, seed=0, device="cpu"))


def test_calibrate_without_a_bundle_says_it_is_kept_in_memory(tiny_mvtec, tmp_path, caplog):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = tiny_detector().fit(paths, progress=False)
    with caplog.at_level(logging.WARNING, "inspect_ad.detectors.image"):
        det.calibrate(paths, target_frr=0.2, progress=False)
    assert "kept in memory only" in caplog.text and "save(path)" in caplog.text and det.calibration_
    with pytest.raises(InspectError, match="no bundle"):
        det.calibrate(paths, target_frr=0.2, progress=False, save=True)
    det.save(tmp_path / "m")
    det.calibrate(paths, target_frr=0.25, progress=False)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["calibration"]["target_frr"] == 0.25


def test_a_finished_fit_leaves_only_the_bundle_in_its_folder(mvtec_bundle):
    _, _, bundle = mvtec_bundle
    assert {f.name for f in bundle.iterdir()} <= set(BUNDLE_FILES)
    assert (checkpoint_path(bundle) / "optimizer.safetensors").is_file()   # beside it, for --resume


def test_a_fit_resumes_from_the_checkpoint_beside_its_bundle(tiny_mvtec, tmp_path, caplog):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    tiny_detector(epochs=1).fit(paths, out=tmp_path / "m", progress=False)   # "interrupted" after 1 epoch
    with caplog.at_level(logging.INFO, "inspect_ad.training.loop"):
        det = tiny_detector(epochs=2).fit(paths, out=tmp_path / "m", resume=True, progress=False)
    assert f"resumed from {tmp_path / 'm.checkpoint'} at epoch 1" in caplog.text
    assert [h["epoch"] for h in det.history_] == [1, 2]
    assert {f.name for f in (tmp_path / "m").iterdir()} <= set(BUNDLE_FILES)
