"""Labelled image collections and the one-class protocol of MemAE (Gong et al. 2019, §4.1).

Loaders return a :class:`LabelledImages` (float32 images in [0, 1], (N, C, H, W), integer labels,
class names) from three sources:

* MNIST's idx files (``train-images-idx3-ubyte[.gz]`` …), gzip or plain;
* CIFAR-10's official *python* batches. These files are pickles, and unpickling can run code, so
  only the archive's own names (``data_batch_1`` … ``data_batch_5``, ``test_batch``) are opened,
  and with an unpickler that rebuilds plain containers and numpy arrays only;
* any class-per-folder tree ``root/<class>/*.png`` (any image suffix ``io.list_images`` knows).

:func:`one_class_split` then builds one task: images of the normal class are split 2:1 into
train and test, 10% of train is held out for validation, and anomalies drawn from the other
classes make up about 30% of the test set.
"""
from __future__ import annotations

import gzip
import io
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_ad.errors import InspectError
from inspect_ad.data.io import convert_channels, list_images, read_image, to_uint8

log = logging.getLogger(__name__)

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC = 2051  # idx3, unsigned byte
IDX_LABELS_MAGIC = 2049  # idx1, unsigned byte
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
MNIST_CLASSES = tuple(str(d) for d in range(10))


@dataclass
class LabelledImages:
    """images: float32 (N, C, H, W) in [0, 1]; labels: int64 (N,) indexing ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def class_index(self, name_or_index: str | int) -> int:
        """Accept a class name or its index; a bad one lists the valid names."""
        key = str(name_or_index)
        if key in self.class_names:
            return self.class_names.index(key)
        if key.isdigit() and int(key) < len(self.class_names):
            return int(key)
        raise InspectError(f"unknown class {key!r}; choose one of: {', '.join(self.class_names)}")


@dataclass
class OneClassSplit:
    """Indices into a :class:`LabelledImages` for one task; ``test_labels`` is 1 for anomalies."""

    normal_class: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray

    @property
    def anomaly_fraction(self) -> float:
        return float(self.test_labels.mean())


# ---------------------------------------------------------------- MNIST (idx)

def _read_maybe_gzip(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise InspectError(f"MNIST file {root / stem}[.gz] not found; point --data at the folder "
                       f"holding the four idx files")


def read_idx(path: str | Path) -> np.ndarray:
    """An idx1 (labels) or idx3 (images) unsigned-byte file, gzip or plain, as uint8."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 8 else -1
    if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
        raise InspectError(f"{path} is not an MNIST idx file (magic {magic}); re-download it")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise InspectError(f"{path} is truncated: header says {shape}, found {body.size} bytes; "
                           f"re-download it")
    return body.reshape(shape)


def load_mnist(root: str | Path, splits: tuple[str, ...] = ("train", "test")) -> LabelledImages:
    """MNIST's official splits pooled (the one-class protocol re-splits them per class)."""
    root = Path(root)
    images, labels = [], []
    for split in splits:
        img_stem, lab_stem = MNIST_FILES[split]
        img, lab = read_idx(_find_idx(root, img_stem)), read_idx(_find_idx(root, lab_stem))
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise InspectError(f"MNIST {split} files in {root} do not match "
                               f"(images {img.shape}, labels {lab.shape}); re-download them")
        images.append(img)
        labels.append(lab)
    x = np.concatenate(images)[:, None].astype(np.float32) / 255.0
    return LabelledImages(x, np.concatenate(labels).astype(np.int64), list(MNIST_CLASSES))


# ---------------------------------------------------------------- CIFAR-10 (python batches)

class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and numpy arrays; refuses every other global."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch -> (uint8 (N, 3, 32, 32), int64 (N,)). Refuses foreign file names."""
    path = Path(path)
    if path.name not in CIFAR10_BATCHES:
        raise InspectError(f"refusing to unpickle {path}: only CIFAR-10's own batch files "
                           f"({', '.join(CIFAR10_BATCHES)}) are read")
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError, ValueError) as e:
        raise InspectError(f"{path} is not a CIFAR-10 python batch ({e}); re-extract "
                           f"cifar-10-python.tar.gz") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise InspectError(f"{path} has data of shape {data.shape}; expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | Path) -> LabelledImages:
    """All six batches of ``cifar-10-batches-py`` pooled (RGB, 32×32)."""
    root = Path(root)
    missing = [n for n in CIFAR10_BATCHES if not (root / n).is_file()]
    if missing:
        raise InspectError(f"CIFAR-10 batches {', '.join(missing)} not found in {root}; point --data "
                           f"at the extracted cifar-10-batches-py folder")
    parts = [read_cifar10_batch(root / n) for n in CIFAR10_BATCHES]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    return LabelledImages(x, np.concatenate([p[1] for p in parts]), list(CIFAR10_CLASSES))


# ---------------------------------------------------------------- root/<class>/*.png

def _load_resized(path: Path, size: int, channels: int) -> np.ndarray:
    img = to_uint8(read_image(path))
    if channels == 1 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    img = convert_channels(img, channels, path)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, -1)
    return img.transpose(2, 0, 1)


def load_image_folder(root: str | Path, image_size: int, channels: int) -> LabelledImages:
    """Every sub-folder of ``root`` is a class; images are resized to ``image_size`` squares.

    Colour images are converted to grey when ``channels`` is 1. An unreadable file is logged and
    skipped, so one bad image does not stop a run.
    """
    root = Path(root)
    if not root.is_dir():
        raise InspectError(f"image folder {root} does not exist; pass a folder laid out as root/<class>/*.png")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in list_images(root / name):
            try:
                images.append(_load_resized(path, image_size, channels))
            except InspectError as e:
                log.warning("skipping %s", e)
                continue
            labels.append(index)
    if len(set(labels)) < 2:
        raise InspectError(f"{root} needs at least two class sub-folders with images "
                           f"(root/<class>/*.png); found {len(set(labels))}")
    x = np.stack(images).astype(np.float32) / 255.0
    return LabelledImages(x, np.asarray(labels, dtype=np.int64), classes)


# ---------------------------------------------------------------- the protocol

def one_class_split(labels: np.ndarray, normal_class: int, seed: int = 0,
                    test_share: float = 1 / 3, val_fraction: float = 0.1,
                    anomaly_fraction: float = 0.3) -> OneClassSplit:
    """MemAE §4.1: normal images split train:test = 2:1, 10% of train kept for validation,
    anomalies sampled uniformly from the other classes to ``anomaly_fraction`` of the test set.

    Train and validation hold normal images only and never share an image with the test set.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(labels == normal_class))
    others = np.flatnonzero(labels != normal_class)
    if len(normal) < 3 or len(others) == 0:
        raise InspectError(f"class {normal_class} needs at least 3 images and other classes "
                           f"must exist (found {len(normal)} normal, {len(others)} other)")
    n_test = max(1, round(len(normal) * test_share))
    test_normal, train_all = normal[:n_test], normal[n_test:]
    n_val = max(1, round(len(train_all) * val_fraction))
    val, train = train_all[:n_val], train_all[n_val:]
    n_anom = min(len(others), round(n_test * anomaly_fraction / (1 - anomaly_fraction)))
    anomalies = rng.choice(others, size=n_anom, replace=False)
    test = np.concatenate([test_normal, anomalies])
    test_labels = np.concatenate([np.zeros(len(test_normal), np.int64), np.ones(n_anom, np.int64)])
    return OneClassSplit(normal_class, np.sort(train), np.sort(val), test, test_labels)
