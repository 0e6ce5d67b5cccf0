"""Model registry: every model family registers a name, its config dataclass, a builder and a
tiny variant for tests (the timm habit: one parametrised test checks each registered model)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from torch import nn

from inspect_ad.errors import ConfigError, InspectError
from inspect_ad.memory.config import DOTTED, FLAT_NAMES, option_names


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, config and builder, its tiny variant for tests and an example input."""

    name: str
    build_config: Callable[..., Any]   # (**overrides) -> config dataclass
    build: Callable[[Any], nn.Module]  # config -> module
    tiny: dict                         # overrides for a fast test variant
    example_input: Callable[[Any], Any]  # config -> a batch for smoke tests
    family: str = "image"              # image | video | tabular
    # overrides -> the config dataclass they build, for families whose options choose it (the image
    # models' ``backbone``: pixel MMAEConfig or FeatureMMAEConfig); default: build_config()'s type
    config_class: Callable[[dict], type] | None = None
    # config fields added later -> what a config saved before them means by their absence
    legacy: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    _REGISTRY[spec.name] = spec


def list_models(family: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise InspectError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


# Options that left the model configs, and where they went.
MOVED = {"learning_rate": "learning_rate is a training setting: pass --lr"}


def make_config(name: str, **overrides):
    """The config of model ``name`` with ``overrides``; the memory's options may be flat
    (``memory_slots=50``, as before MemoryConfig), dotted (``memory.slots=50``) or ``memory``."""
    spec = get_spec(name)
    valid = option_names_of(config_class(name, overrides))
    if spec.config_class is not None:
        valid.add("backbone")  # the option that chooses the config (None: the pixel model)
    dotted = {DOTTED + FLAT_NAMES[k] for k in valid if k in FLAT_NAMES}
    unknown = sorted(set(overrides) - valid - dotted)
    if unknown:
        moved = "".join(f" ({MOVED[k]})" for k in unknown if k in MOVED)
        raise ConfigError(f"model {name!r} has no option {', '.join(unknown)}{moved}; "
                          f"valid options: {', '.join(sorted(valid))}")
    return spec.build_config(**overrides)


def saved_config(name: str, saved: dict):
    """The config of a saved model: the fields it was saved with, and for the fields added since,
    what they mean by their absence (``ModelSpec.legacy``), so an old bundle loads as it was made."""
    valid = option_names_of(config_class(name, saved))   # the pixel and feature MMAE differ
    return make_config(name, **{**{k: v for k, v in get_spec(name).legacy.items() if k in valid}, **saved})


def option_names_of(config_cls: type) -> set:
    """A config's option names: its fields and the flat names of the memory fields it reads."""
    names = {f.name for f in fields(config_cls)}
    if "memory" in names:
        names |= set(option_names(config_cls.memory_fields))
    return names


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
