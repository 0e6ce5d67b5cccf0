"""Anomaly detection on table rows with the fully connected MemAE (Gong et al., ICCV 2019,
§4.3): train on normal rows, score each row by its squared reconstruction error (eq. 8)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inspect_ad.data.tabular import KDD_ANOMALY_RATIO, ProtocolSplit
from inspect_ad.detectors.base import BaseDetector
from inspect_ad.detectors.bundle import save_bundle
from inspect_ad.detectors.presets import tabular_train_config
from inspect_ad.training.batches import TensorBatches
from inspect_ad.training.device import model_device, seed_everything
from inspect_ad.training.loop import TrainConfig, train
from inspect_ad.training.objectives import memae_objective
from inspect_ad.models import create_model, make_config
from inspect_ad.scoring.metrics import flag_top_fraction, precision_recall_f1

log = logging.getLogger(__name__)


@torch.no_grad()
def reconstruction_scores(model: nn.Module, rows: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Per-row squared reconstruction error ‖x − x̂‖² (eq. 8), the anomaly score."""
    model.eval()
    x = torch.as_tensor(rows, dtype=torch.float32).to(model_device(model))
    scores = [((model(b).reconstruction - b) ** 2).sum(dim=1) for b in x.split(batch_size)]
    return torch.cat(scores).cpu().numpy()


@dataclass
class TabularDetector(BaseDetector):
    """Anomaly detection on table rows (KDDCUP99): MemAE's fully connected network.

    Parameters
    ----------
    model : str, default "memae_fc"
        "memae_fc", "memae_fc_nonspar" (no shrinkage) or "ae_fc" (no memory).
    model_options : dict
        The model config's options.
    train_config : TrainConfig, default :func:`tabular_train_config`
        MemAE §4's optimisation (Adam, lr 1e-4, no weight decay; batch 1024 as DAGMM).
    unique_rows : bool, default False
        Train on each distinct row once per epoch.

    Attributes
    ----------
    model_ : torch.nn.Module or None
        The fitted network.
    history_ : list of dict
        Per-epoch training losses.
    calibration_ : dict or None
        The threshold from :meth:`calibrate`.

    ``score_samples(rows)`` takes an (n, features) array and gives each row's squared
    reconstruction error (higher = more anomalous).
    """

    model: str = "memae_fc"
    model_options: dict = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=tabular_train_config)
    unique_rows: bool = False

    model_: nn.Module | None = field(default=None, init=False, repr=False)
    history_: list[dict] = field(default_factory=list, init=False, repr=False)
    calibration_: dict | None = field(default=None, init=False, repr=False)
    family = registry_family = "tabular"

    def __post_init__(self):
        self._check_model_name()

    def fit(self, rows: np.ndarray, progress: bool = False) -> "TabularDetector":
        """Minimise eq. 10 (MSE + α · entropy) with Adam on normal ``rows``."""
        tc = self.train_config
        seed_everything(tc.seed)
        model = create_model(self.model, make_config(self.model, in_features=rows.shape[1], **self.model_options))
        if self.unique_rows:
            # KDDCUP99's normal class is ~98 % copies of two attacks; de-duplicating lets the rare
            # attack types weigh in the loss and makes an epoch ~6x cheaper.
            rows = np.unique(rows, axis=0)
        alpha = model.config.entropy_weight if model.config.use_memory else 0.0
        self.history_ = train(model, TensorBatches(torch.as_tensor(rows, dtype=torch.float32), tc.batch_size, tc.seed),
                              tc, memae_objective(alpha), progress=progress)
        self.model_ = model
        return self

    def score_samples(self, rows: np.ndarray) -> np.ndarray:
        self.check_is_fitted()
        return reconstruction_scores(self.model_, rows)

    def save(self, path: str | Path) -> Path:
        self.check_is_fitted()
        return save_bundle(path, self.model_, self.model, self.model_.config, training=self.train_config.to_dict(),
                           model_options=self.model_options, unique_rows=self.unique_rows,
                           **({"calibration": self.calibration_} if self.calibration_ else {}))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "TabularDetector":
        b = cls._load(path, device)
        det = cls(b.name, b.sections.get("model_options", {}), TrainConfig.from_saved(b.sections.get("training", {})),
                  bool(b.sections.get("unique_rows", False)))
        det.model_, det.calibration_ = b.model, b.sections.get("calibration")
        return det


@dataclass
class ProtocolResult:
    """Anomaly-class metrics of one model on one protocol split."""

    precision: float
    recall: float
    f1: float
    n_flagged: int
    seconds: float
    history: list[dict]


def evaluate_on_split(detector: TabularDetector, split: ProtocolSplit, fraction: float = KDD_ANOMALY_RATIO,
                      progress: bool = False) -> ProtocolResult:
    """DAGMM's protocol (MemAE §4.3): fit on ``split.train`` (normal rows only), flag the top
    ``fraction`` of test reconstruction errors and score the anomaly class."""
    start = time.perf_counter()
    detector.fit(split.train, progress)
    flagged = flag_top_fraction(detector.score_samples(split.test), fraction)
    p, r, f1 = precision_recall_f1(flagged, split.test_anomaly)
    return ProtocolResult(p, r, f1, int(flagged.sum()), time.perf_counter() - start, detector.history_)
