"""Model bundles: the safetensors + JSON format, old bundles, crafted and broken bundles, atomic saves
(inspect_ad/detectors/bundle.py)."""
import copy
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import FIXTURES, copy_bundle, tiny_model_options

from inspect_ad.detectors import bundle
from inspect_ad.detectors.bundle import (BUNDLE_VERSION, check_model_options, load_bundle, read_bundle_config,
                                         save_bundle)
from inspect_ad.detectors.image import Detector
from inspect_ad.training.loop import TrainConfig
from inspect_ad.errors import InspectError

TINY_AE = tiny_model_options("ae")   # the registered tiny variant


@pytest.fixture
def fitted(mvtec_bundle, tmp_path):
    """The session's tiny MMAE (2 epochs on tiny_mvtec's 6 training images), its bundle copied for
    this test to edit."""
    det, paths, path = mvtec_bundle
    return det, paths, copy_bundle(path, tmp_path / "b")


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
                                    "resize_mode": "squash", "tile": None, "tile_overlap": 0.0}
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
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY_AE,
                   map_config=MapConfig(sigma=1.0, standardize=True))
    det.fit(paths, out=tmp_path / "z", progress=False)
    assert (tmp_path / "z" / "extra.safetensors").is_file()
    loaded = Detector.load(tmp_path / "z", device="cpu")
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))
    loaded.map_reference_ = None
    with pytest.raises(InspectError, match="fit_reference"):
        loaded.score_samples(paths)


def test_bundles_without_recorded_reference_settings_assume_the_saved_map(tiny_mvtec, tmp_path):
    from inspect_ad.scoring.anomaly_map import MapConfig
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    det = Detector("ae", 32, train_config=TrainConfig(epochs=1, batch_size=4), model_options=TINY_AE,
                   map_config=MapConfig(sigma=1.0, standardize="score"))
    det.fit(paths, out=tmp_path / "z", progress=False)
    cfg = json.loads((tmp_path / "z" / "config.json").read_text())
    assert cfg.pop("map_reference") == {"metric": "l2", "sigma": 1.0, "scales": [1]}
    (tmp_path / "z" / "config.json").write_text(json.dumps(cfg))    # as written before the record existed
    loaded = Detector.load(tmp_path / "z", device="cpu")
    np.testing.assert_array_equal(det.score_samples(paths), loaded.score_samples(paths))


def test_a_pixel_bundle_saved_before_the_pretrained_backbones_still_loads_and_scores_the_same():
    """Made by inspect-ad at commit 8517bbc (a 2-epoch tiny MMAE on 6 noise images, seed 0): its
    config has no ``backbone`` and must load as the pixel model, scoring the probe as it did then."""
    from inspect_ad.models import MMAEConfig
    data = FIXTURES
    det = Detector.load(data / "bundle_0.1_pixel_mmae", "cpu")
    assert isinstance(det.model_config_, MMAEConfig) and det.describe() == "mmae (pixels)"
    assert det.score_samples([data / "probe_square.png"])[0] == pytest.approx(0.7531087398529053, rel=1e-5)


def _edit_model_config(path, edit):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg["model"]["config"])
    (path / "config.json").write_text(json.dumps(cfg))


FLAT = {"slots": "memory_slots", "shrink_threshold": "shrink_threshold", "similarity": "similarity",
        "logit_scale": "logit_scale", "init_std": "slot_init_std", "top_k": "memory_top_k"}


def test_new_bundles_nest_the_memory_and_flat_old_style_configs_score_the_same(fitted):
    det, paths, path = fitted
    saved = read_bundle_config(path)["model"]["config"]
    assert saved["memory"] == {"slots": 10, "shrink_threshold": None, "similarity": "cosine", "logit_scale": 1.0,
                               "init_std": 1.0, "top_k": None}
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


def crafted(qa, tmp_path, edit):
    root, _ = qa
    shutil.copytree(root / "model", tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    edit(cfg)
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "b"


def test_bundle_with_nan_weights_is_refused(qa, tmp_path):
    b = crafted(qa, tmp_path, lambda cfg: None)
    state = load_file(str(b / "model.safetensors"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][...] = float("nan")
    save_file(state, str(b / "model.safetensors"))
    with pytest.raises(InspectError, match="NaN"):
        Detector.load(b, "cpu")


CRAFTED = {
    "sigma -3": lambda c: c["anomaly_map"].update(sigma=-3),
    "channels 5": lambda c: c["preprocessing"].update(channels=5),
    "NaN pixel threshold": lambda c: c["calibration"].update(pixel_threshold=float("nan")),
    "inf image threshold": lambda c: c["calibration"].update(image_threshold=float("inf")),
    "negative min_area": lambda c: c["calibration"].update(min_area=-1),
    "script in calibration.n": lambda c: c["calibration"].update(n="<script>alert(1)</script>"),
    "memory_slots 1e9": lambda c: c["model"]["config"].update(memory_slots=1e9),
    "memory_slots 10**9": lambda c: c["model"]["config"].update(memory_slots=10 ** 9),
    "image_size 60000": lambda c: (c["preprocessing"].update(image_size=60000),
                                   c["model"]["config"].update(image_size=60000)),
    "missing calibration key": lambda c: c["calibration"].pop("image_threshold"),
    "preprocessing not an object": lambda c: c.update(preprocessing=[32, 1]),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_bundle_values_are_refused_on_load(qa, tmp_path, case):
    b = crafted(qa, tmp_path, CRAFTED[case])
    with pytest.raises(InspectError, match="config.json|model.safetensors"):
        Detector.load(b, "cpu")


def test_interrupted_bundle_save_keeps_the_old_bundle_whole(qa, tmp_path, monkeypatch):
    _, det = qa
    det.save(tmp_path / "b")
    (tmp_path / "b" / "checkpoint").mkdir()
    before = {f.name: f.read_bytes() for f in (tmp_path / "b").iterdir() if f.is_file()}

    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(bundle, "atomic_write_json", crash)
    retrained = copy.deepcopy(det)
    with torch.no_grad():
        next(retrained.model_.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):  # while writing config.json, after the new weights
        retrained.save(tmp_path / "b")
    assert {f.name: f.read_bytes() for f in (tmp_path / "b").iterdir() if f.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left


def test_bundle_save_keeps_other_files_of_the_folder(qa, tmp_path):
    _, det = qa
    det.save(tmp_path / "b")
    (tmp_path / "b" / "checkpoint").mkdir()
    det.save(tmp_path / "b")
    assert (tmp_path / "b" / "checkpoint").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_bundle_save_through_a_symlink_writes_where_it_points(qa, tmp_path):
    _, det = qa
    det.save(tmp_path / "v3")
    (tmp_path / "current").symlink_to(tmp_path / "v3")
    det.save(tmp_path / "current")
    assert (tmp_path / "current").is_symlink() and (tmp_path / "v3" / "config.json").is_file()
