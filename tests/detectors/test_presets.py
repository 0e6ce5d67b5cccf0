"""The library's defaults are the product's (inspect_ad/detectors/presets.py): ``Detector()`` fits
the bundle that ``inspect-ad fit`` with no options fits."""
import hashlib
import json

import numpy as np
from click.testing import CliRunner
from conftest import noise, write_png
from safetensors.numpy import load_file

from inspect_ad.cli import main
from inspect_ad.detectors.image import Detector
from inspect_ad.detectors.presets import FEATURE_SIGMA, IMAGE_MODEL, PIXEL_SIGMA

# what differs between two fits of the same model: how long it took and the data's name (the CLI
# takes it from the folder); the CLI also records its command line (fit_options)
RUN_ONLY = ("seconds", "dataset")


def bundle_hash(folder) -> str:
    config = json.loads((folder / "config.json").read_text())
    config.pop("fit_options", None)
    for key in RUN_ONLY:
        config["training"].pop(key)
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(load_file(folder / "model.safetensors").items()):
        h.update(name.encode() + tensor.tobytes())
    return h.hexdigest()


def test_detector_without_arguments_is_fit_without_options(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(tmp_path / "train" / f"{i}.png", noise(rng))
    Detector().fit(sorted((tmp_path / "train").glob("*.png")), out=tmp_path / "api", progress=False)
    r = CliRunner().invoke(main, ["fit", "--train-dir", str(tmp_path / "train"), "--out", str(tmp_path / "cli"),
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    assert bundle_hash(tmp_path / "api") == bundle_hash(tmp_path / "cli")


def test_default_smoothing_follows_what_the_model_scores():
    assert Detector().model == IMAGE_MODEL and Detector().map_config.sigma == FEATURE_SIGMA
    assert Detector("mmae", model_options={"backbone": "efficientnet_lite0"}).map_config.sigma == FEATURE_SIGMA
    assert Detector("mmae").map_config.sigma == PIXEL_SIGMA          # no backbone: the pixel model
