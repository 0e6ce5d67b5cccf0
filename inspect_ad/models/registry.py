"""Model registry: every model family registers a name, its config dataclass, a builder and a
tiny variant for tests (the timm habit: one parametrised test checks each registered model)."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Callable

from torch import nn

from inspect_ad.errors import InspectError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build_config: Callable[..., Any]   # (**overrides) -> config dataclass
    build: Callable[[Any], nn.Module]  # config -> module
    tiny: dict                         # overrides for a fast test variant
    example_input: Callable[[Any], Any]  # config -> a batch for smoke tests
    family: str = "image"              # image | video | tabular
    # overrides -> the config dataclass they build, for families whose options choose it (the image
    # models' ``backbone``: pixel MMAEConfig or FeatureMMAEConfig); default: build_config()'s type
    config_class: Callable[[dict], type] | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    _REGISTRY[spec.name] = spec


def list_models(family: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise InspectError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def make_config(name: str, **overrides):
    spec = get_spec(name)
    cfg_fields = {f.name for f in fields(config_class(name, overrides))}
    if spec.config_class is not None:
        cfg_fields.add("backbone")  # the option that chooses the config (None: the pixel model)
    unknown = sorted(set(overrides) - cfg_fields)
    if unknown:
        raise InspectError(f"model {name!r} has no option {', '.join(unknown)}; "
                           f"valid options: {', '.join(sorted(cfg_fields))}")
    return spec.build_config(**overrides)


def config_class(name: str, overrides: dict) -> type:
    """The config dataclass that ``overrides`` build for model ``name``."""
    spec = get_spec(name)
    return spec.config_class(overrides) if spec.config_class else type(spec.build_config())


def parse_overrides(pairs, flag: str = "-o") -> dict:
    """``["num_scales=3", "similarity=dot"]`` -> ``{"num_scales": 3, "similarity": "dot"}``
    (values parsed as JSON when they are JSON, else kept as strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InspectError(f"{flag} {pair!r}: write key=value, e.g. {flag} num_scales=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def create_model(name: str, config=None, **overrides) -> nn.Module:
    """Build a registered model from its config (or the defaults with ``overrides``)."""
    spec = get_spec(name)
    return spec.build(config if config is not None else make_config(name, **overrides))
