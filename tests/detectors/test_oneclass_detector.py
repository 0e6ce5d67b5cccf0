"""The one-class detector: training, scores, errors (inspect_ad/detectors/oneclass.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_fake_mnist

from inspect_ad.data.oneclass import load_mnist, one_class_split
from inspect_ad.detectors.oneclass import OneClassDetector, reconstruction_errors, scale_scores
from inspect_ad.detectors.presets import oneclass_train_config
from inspect_ad.models import get_spec
from inspect_ad.models.outputs import ReconstructionOutput
from inspect_ad.scoring.metrics import auroc


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
