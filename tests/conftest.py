"""Shared test settings, data and fitted bundles.

The tests mirror the package (tests/data/ tests inspect_ad/data/, ...); tests/fixtures/ holds saved
bundles from older versions. Everything here is built once per session where it can be: a test that
edits a shared bundle or folder works on a copy (``copy_bundle``, ``parts_copy``) in its own tmp_path.
"""
import gzip
import importlib.util
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from click.testing import CliRunner

from inspect_ad.cli.image import main as cli_main
from inspect_ad.data.tabular import TabularData
from inspect_ad.detectors.image import Detector
from inspect_ad.training.loop import TrainConfig
from inspect_ad.models import ablation_options, get_spec

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Recipes set torch's thread count for their runs (1 per worker); a test that runs one in
    process must not leave the rest of the suite on one thread."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory, monkeypatch):
    """``fit`` records the last fitted bundle (the default --bundle) in a state folder: a test's own,
    never the user's."""
    monkeypatch.setenv("INSPECT_AD_STATE", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("INSPECT_AD_DATA", raising=False)


TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"            # bundles saved by older versions, and the probe image they score
RECIPES = TESTS.parent / "recipes"


# ---------------------------------------------------------------- tiny settings (from the registry)

def tiny_model_options(model: str = "mmae") -> dict:
    """The registered tiny variant of ``model`` as model options: without ``image_size``, which the
    detectors and the CLI take as a setting of their own (--image-size)."""
    return {k: v for k, v in get_spec(model).tiny.items() if k != "image_size"}


def option_args(options: dict) -> list[str]:
    """``options`` as the CLI's ``-o KEY=VALUE`` arguments."""
    return [a for k, v in options.items() for a in ("-o", f"{k}={v}")]


# Small enough that a fit takes a second or two on a CPU: grid_stride=8, latent_channels=8,
# base_channels=4, max_channels=8, num_scales=3, memory_slots=10.
TINY_MODEL_OPTIONS = tiny_model_options("mmae")
TINY_OPTIONS = option_args(TINY_MODEL_OPTIONS)
TINY_IMAGE_SIZE = get_spec("mmae").tiny["image_size"]
# The pixel MMAE (trained from scratch): the CLI's default is patchcore on a pretrained backbone.
PIXEL = ["--model", "mmae", "--backbone", "none"]


def fast_fit_args(epochs: int = 1, model: str = "mmae") -> list[str]:
    """``inspect-ad fit`` arguments for a fast CPU fit of ``model``'s tiny pixel variant (memae's
    has no num_scales: the ablation fixes it; see ``ablation_options``)."""
    options = ablation_options(model, tiny_model_options(model))
    return ["--epochs", str(epochs), "--batch-size", "4", "--image-size", str(TINY_IMAGE_SIZE), "--quiet",
            "--device", "cpu", "--model", model, "--backbone", "none", *option_args(options)]


# ---------------------------------------------------------------- small helpers

def load_recipe(name: str):
    """Import ``recipes/<name>.py`` (recipes are scripts, not a package) to call its main()."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def encoded(img, suffix=".png", params=()) -> bytes:
    """``img`` encoded by OpenCV as ``suffix``, as bytes (written with ``open``: cv2.imwrite crashes on
    file names that are not UTF-8)."""
    ok, buf = cv2.imencode(suffix, img, list(params))
    assert ok
    return buf.tobytes()


def png_claiming(width, height) -> bytes:
    """A valid PNG of a few bytes whose header claims ``width``×``height`` pixels (a decompression
    bomb's header; its data would decode to zeros)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def frames_file(fmt, n, shape=(40, 48), defect_on=None) -> bytes:
    """A file of ``n`` grey frames in Pillow's format ``fmt`` (TIFF pages, GIF, PNG or WebP animation);
    frame ``defect_on`` gets a bright square."""
    from PIL import Image
    rng = np.random.default_rng(n)
    frames = []
    for i in range(n):
        img = noise(rng, shape)
        if i == defect_on:
            img[10:22, 12:26] = 250
        frames.append(Image.fromarray(img))
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def noise(rng, shape=(40, 48)):
    """A flat grey part with a little noise: the good images of the tiny data sets."""
    return rng.integers(90, 110, shape, dtype=np.uint8)


def copy_bundle(bundle, dest):
    """A private copy of a shared bundle folder, for a test that edits it (or might)."""
    shutil.copytree(bundle, dest)
    return dest


def parts_copy(qa, tmp_path):
    """A private copy of the ``qa`` fixture's parts folder."""
    root, _ = qa
    shutil.copytree(root / "parts", tmp_path / "parts")
    return tmp_path / "parts"


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fake_mnist(root: Path, per_class: int = 30) -> None:
    """Class 0 is dark, the other digits bright: any reconstruction model separates them."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class)
    images = np.where(labels[:, None, None] == 0, rng.integers(0, 30, (len(labels), 28, 28)),
                      rng.integers(150, 255, (len(labels), 28, 28)))
    for split, sl in (("train", slice(0, None, 2)), ("t10k", slice(1, None, 2))):
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[sl])))
        (root / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels[sl]))  # plain, not gzip


def toy_table(n=400, d=6, seed=0) -> TabularData:
    """Normal rows near 0, anomalies (25 %) shifted by +3 on every feature."""
    rng = np.random.default_rng(seed)
    anomaly = rng.random(n) < 0.25
    x = rng.normal(0, 0.1, (n, d)) + 3.0 * anomaly[:, None]
    return TabularData(x.astype(np.float32), anomaly)


# ---------------------------------------------------------------- data sets

def make_tiny_mvtec(root: Path) -> Path:
    """root/widget in MVTec AD layout: 6 good train images, 2 good + 2 defective test images."""
    rng = np.random.default_rng(0)
    cat = root / "mvtec" / "widget"
    for i in range(6):
        write_png(cat / "train" / "good" / f"{i:03d}.png", rng.integers(90, 110, (40, 48), dtype=np.uint8))
    for i in range(2):
        write_png(cat / "test" / "good" / f"{i:03d}.png", rng.integers(90, 110, (40, 48), dtype=np.uint8))
        img = rng.integers(90, 110, (40, 48), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:20, 12:24] = 255
        img[mask > 0] = 250
        write_png(cat / "test" / "scratch" / f"{i:03d}.png", img)
        write_png(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png", mask)
    return root / "mvtec"


@pytest.fixture
def tiny_mvtec(tmp_path):
    """A fresh tiny MVTec folder per test (tests add, break and replace its files)."""
    return make_tiny_mvtec(tmp_path)


# ---------------------------------------------------------------- fitted bundles, once per session

@pytest.fixture(scope="session")
def mvtec_bundle(tmp_path_factory):
    """A tiny pixel MMAE fitted for 2 epochs on the 6 training images of a tiny MVTec folder (the same
    images as ``tiny_mvtec``'s): (the fitted detector, the training image paths, the bundle folder).
    Shared: read it, or edit a ``copy_bundle``."""
    root = make_tiny_mvtec(tmp_path_factory.mktemp("mvtec_bundle"))
    paths = sorted((root / "widget" / "train" / "good").glob("*.png"))
    det = Detector("mmae", TINY_IMAGE_SIZE, train_config=TrainConfig(epochs=2, batch_size=4),
                   model_options=TINY_MODEL_OPTIONS)
    det.fit(paths, out=root.parent / "bundle", progress=False)
    return det, paths, root.parent / "bundle"


N_QA_TRAIN = 10


def noise_after_qa_training():
    """The random stream of the ``qa_bundles`` images, past its training images: the modules draw
    their own parts from it, so they are the images those modules drew before the bundles were shared."""
    rng = np.random.default_rng(0)
    for _ in range(N_QA_TRAIN):
        noise(rng)
    return rng


@pytest.fixture(scope="session")
def qa_bundles(tmp_path_factory):
    """10 noise images train/0..9.png, and a tiny pixel MMAE fitted (1 epoch, seed 0) on the first 5:
    uncalibrated/, and model/, the same calibrated on the other 5 (target FRR 0.2, n = 5: the threshold
    is the largest score). Shared and read-only: modules copy it into their own folders (``qa_root``)."""
    root = tmp_path_factory.mktemp("qa_bundles")
    rng = np.random.default_rng(0)
    train = [write_png(root / "train" / f"{i}.png", noise(rng)) for i in range(N_QA_TRAIN)]
    det = Detector("mmae", TINY_IMAGE_SIZE, train_config=TrainConfig(epochs=1, batch_size=4, seed=0, device="cpu"),
                   model_options=TINY_MODEL_OPTIONS)
    det.fit(train[:5], out=root / "model", progress=False)
    shutil.copytree(root / "model", root / "uncalibrated")
    det.calibrate(train[5:], target_frr=0.2, progress=False)
    det.save_calibration(root / "model")
    return root


def qa_root(qa_bundles, root: Path) -> Path:
    """``root`` with copies of the shared train/, model/ and uncalibrated/."""
    for name in ("train", "model", "uncalibrated"):
        shutil.copytree(qa_bundles / name, root / name)
    return root


@pytest.fixture(scope="module")
def qa(qa_bundles, tmp_path_factory):
    """The calibrated tiny model (bundle at root/model, loaded), its training images (root/train)
    and a parts folder with 2 good images (root/parts/g0.png, g1.png). Read-only: ``parts_copy``."""
    root = qa_root(qa_bundles, tmp_path_factory.mktemp("qa"))
    rng = noise_after_qa_training()
    for i in range(2):
        write_png(root / "parts" / f"g{i}.png", noise(rng))
    return root, Detector.load(root / "model", "cpu")


@pytest.fixture(scope="module")
def qa_tree(qa_bundles, tmp_path_factory):
    """The calibrated tiny model (root/model, loaded; root/uncalibrated before calibration), and a
    folder tree of 4 test images (parts/good/g0, g1; parts/line2/d0, d1 with a bright square) plus one
    corrupt file (parts/broken.png). Read-only."""
    root = qa_root(qa_bundles, tmp_path_factory.mktemp("qa_tree"))
    rng = noise_after_qa_training()
    for i in range(2):
        write_png(root / "parts" / "good" / f"g{i}.png", noise(rng))
        img = noise(rng)
        img[10:22, 12:26] = 250
        write_png(root / "parts" / "line2" / f"d{i}.png", img)
    (root / "parts" / "broken.png").write_bytes(b"\x89PNG not really")
    return root, Detector.load(root / "model", "cpu")


# ---------------------------------------------------------------- the command line

def run_cli(*args, catch_exceptions: bool = True):
    """``inspect-ad ARGS`` in process. Tests of a run that must succeed pass catch_exceptions=False,
    so a traceback fails them with the traceback itself."""
    return CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=catch_exceptions)


def one_line_error(r, *needles):
    """Exit code 2, no exception, and exactly one ``error:`` line on stderr holding every needle."""
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]

