"""One-class image protocol (MemAE §4.1): loaders, split, networks, and a recipe smoke run."""
from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_recipe

from inspect_ad.data.oneclass import (LabelledImages, load_cifar10, load_image_folder, load_mnist,
                                      one_class_split, read_cifar10_batch, read_idx)
from inspect_ad.errors import InspectError
from inspect_ad.scoring.metrics import auroc
from inspect_ad.models import create_model, get_spec, list_models
from inspect_ad.detectors.oneclass import (OneClassDetector, oneclass_train_config, reconstruction_errors,
                                           scale_scores)
from inspect_ad.models.oneclass import decode_slots
from inspect_ad.models.outputs import ReconstructionOutput

ONECLASS_MODELS = list_models("oneclass")


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


# ---------------------------------------------------------------- loaders

def test_read_idx_gzip_and_plain_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "b").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a"), arr)
    assert np.array_equal(read_idx(tmp_path / "b"), arr)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x99" + b"\x00" * 8)
    with pytest.raises(InspectError, match="not an MNIST idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8))[:-1])
    with pytest.raises(InspectError, match="truncated"):
        read_idx(tmp_path / "short")


def test_load_mnist_pools_both_splits(tmp_path):
    write_fake_mnist(tmp_path, per_class=4)
    data = load_mnist(tmp_path)
    assert data.images.shape == (40, 1, 28, 28) and data.images.dtype == np.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert np.bincount(data.labels).tolist() == [4] * 10
    with pytest.raises(InspectError, match="not found"):
        load_mnist(tmp_path / "nowhere")


def test_cifar_refuses_foreign_file_names(tmp_path):
    evil = tmp_path / "model.pkl"
    evil.write_bytes(b"never opened")
    with pytest.raises(InspectError, match="refusing to unpickle"):
        read_cifar10_batch(evil)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_unpickler_refuses_foreign_globals(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    with pytest.raises(InspectError, match="not a CIFAR-10 python batch"):
        read_cifar10_batch(tmp_path / "data_batch_1")


def test_load_cifar10_reads_the_six_batches(tmp_path):
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((2, 3072), i, np.uint8)
        (tmp_path / name).write_bytes(pickle.dumps({b"data": data, b"labels": [i % 10, 9]}))
    d = load_cifar10(tmp_path)
    assert d.images.shape == (12, 3, 32, 32)
    assert d.labels.tolist()[:4] == [0, 9, 1, 9]
    assert d.images[2, 0, 0, 0] == pytest.approx(1 / 255)
    assert d.class_names[0] == "airplane"


def test_image_folder_classes_resize_grey_and_skip_bad_files(tmp_path):
    for cls, value in (("bad_part", 200), ("good_part", 10)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            img = np.zeros((8, 12, 3), np.uint8)
            img[..., 2] = value  # red in RGB (cv2 writes BGR)
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), img)
    (tmp_path / "good_part" / "broken.png").write_bytes(b"not a png")
    d = load_image_folder(tmp_path, image_size=6, channels=1)
    assert d.class_names == ["bad_part", "good_part"]
    assert d.labels.tolist() == [0, 0, 1, 1]
    assert d.images.shape == (4, 1, 6, 6)
    # cv2 grey = 0.299 R for a pure red pixel.
    assert d.images[0, 0, 0, 0] == pytest.approx(round(0.299 * 200) / 255, abs=1 / 255)
    assert d.class_index("good_part") == 1
    with pytest.raises(InspectError, match="choose one of: bad_part, good_part"):
        d.class_index("scratch")


# ---------------------------------------------------------------- protocol split

def test_one_class_split_sizes_and_disjointness():
    labels = np.array([0] * 30 + [1] * 50 + [2] * 50)
    s = one_class_split(labels, normal_class=0, seed=1)
    # 30 normal -> 10 test, 20 train of which round(2.0) = 2 validation; anomalies round(10·0.3/0.7) = 4.
    assert (len(s.train), len(s.val), len(s.test)) == (18, 2, 14)
    assert s.anomaly_fraction == pytest.approx(4 / 14)
    assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
    assert (labels[s.train] == 0).all() and (labels[s.val] == 0).all()
    assert np.array_equal(s.test_labels, (labels[s.test] != 0).astype(int))
    again = one_class_split(labels, normal_class=0, seed=1)
    assert np.array_equal(again.test, s.test)


def test_one_class_split_anomaly_share_near_30_percent_on_mnist_sizes():
    labels = np.repeat(np.arange(10), 700)
    s = one_class_split(labels, normal_class=3)
    assert abs(s.anomaly_fraction - 0.3) < 0.005
    assert len(set(labels[s.test[s.test_labels == 1]])) == 9  # anomalies come from every other class


# ---------------------------------------------------------------- networks

@pytest.mark.parametrize("name", ONECLASS_MODELS)
def test_tiny_models_reconstruct_their_input_shape(name):
    spec = get_spec(name)
    model = create_model(name, **spec.tiny)
    x = spec.example_input(model.config)
    out = model(x)
    assert isinstance(out, ReconstructionOutput)
    assert out.reconstruction.shape == x.shape
    if model.config.use_memory:
        assert torch.allclose(out.weights[0].sum(-1), torch.ones(len(x)), atol=1e-5)
    else:
        assert out.weights == []


def test_paper_networks_match_section_4_1():
    mnist, cifar = create_model("memae_mnist"), create_model("memae_cifar10")
    assert mnist.memory.num_slots == 100 and cifar.memory.num_slots == 500
    assert mnist.config.encoder == ((1, 2, 16), (3, 2, 32), (3, 2, 64))
    assert mnist.latent_shape == (64, 4, 4) and cifar.latent_shape == (256, 2, 2)
    assert mnist(torch.rand(2, 1, 28, 28)).reconstruction.shape == (2, 1, 28, 28)
    assert cifar(torch.rand(2, 3, 32, 32)).reconstruction.shape == (2, 3, 32, 32)
    assert isinstance(mnist.decoder[-1], torch.nn.ConvTranspose2d)  # no BN/ReLU after the last layer
    nonspar, ae = create_model("memae_mnist_nonspar"), create_model("ae_mnist")
    assert nonspar.memory.shrink_threshold == 0 and nonspar.config.entropy_weight == 0
    assert ae.memory is None


def test_decode_slots_gives_one_image_per_slot():
    model = create_model("memae_mnist", **get_spec("memae_mnist").tiny)
    assert decode_slots(model, [0, 3]).shape == (2, 1, 16, 16)


def test_position_layout_addresses_each_feature_vector():
    model = create_model("memae_mnist", **{**get_spec("memae_mnist").tiny, "memory_layout": "position"})
    c, h, w = model.latent_shape
    assert model.memory.dim == c
    out = model(torch.rand(2, 1, 16, 16))
    assert out.weights[0].shape == (2 * h * w, 8) and out.reconstruction.shape == (2, 1, 16, 16)
    assert decode_slots(model, [1]).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="image, position"):
        create_model("memae_mnist", memory_layout="pixel")


@pytest.mark.parametrize("name", ["memae_mnist", "memae3d"])
def test_logit_scale_lifts_the_cosine_cap_on_one_slot(name):
    """Cosines in [-1, 1] cap a softmax weight at e²/(e² + N − 1); a logit scale lets one slot win."""
    weights = {}
    for scale in (1.0, 10.0):
        memory = create_model(name, **{**get_spec(name).tiny, "memory_slots": 8, "logit_scale": scale,
                                         "shrink_threshold": 0.0}).memory   # the softmax alone
        with torch.no_grad():
            memory.slots.copy_(torch.eye(8, memory.dim))       # orthonormal: cosine 1 with slot 0, 0 elsewhere
        weights[scale] = memory(memory.slots[:1].clone()).weights[0, 0].item()
    assert weights[1.0] == pytest.approx(math.e / (math.e + 7), abs=1e-5)
    assert weights[10.0] > 0.999


def test_scale_scores_maps_to_unit_interval():
    assert scale_scores(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]


def test_training_separates_dark_normals_from_bright_anomalies(tmp_path):
    write_fake_mnist(tmp_path, per_class=30)
    data = load_mnist(tmp_path)
    split = one_class_split(data.labels, 0, seed=0)
    det = OneClassDetector("memae_mnist", model_options={**get_spec("memae_mnist").tiny, "image_size": 28},
                           train_config=oneclass_train_config(epochs=1, batch_size=8, lr=1e-3))
    history = det.fit(data.images[split.train], data.images[split.val]).history_
    assert len(history) == 1 and np.isfinite(history[0]["mse"])
    scores = scale_scores(det.score_samples(data.images[split.test]))
    assert auroc(split.test_labels, scores) > 0.95  # flipped labels would give ≈ 0


class _ZeroReconstruction(torch.nn.Module):
    def forward(self, x):
        return ReconstructionOutput(torch.zeros_like(x), [], [])


def test_relative_error_divides_by_the_images_energy():
    # rebuilt as all zeros, so mse = mean(x²) and the relative error is exactly 1 for any image
    images = np.stack([np.full((1, 4, 4), 0.5), np.eye(4)[None]]).astype(np.float32)
    model = _ZeroReconstruction()
    np.testing.assert_allclose(reconstruction_errors(model, images), [0.25, 0.25])
    np.testing.assert_allclose(reconstruction_errors(model, images, error="relative"), [1.0, 1.0])
    with pytest.raises(ValueError, match="choose one of: mse, relative"):
        reconstruction_errors(model, images, error="l1")


# ---------------------------------------------------------------- recipe smoke run

@pytest.fixture(scope="module")
def recipe():
    return load_recipe("oneclass")


def test_recipe_smoke_run_writes_a_table(tmp_path, recipe):
    write_fake_mnist(tmp_path, per_class=60)
    out = tmp_path / "mnist.md"
    rc = recipe.main(["--dataset", "mnist", "--data", str(tmp_path), "--classes", "0", "--epochs", "1",
                      "--max-per-class", "50", "--tiny", "--device", "cpu", "--out", str(out)])
    text = out.read_text()
    assert rc == 0 and "Status: complete" in text and "- Device: CPU (" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    values = [float(v) for v in row.strip("| ").split(" | ")[1:]]
    assert len(values) == 3 and all(v > 0.9 for v in values)
    # the overall AUROC is the size-weighted mean of the per-class ones, so the hardest is no higher
    hardest = next(line for line in text.split("Hardest anomaly class")[1].splitlines() if line.startswith("| 0 |"))
    for cell, overall in zip(hardest.strip("| ").split(" | ")[1:], values):
        name, value = cell.rstrip(")").split(" (")
        assert name in "123456789" and float(value) <= overall + 5e-4
    fraction = float(text.split("anomaly fraction ")[1].split(")")[0])
    assert abs(fraction - 0.3) < 0.03
    slots = next(line for line in text.splitlines() if line.startswith("| memory slots read"))
    ae, nonspar, memae = slots.strip("| ").split(" | ")[1:]
    assert ae == "—" and 1 <= float(memae) <= float(nonspar) == 8   # nonSpar's softmax zeroes no slot


def test_recipe_runs_on_a_colour_folder_and_names_bad_classes(tmp_path, recipe, capsys):
    rng = np.random.default_rng(0)
    for cls, lo in (("ok", 0), ("scratch", 180)):
        (tmp_path / cls).mkdir()
        for i in range(12):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), rng.integers(lo, lo + 60, (20, 20, 3), dtype=np.uint8))
    out = tmp_path / "folder.md"
    common = ["--dataset", "folder", "--data", str(tmp_path), "--image-size", "16", "--channels", "3",
              "--epochs", "1", "--tiny", "--variants", "memae", "--out", str(out)]
    assert recipe.main(common + ["--classes", "ok"]) == 0
    assert "| ok |" in out.read_text()
    assert recipe.main(common + ["--classes", "dent"]) == 2
    assert "choose one of: ok, scratch" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_recipe_names_a_missing_gpu_in_one_line(tmp_path, recipe, capsys):
    write_fake_mnist(tmp_path, per_class=20)
    rc = recipe.main(["--dataset", "mnist", "--data", str(tmp_path), "--classes", "0", "--variants", "ae",
                      "--epochs", "1", "--tiny", "--device", "cuda", "--out", str(tmp_path / "t.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no CUDA GPU" in err and "--device cpu" in err and len(err.splitlines()) == 1


def test_code_channels_narrows_the_code_of_every_variant(recipe):
    data = LabelledImages(np.zeros((4, 1, 28, 28), np.float32), np.arange(4), [str(i) for i in range(4)])
    args = recipe.parse_args(["--code-channels", "2"])
    for variant in ("ae", "memae"):
        model = create_model(*(lambda d: (d.model, d.config))(recipe.build(args, data, variant, seed=0)))
        out = model(torch.rand(3, 1, 28, 28))
        assert model.latent_shape == (2, 4, 4) and out.reconstruction.shape == (3, 1, 28, 28)
    assert model.memory.slots.shape[1] == 2 * 4 * 4     # the memory addresses the narrower code
    paper = recipe.build(recipe.parse_args([]), data, "ae", seed=0)
    assert create_model(paper.model, paper.config).latent_shape == (64, 4, 4)   # the paper's


def test_auroc_rows_average_over_seeds(recipe):
    results = [dict(cls=c, variant="memae", seed=s, auroc=a)
               for c, s, a in ((0, 0, 0.9), (0, 1, 0.7), (1, 0, 0.5), (1, 1, 0.9))]
    rows = recipe.auroc_rows(results, [0, 1], ["memae"], [0, 1], ["zero", "one"])
    assert rows[2] == "| zero | 0.8000 ± 0.1414 |"                  # sd of (0.9, 0.7), ddof 1
    assert rows[4] == "| **mean ± sd over seeds 0, 1** | **0.7500 ± 0.0707** |"   # seed means 0.7, 0.8
    assert rows[5:] == ["| mean, seed 0 | 0.7000 |", "| mean, seed 1 | 0.8000 |"]


def test_recipe_repeats_each_task_per_seed(tmp_path, recipe):
    write_fake_mnist(tmp_path, per_class=30)
    common = ["--dataset", "mnist", "--data", str(tmp_path), "--classes", "3", "--variants", "memae",
              "--epochs", "1", "--tiny", "--device", "cpu"]
    assert recipe.main(common + ["--seed", "0,1", "--out", str(tmp_path / "two.md")]) == 0
    assert recipe.main(common + ["--seed", "1", "--out", str(tmp_path / "one.md")]) == 0
    two, one = (tmp_path / "two.md").read_text(), (tmp_path / "one.md").read_text()
    assert "Status: complete" in two and "seeds 0, 1," in two
    seed1 = next(line for line in two.splitlines() if line.startswith("| mean, seed 1 |"))
    single = next(line for line in one.splitlines() if line.startswith("| 3 |"))
    assert seed1.split(" | ")[1] == single.split(" | ")[1]      # the same task, trained alone, gives the same AUROC
    with pytest.raises(SystemExit):
        recipe.parse_args(["--seed", "0,0"])
