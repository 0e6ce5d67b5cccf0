import json

import numpy as np
import pytest

from inspect_ad.detectors.bundle import BUNDLE_VERSION, check_model_options, load_bundle, read_bundle_config, save_bundle
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.engine.loop import TrainConfig

TINY = dict(grid_stride=8, latent_channels=8, base_channels=4, max_channels=8, num_scales=3, memory_slots=10)


@pytest.fixture
def fitted(tiny_mvtec, tmp_path):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("mmae", 32, train_config=TrainConfig(epochs=2, batch_size=4), model_options=TINY)
    det.fit(paths, out=tmp_path / "b", progress=False)
    return det, paths, tmp_path / "b"


def test_save_load_gives_identical_maps(fitted):
    det, paths, path = fitted
    loaded = Detector.load(path, device="cpu")
    for a, b in zip(det.anomaly_maps(paths), loaded.anomaly_maps(paths)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))


def test_bundle_is_safetensors_and_json(fitted):
    _, _, path = fitted
    assert sorted(p.name for p in path.iterdir() if p.is_file()) == ["config.json", "model.safetensors"]
    cfg = read_bundle_config(path)
    assert cfg["bundle_version"] == BUNDLE_VERSION
    assert cfg["preprocessing"] == {"image_size": 32, "channels": 1, "normalization": "divide_by_255",
                                    "resize_mode": "squash"}
    assert cfg["training"]["n_train"] == 6 and cfg["training"]["lr"] == 1e-4


def test_bundle_from_another_version_is_refused(fitted):
    _, _, path = fitted
    cfg = json.loads((path / "config.json").read_text())
    cfg["bundle_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InspectError, match="format version 99"):
        load_bundle(path)


def test_pickle_file_is_never_loaded(fitted, tmp_path):
    _, _, path = fitted
    # A pickle payload under the weights' name must be rejected as unreadable, never executed.
    (path / "model.safetensors").write_bytes(b"\x80\x04\x95cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
    with pytest.raises(InspectError, match="cannot be read"):
        load_bundle(path)


def test_standardized_maps_survive_save_and_load(tiny_mvtec, tmp_path):
    from inspect_ad.scoring.anomaly_map import MapConfig
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY,
                   map_config=MapConfig(sigma=1.0, standardize=True))
    det.fit(paths, out=tmp_path / "z", progress=False)
    assert (tmp_path / "z" / "extra.safetensors").is_file()
    loaded = Detector.load(tmp_path / "z", device="cpu")
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))
    loaded.map_reference_ = None
    with pytest.raises(InspectError, match="fit_reference"):
        loaded.score_samples(paths)


def test_reference_split_takes_reference_maps_from_unseen_images(tiny_mvtec, tmp_path):
    from inspect_ad.scoring.anomaly_map import MapConfig
    from inspect_ad.scoring.calibration import holdout_split
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4, seed=3), model_options=TINY,
                   map_config=MapConfig(sigma=1.0, standardize=True))
    det.fit(paths, progress=False, reference_split=2)
    assert det.training_info_["n_train"] == 4 and det.training_info_["n_reference_held_out"] == 2
    fitted_ref = [t.clone() for t in det.map_reference_]
    det.fit_reference(holdout_split(paths, 2, seed=4, purpose="reference")[1], progress=False)
    for a, b in zip(fitted_ref, det.map_reference_):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_reference_split_without_standardized_maps_is_refused(tiny_mvtec):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY)
    with pytest.raises(InspectError, match="--standardize"):
        det.fit(paths, progress=False, reference_split=0.3)


def test_changed_map_settings_need_new_reference_maps(tiny_mvtec, tmp_path):
    from dataclasses import replace

    from inspect_ad.scoring.anomaly_map import MapConfig
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY,
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


def test_bundles_without_recorded_reference_settings_assume_the_saved_map(tiny_mvtec, tmp_path):
    from inspect_ad.scoring.anomaly_map import MapConfig
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY,
                   map_config=MapConfig(sigma=1.0, standardize="score"))
    det.fit(paths, out=tmp_path / "z", progress=False)
    cfg = json.loads((tmp_path / "z" / "config.json").read_text())
    assert cfg.pop("map_reference") == {"metric": "l2", "sigma": 1.0, "scales": [1]}
    (tmp_path / "z" / "config.json").write_text(json.dumps(cfg))    # as written before the record existed
    loaded = Detector.load(tmp_path / "z", device="cpu")
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))


def test_pad_resize_mode_is_saved_and_maps_keep_the_input_shape(tiny_mvtec, tmp_path):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY,
                   resize_mode="pad")
    det.fit(paths, out=tmp_path / "p", progress=False)
    loaded = Detector.load(tmp_path / "p", device="cpu")
    assert loaded.preprocessing_.resize_mode == "pad"
    wide = np.random.default_rng(0).integers(0, 255, (20, 50), dtype=np.uint8)
    (amap,) = loaded.anomaly_maps([wide])
    assert amap.shape == (20, 50)
    with pytest.raises(InspectError, match="choose one of: squash, pad"):
        Detector("ae", 32, resize_mode="fit")


def test_a_pixel_bundle_saved_before_the_pretrained_backbones_still_loads_and_scores_the_same():
    """Made by inspect-ad at commit 8517bbc (a 2-epoch tiny MMAE on 6 noise images, seed 0): its
    config has no ``backbone`` and must load as the pixel model, scoring the probe as it did then."""
    from pathlib import Path

    from inspect_ad.models import MMAEConfig
    data = Path(__file__).parent / "data"
    det = Detector.load(data / "bundle_0.1_pixel_mmae", "cpu")
    assert isinstance(det.model_config_, MMAEConfig) and det.describe() == "mmae (pixels)"
    assert det.score_samples([data / "probe_square.png"])[0] == pytest.approx(0.7531087398529053, rel=1e-5)


def _edit_model_config(path, edit):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg["model"]["config"])
    (path / "config.json").write_text(json.dumps(cfg))


FLAT = {"slots": "memory_slots", "shrink_threshold": "shrink_threshold", "similarity": "similarity",
        "logit_scale": "logit_scale", "init_std": "slot_init_std"}


def test_new_bundles_nest_the_memory_and_flat_old_style_configs_score_the_same(fitted):
    det, paths, path = fitted
    saved = read_bundle_config(path)["model"]["config"]
    assert saved["memory"] == {"slots": 10, "shrink_threshold": None, "similarity": "cosine", "logit_scale": 1.0,
                               "init_std": 1.0}
    _edit_model_config(path, lambda c: c.update({FLAT[k]: v for k, v in c.pop("memory").items()}))
    loaded = Detector.load(path, device="cpu")
    assert loaded.model_config_.memory == det.model_config_.memory
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c["memory"].update(slots=1e9), "model.config.memory.slots is 1000000000.0, but must be an integer"),
    (lambda c: c["memory"].update(similarity="l2"), "model.config.memory.similarity"),
    (lambda c: c["memory"].update(size=3), "unknown fields memory.size"),
    (lambda c: c.update(memory=[10]), "model.config.memory is [10]"),
    (lambda c: c["memory"].update(slots=11), "do not have the shape"),           # caught on the meta device
])
def test_nested_memory_fields_are_checked_on_load(fitted, edit, needle):
    _, _, path = fitted
    _edit_model_config(path, edit)
    with pytest.raises(InspectError) as info:
        load_bundle(path)
    assert needle in str(info.value)


@pytest.mark.parametrize("options,needle", [
    (dict(memory_slots=-1), "-o memory_slots=-1: memory_slots must be an integer >= 1"),
    ({"memory.similarity": "l2"}, "-o memory.similarity=\"l2\": memory.similarity must be one of cosine, dot"),
    (dict(memory={"slots": 0}), "-o memory.slots=0"),
])
def test_fit_time_option_check_reads_every_memory_spelling(options, needle):
    with pytest.raises(InspectError) as info:
        check_model_options("mmae", options)
    assert needle in str(info.value)


def test_a_video_bundle_saved_with_its_learning_rate_in_the_model_config_loads(tmp_path):
    """Before the learning rate became a training setting, video configs held it (and the memory
    options flat): such a bundle loads, the learning rate dropped, with the same weights."""
    import torch

    from inspect_ad.models import create_model, get_spec
    torch.manual_seed(0)
    model = create_model("memae3d", **get_spec("memae3d").tiny)
    old = {"in_channels": 1, "clip_length": 16, "image_size": 32, "widths": [4, 4, 8, 8], "memory_slots": 20,
           "use_memory": True, "shrink_threshold": None, "entropy_weight": 0.0002, "logit_scale": 1.0,
           "learning_rate": 0.0001}
    save_bundle(tmp_path / "v", model, "memae3d", old)
    bundle = load_bundle(tmp_path / "v")
    assert not hasattr(bundle.config, "learning_rate") and bundle.config.memory.slots == 20
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bundle.model.state_dict().items())
