"""Model bundles: a directory with ``model.safetensors`` (weights) and ``config.json`` (format
version, model name and config, preprocessing, training metadata, thresholds).

Loading reads JSON and safetensors only, so an untrusted bundle can never execute code.
Every file is written to a temporary name and moved into place (atomic on POSIX), so an
interrupted save never leaves a half-written bundle.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .atomic import atomic_path, atomic_write_json
from .errors import InspectError
from .models import create_model, make_config

BUNDLE_FORMAT = "inspect-ad-bundle"
BUNDLE_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
EXTRA = "extra.safetensors"   # optional non-model tensors (e.g. reference maps)


@dataclass
class Bundle:
    """A loaded bundle: the model (in eval mode) and the JSON sections saved beside it."""

    model: nn.Module
    name: str
    config: Any
    sections: dict = field(default_factory=dict)
    path: Path | None = None
    tensors: dict = field(default_factory=dict)


def _save_tensors(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(file) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))


def save_bundle(path: str | os.PathLike, model: nn.Module, name: str, config: Any,
                tensors: dict[str, torch.Tensor] | None = None, **sections: Any) -> Path:
    """Save weights and config; ``sections`` (preprocessing, training, calibration, ...) must be
    JSON-serialisable and are stored as top-level keys of config.json; ``tensors`` (not model
    weights) go to extra.safetensors."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _save_tensors(path / WEIGHTS, model.state_dict())
    if tensors:
        _save_tensors(path / EXTRA, tensors)
    elif (path / EXTRA).exists():
        (path / EXTRA).unlink()  # a stale file from an earlier save would be read back
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    atomic_write_json(path / CONFIG, {
        "format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "inspect_ad_version": __version__,
        "model": {"name": name, "config": cfg}, **sections})
    return path


def read_bundle_config(path: str | os.PathLike) -> dict:
    """The parsed config.json of a bundle, checked for format and version."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not path.is_dir() or not cfg_file.is_file() or not (path / WEIGHTS).is_file():
        raise InspectError(f"{path} is not a model bundle (expected {CONFIG} and {WEIGHTS} inside); "
                           f"pass the folder written by 'inspect-ad fit --out'")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InspectError(f"{cfg_file} is not valid JSON ({e}); re-run 'inspect-ad fit' to rebuild the bundle")
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise InspectError(f"{cfg_file} is not an inspect-ad bundle config; pass a folder written by 'inspect-ad fit'")
    if meta.get("bundle_version") != BUNDLE_VERSION:
        raise InspectError(f"{path} was saved with bundle format version {meta.get('bundle_version')} "
                           f"(inspect-ad {meta.get('inspect_ad_version')}); this inspect-ad reads version "
                           f"{BUNDLE_VERSION}: retrain with this version or install the matching inspect-ad")
    return meta


def update_bundle_sections(path: str | os.PathLike, **sections: Any) -> dict:
    """Rewrite config.json with ``sections`` replaced; the weights are untouched."""
    meta = read_bundle_config(path)
    meta.update(sections)
    atomic_write_json(Path(path) / CONFIG, meta)
    return meta


def load_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    meta = read_bundle_config(path)
    name, cfg = meta["model"]["name"], meta["model"]["config"]
    config = make_config(name, **cfg)
    model = create_model(name, config)
    state = _read_tensors(path / WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InspectError(f"{path / WEIGHTS} does not match model {name!r} (missing {len(missing)}, "
                           f"unexpected {len(unexpected)} tensors); the bundle was made by another version")
    sections = {k: v for k, v in meta.items() if k not in ("format", "bundle_version", "inspect_ad_version", "model")}
    tensors = _read_tensors(path / EXTRA) if (path / EXTRA).is_file() else {}
    return Bundle(model.to(device).eval(), name, config, sections, path,
                  {k: v.to(device) for k, v in tensors.items()})


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as e:
        raise InspectError(f"{file} cannot be read ({e}); the bundle is damaged: re-run 'inspect-ad fit'")
