"""Tabular anomaly-detection data: the KDDCUP99 file and the DAGMM / MemAE evaluation protocol.

Protocol (DAGMM, ICLR 2018 §4.1; MemAE, ICCV 2019 §4.3): split all rows 50/50 at random per
seed, train on the normal-class rows of the training half only, score every test row, flag the
top 20 % of test scores as anomalies and report precision / recall / F1 of the anomaly class.

KDDCUP99 is inverted: its label-1 rows ("normal" traffic, ~20 %) are the *anomalies* and the
label-0 ("attack") rows are the normal class (see ``data/kddcup99/README.md``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspect_ad.errors import InspectError

log = logging.getLogger(__name__)

KDD_ARRAY_KEY = "kdd"
KDD_ANOMALY_LABEL = 1  # label-1 rows (original "normal" traffic) are the anomaly class
KDD_ANOMALY_RATIO = 0.2  # DAGMM / MemAE flag the top 20 % of test scores


@dataclass
class TabularData:
    """Features (n, d) float32 and a boolean anomaly mask (n,)."""

    features: np.ndarray
    anomaly: np.ndarray

    def __post_init__(self):
        if self.features.ndim != 2 or self.anomaly.shape != (len(self.features),):
            raise ValueError(f"features must be (n, d) and anomaly (n,), got "
                             f"{self.features.shape} and {self.anomaly.shape}")


@dataclass
class ProtocolSplit:
    """One seed of the protocol: normal-class training rows, all test rows and their truth."""

    train: np.ndarray         # (n_train, d), normal class only
    test: np.ndarray          # (n_test, d)
    test_anomaly: np.ndarray  # (n_test,) bool
    train_index: np.ndarray   # rows of the source table, for audits
    test_index: np.ndarray
    seed: int


def load_kddcup99(path: str | Path) -> TabularData:
    """Read the DAGMM-preprocessed ``kdd_cup.npz``: array ``kdd``, features then a 0/1 label."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"{path}: no such file; pass --data pointing at kdd_cup.npz "
                           "(e.g. ../shared/data/kddcup99/kdd_cup.npz)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InspectError(f"{path}: not a readable .npz archive ({exc}); re-download kdd_cup.npz") from exc
    with archive:
        if KDD_ARRAY_KEY not in archive.files:
            raise InspectError(f"{path}: no array {KDD_ARRAY_KEY!r} (found: {', '.join(archive.files) or 'none'}); "
                               "use the DAGMM-preprocessed kdd_cup.npz")
        table = archive[KDD_ARRAY_KEY]
    if table.ndim != 2 or table.shape[1] < 2:
        raise InspectError(f"{path}: array {KDD_ARRAY_KEY!r} has shape {table.shape}, expected "
                           "(rows, features + 1 label column)")
    labels = table[:, -1]
    if not np.isin(labels, (0, 1)).all():
        raise InspectError(f"{path}: the last column must be a 0/1 label; found values "
                           f"{np.unique(labels)[:5].tolist()}")
    log.info("loaded %s: %d rows, %d features, %.1f%% anomalies", path, len(table),
             table.shape[1] - 1, 100 * (labels == KDD_ANOMALY_LABEL).mean())
    return TabularData(np.ascontiguousarray(table[:, :-1], dtype=np.float32),
                       labels == KDD_ANOMALY_LABEL)


def subsample(data: TabularData, max_rows: int | None, seed: int = 0) -> TabularData:
    """A random subset of rows (for smoke runs); ``None`` or a larger size keeps everything."""
    if max_rows is None or max_rows >= len(data.features):
        return data
    idx = np.sort(np.random.default_rng(seed).choice(len(data.features), max_rows, replace=False))
    return TabularData(data.features[idx], data.anomaly[idx])


def protocol_split(data: TabularData, seed: int, train_fraction: float = 0.5) -> ProtocolSplit:
    """Random ``train_fraction`` of rows for training (normal class kept), the rest for test."""
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must lie in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(data.features))
    n_train = int(round(train_fraction * len(order)))
    train_idx, test_idx = order[:n_train], order[n_train:]
    train_idx = train_idx[~data.anomaly[train_idx]]
    return ProtocolSplit(data.features[train_idx], data.features[test_idx], data.anomaly[test_idx],
                         train_idx, test_idx, seed)
