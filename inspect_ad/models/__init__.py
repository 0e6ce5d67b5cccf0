"""Models built from the shared blocks and memory core, looked up by name."""
from functools import partial

import torch

from .mmae import MMAE, MMAEConfig, build_config
from .outputs import ReconstructionOutput
from .registry import (ModelSpec, create_model, get_spec, list_models, make_config, parse_overrides,
                       register_model)

IMAGE_MODELS = ("ae", "memae", "mmae")
_TINY_IMAGE = dict(image_size=32, num_scales=3, latent_channels=8, grid_stride=8,
                   base_channels=4, max_channels=8, memory_slots=10)


def _image_example(cfg: MMAEConfig) -> torch.Tensor:
    return torch.rand(2, cfg.in_channels, cfg.image_size, cfg.image_size)


for _name in IMAGE_MODELS:
    register_model(ModelSpec(_name, partial(build_config, _name), MMAE, _TINY_IMAGE, _image_example))

__all__ = ["MMAE", "MMAEConfig", "ReconstructionOutput", "ModelSpec", "create_model", "get_spec",
           "list_models", "make_config", "parse_overrides", "register_model", "IMAGE_MODELS"]
from . import oneclass  # noqa: E402,F401  (registers one-class models)
from . import video  # noqa: E402,F401  (registers the video models)
from . import tabular  # noqa: E402,F401  (registers tabular models)
