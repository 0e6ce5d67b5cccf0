"""The scoring graph: a model and its map post-processing as one module.

(B, C, S, S) preprocessed images → (maps (B, S, S) at model resolution, image scores (B,)),
exactly :func:`inspect_ad.scoring.anomaly_map.model_maps` with the map settings and reference
maps fixed, so that an exported graph and the torch path compute the same thing. What stays
outside, shared by every runtime: resizing each map back to its image
(:meth:`inspect_ad.data.preprocess.Preprocessing.map_to_image`) and the decision
(:func:`inspect_ad.scoring.calibration.judge`), both numpy.
"""
from __future__ import annotations

from torch import Tensor, nn

from inspect_ad.scoring.anomaly_map import MapConfig, model_maps


class ScoringGraph(nn.Module):
    """The model and the map post-processing (smoothing, standardisation, pooling) as one
    module: preprocessed images (B, C, H, W) in, (maps, scores) out. What gets exported."""

    def __init__(self, model: nn.Module, map_config: MapConfig, reference: Tensor | None = None):
        super().__init__()
        self.model, self.map_config = model.eval(), map_config
        self.register_buffer("reference", reference)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return model_maps(x, self.model(x), self.map_config, self.reference)
