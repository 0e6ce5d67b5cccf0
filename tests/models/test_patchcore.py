"""PatchCore's maps at the image borders (inspect_ad/models/patchcore.py): no bands along the bottom
and right edges, and bundles saved before the fix load as they were made."""
import cv2
import numpy as np
import pytest

from inspect_ad.detectors.image import Detector
from inspect_ad.training.loop import TrainConfig

SIZE, STRIP = 64, 4   # lite0 stages 2, 3 (the default) on 64 px: an 8 × 8 grid; the outer 4 px


def texture(rng) -> np.ndarray:
    """A stationary texture: smooth noise, the same statistics everywhere, borders included."""
    z = cv2.resize(rng.normal(size=(SIZE // 4, SIZE // 4)).astype(np.float32), (SIZE, SIZE),
                   interpolation=cv2.INTER_CUBIC)
    return np.clip(128 + 40 * z, 0, 255).astype(np.uint8)[..., None]


@pytest.fixture(scope="module")
def good_maps(tmp_path_factory):
    """Maps of 20 good images of a patchcore fitted on 20 others, as fitted now and as before the fix."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("textures")
    train = [folder / f"{i}.png" for i in range(20)]
    for path in train:
        cv2.imwrite(str(path), texture(rng))
    good = [texture(rng) for _ in range(20)]
    maps = {}
    for name, options in (("now", {}), ("before", {"pad_input": False, "align_grid": False})):
        det = Detector("patchcore", SIZE, train_config=TrainConfig(1, 8, seed=0, device="cpu"), model_options=options)
        maps[name] = np.stack(det.fit(train, progress=False).anomaly_maps(good))
    return maps


def bands(maps: np.ndarray) -> tuple[float, float, int]:
    """(bottom strip, right strip) of the mean map over its interior, and how many maps peak there."""
    mean, inner = maps.mean(axis=0), maps.mean(axis=0)[STRIP:-STRIP, STRIP:-STRIP].mean()
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
    at_edge = sum(y >= SIZE - STRIP or x >= SIZE - STRIP for y, x in peaks)
    return mean[-STRIP:].mean() / inner, mean[:, -STRIP:].mean() / inner, at_edge


def test_good_maps_have_no_band_or_maximum_along_the_bottom_and_right_borders(good_maps):
    bottom, right, at_edge = bands(good_maps["now"])
    assert bottom < 1.02 and right < 1.02 and at_edge <= len(good_maps["now"]) // 2
    # the maps as they were: the band, and nearly every good map peaking in it
    bottom, right, at_edge = bands(good_maps["before"])
    assert bottom > 1.04 and right > 1.04 and at_edge >= 0.9 * len(good_maps["before"])


def test_a_bundle_saved_before_the_fix_loads_without_it(tmp_path):
    import json
    det = Detector("patchcore", 32, train_config=TrainConfig(1, 4, seed=0, device="cpu"),
                   model_options={"stages": (1, 2)})
    train = []
    for i in range(4):
        train.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(train[-1]), texture(np.random.default_rng(i))[:32, :32])
    det.fit(train, out=tmp_path / "b", progress=False)
    config = json.loads((tmp_path / "b/config.json").read_text())
    for key in ("pad_input", "align_grid"):   # what a bundle of the version before holds
        del config["model"]["config"][key]
    (tmp_path / "b/config.json").write_text(json.dumps(config))
    old = Detector.load(tmp_path / "b", "cpu").model_config_
    assert (old.pad_input, old.align_grid) == (False, False) and det.model_config_.pad_input
