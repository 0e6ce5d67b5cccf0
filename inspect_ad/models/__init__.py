"""Models built from the shared blocks and memory core, looked up by name."""
from functools import partial

import torch

from inspect_ad.checks import size_shape
from inspect_ad.memory.config import build_with_memory
from inspect_ad.models.feature_mmae import FeatureMMAE, FeatureMMAEConfig
from inspect_ad.models.fused import MMAEPatchCore, MMAEPatchCoreConfig
from inspect_ad.models.mmae import MMAE, MMAEConfig, ablation_options, build_config, build_model, config_class
from inspect_ad.models.outputs import FeatureOutput, ReconstructionOutput
from inspect_ad.models.patchcore import LEGACY as PATCHCORE_LEGACY, PatchCore, PatchCoreConfig
from inspect_ad.models.registry import (ModelSpec, config_class as model_config_class, create_model, get_spec, list_models, make_config, parse_overrides, saved_config,
                       register_model)

IMAGE_MODELS = ("ae", "memae", "mmae", "patchcore", "mmae_patchcore")
BACKBONE_MODELS = ("patchcore", "mmae_patchcore")   # image models that need a backbone (the others take one optionally)
_TINY_IMAGE = dict(image_size=32, latent_channels=8, grid_stride=8, base_channels=4, max_channels=8, memory_slots=10)


# Feature variants at 32 px: lite0's stages 1-2 there are 8×8 and 4×4 grids, a fast forward pass.
TINY_FEATURE = dict(image_size=32, backbone="efficientnet_lite0", stages=(1, 2), latent_channels=8,
                    memory_slots=10, decoder_channels=8, grid_stride=8)


def _image_example(cfg) -> torch.Tensor:
    return torch.rand(2, cfg.in_channels, *size_shape(cfg.image_size))


for _name in ("ae", "memae", "mmae"):
    _tiny = _TINY_IMAGE if _name == "memae" else {**_TINY_IMAGE, "num_scales": 3}   # memae is K = 1
    register_model(ModelSpec(_name, partial(build_config, _name), build_model, _tiny, _image_example,
                             config_class=config_class, legacy={"align_grid": False}))   # feature MMAE's
register_model(ModelSpec("patchcore", PatchCoreConfig, PatchCore, dict(image_size=32, stages=(1, 2)),
                         _image_example, legacy=PATCHCORE_LEGACY))
register_model(ModelSpec("mmae_patchcore", partial(build_with_memory, MMAEPatchCoreConfig), MMAEPatchCore,
                         TINY_FEATURE, _image_example))

__all__ = ["MMAE", "MMAEConfig", "ablation_options", "FeatureMMAE", "FeatureMMAEConfig", "PatchCore", "PatchCoreConfig", "MMAEPatchCore",
           "MMAEPatchCoreConfig",
           "FeatureOutput", "ReconstructionOutput", "BACKBONE_MODELS", "TINY_FEATURE", "model_config_class", "ModelSpec", "create_model", "get_spec",
           "list_models", "make_config", "parse_overrides", "saved_config", "register_model", "IMAGE_MODELS"]
from inspect_ad.models import oneclass  # noqa: E402,F401  (registers one-class models)
from inspect_ad.models import video  # noqa: E402,F401  (registers the video models)
from inspect_ad.models import tabular  # noqa: E402,F401  (registers tabular models)
