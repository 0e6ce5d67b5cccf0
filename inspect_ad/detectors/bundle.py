"""Model bundles: a directory with ``model.safetensors`` (weights) and ``config.json`` (format
version, model name and config, preprocessing, training metadata, thresholds).

Loading reads JSON and safetensors only, so an untrusted bundle can never execute code. Every
field is checked against its type and range, the weights' shapes against the safetensors header
before anything is allocated, and non-finite weights or thresholds are refused: a crafted or
broken bundle ends in one error line, never in a wrong PASS or a huge allocation.

A save writes a complete new bundle folder beside the old one and swaps it in, so an
interrupted save leaves either the old bundle or the new one, never new weights with an old
config. Files of the folder that are not the bundle's (a checkpoint, reports) are kept.
"""
from __future__ import annotations

import ctypes
import json
import logging
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from inspect_ad import __version__
from inspect_ad.checks import size_shape
from inspect_ad.atomic import (atomic_write_json, current_umask, finish_file, fsync_dir, remove_leftovers,
                               staging_folder)
from inspect_ad.deploy.export import FORMATS, MODEL_FILES
from inspect_ad.checks import Constraint, Flag, Int, Number, Options, Satisfies, Text, is_int, is_number
from inspect_ad.errors import InspectError, one_line
from inspect_ad.memory.config import DOTTED, FIELD_RULES, FLAT_NAMES
from inspect_ad.models import IMAGE_MODELS, create_model, get_spec, list_models, model_config_class, saved_config
from inspect_ad.models.registry import MOVED

log = logging.getLogger(__name__)

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


BUNDLE_FILES = (WEIGHTS, CONFIG, EXTRA, *MODEL_FILES)


def _save_tensors(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(file))
    except SafetensorError as e:   # a full disk, above all; the old bundle is untouched
        raise InspectError(f"cannot write {file} ({one_line(e)}); check that the folder is writable and has "
                           f"free space, then fit again") from None
    finish_file(file)


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_bundle(path: str | os.PathLike, model: nn.Module, name: str, config: Any,
                tensors: dict[str, torch.Tensor] | None = None, **sections: Any) -> Path:
    """Save weights and config; ``sections`` (preprocessing, training, calibration, ...) must be
    JSON-serialisable and are stored as top-level keys of config.json; ``tensors`` (not model
    weights) go to extra.safetensors. Refuses non-finite weights (a diverged training)."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()  # "models/current -> models/v3": the swap must replace v3, not the link
    state = model.state_dict()
    bad = _non_finite({**state, **(tensors or {})})
    if bad:
        raise InspectError(f"refusing to save {path}: {len(bad)} tensors (e.g. {bad[0]}) hold NaN or inf, "
                           f"so training diverged; fit again with a lower --lr")

    def fill(staging: Path) -> None:
        _save_tensors(staging / WEIGHTS, state)
        if tensors:
            _save_tensors(staging / EXTRA, tensors)

    return _write_folder(path, fill, _meta(name, config, sections))


def save_export(path: str | os.PathLike, write: Callable[[Path], dict], name: str, config: Any,
                **sections: Any) -> Path:
    """An export folder: ``write(folder)`` puts the exported graph in and returns the ``export``
    section; config.json is otherwise the bundle's (model, preprocessing, thresholds), so that
    decisions are the same."""
    path = Path(path)
    meta = _meta(name, config, sections)
    return _write_folder(path.resolve() if path.is_symlink() else path,
                         lambda staging: meta.update(export=write(staging)), meta)


def _meta(name: str, config: Any, sections: dict) -> dict:
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    return {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "inspect_ad_version": __version__,
            "model": {"name": name, "config": cfg}, **sections}


def _write_folder(path: Path, fill: Callable[[Path], None], meta: dict) -> Path:
    """Build the folder in a staging folder beside ``path`` and swap it in (see the module docstring)."""
    if path.exists() and not path.is_dir():
        raise InspectError(f"{path} is a file, not a folder; choose another --out for the bundle")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, [path.name])   # the staging folder of a save that was killed
    if path.is_dir():
        remove_leftovers(path, BUNDLE_FILES)
    with staging_folder(path) as staging:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        fill(staging)
        atomic_write_json(staging / CONFIG, meta)
        fsync_dir(staging)
        _swap_in(staging, path)
    return path


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0
    except (AttributeError, OSError):
        return False


def _swap_in(staging: Path, path: Path) -> None:
    """Make the complete bundle in ``staging`` the folder ``path``; afterwards ``staging`` holds
    the old folder (or nothing). Entries of the old folder that are not bundle files move over."""
    if not path.exists():
        staging.rename(path)
    elif _exchange(staging, path):
        pass
    else:
        # Without an atomic exchange: the old bundle files are replaced one by one, config.json last
        # is not enough (weights before config), so the old config goes first: a crash in between
        # leaves a folder that is not a bundle, never a wrong pairing.
        (path / CONFIG).unlink(missing_ok=True)
        for name in (WEIGHTS, EXTRA, *MODEL_FILES):
            (path / name).unlink(missing_ok=True)
            if (staging / name).exists():
                os.replace(staging / name, path / name)
        os.replace(staging / CONFIG, path / CONFIG)
        fsync_dir(path)
        return
    fsync_dir(path.parent)
    if staging.exists():
        for entry in staging.iterdir():
            if entry.name not in BUNDLE_FILES:
                os.replace(entry, path / entry.name)


def read_bundle_config(path: str | os.PathLike) -> dict:
    """The parsed config.json of a bundle, checked for format and version."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not path.is_dir() or not cfg_file.is_file() or not any((path / f).is_file() for f in (WEIGHTS, *MODEL_FILES)):
        raise InspectError(f"{path} is not a model bundle (expected {CONFIG} and {WEIGHTS} inside); "
                           f"pass the folder written by 'inspect-ad fit --out' (or by 'inspect-ad export')")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InspectError(f"{cfg_file} is not valid JSON ({e}); re-run 'inspect-ad fit' to rebuild the bundle")
    except RecursionError:   # json gives up on deep nesting; no bundle nests more than a few levels
        raise InspectError(f"{cfg_file} nests its JSON too deeply to be a bundle config; the bundle is damaged or "
                           f"crafted: re-run 'inspect-ad fit'") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise InspectError(f"{cfg_file} is not an inspect-ad bundle config; pass a folder written by 'inspect-ad fit'")
    if meta.get("bundle_version") != BUNDLE_VERSION:
        raise InspectError(f"{path} was saved with bundle format version {meta.get('bundle_version')} "
                           f"(inspect-ad {meta.get('inspect_ad_version')}); this inspect-ad reads version "
                           f"{BUNDLE_VERSION}: retrain with this version or install the matching inspect-ad")
    _drop_moved_options(meta)
    validate_meta(meta, cfg_file)
    return meta


def _drop_moved_options(meta: dict) -> None:
    """Video bundles saved with the learning rate in model.config (now a training setting, which
    the bundle's training section records) load as before."""
    model = meta.get("model")
    if isinstance(model, dict) and model.get("name") in list_models("video") and isinstance(model.get("config"), dict):
        for key in MOVED:
            model["config"].pop(key, None)


# --- validation of config.json -----------------------------------------------------------------

_NUMBER = Number(-math.inf)
_MAP_FIELDS = {"sigma", "pooling", "metric", "standardize", "scales"}
_NUMBERS = Satisfies("an object of finite numbers", lambda v: isinstance(v, dict) and all(map(is_number, v.values())))


def _image_rules() -> dict[str, tuple[set, dict]]:
    """Per section of an image bundle: (required keys, {key: constraint}); the sections that are
    configs are checked against their class's own table."""
    from inspect_ad.scoring.anomaly_map import STANDARDIZE, MapConfig
    from inspect_ad.data.preprocess import Preprocessing
    from inspect_ad.scoring.calibration import CALIBRATION_CONSTRAINTS
    map_rules = {**MapConfig._constraints,   # bundles before "score" existed saved a bool
                 "standardize": Satisfies("one of " + ", ".join(STANDARDIZE),
                                          lambda v: isinstance(v, bool) or MapConfig._constraints["standardize"].ok(v))}
    return {
        "preprocessing": ({"image_size", "channels"}, Preprocessing._constraints),
        "anomaly_map": (set(), map_rules),
        "map_reference": ({"metric", "sigma", "scales"}, {k: map_rules[k] for k in ("metric", "sigma", "scales")}),
        "calibration": ({"image_threshold", "pixel_threshold", "min_area", "target_frr", "n"}, {
            "version": Int(1), "target_frr": CALIBRATION_CONSTRAINTS["target_frr"], "n": Int(1),
            "rank": Int(1), "image_threshold": _NUMBER, "pixel_threshold": _NUMBER, "min_area": Int(0),
            "min_area_fraction": Number(0, 1),
            "expected_frr_bound": _NUMBER, "prob_frr_within_target": _NUMBER, "frr_95": _NUMBER,
            **{k: Text() for k in ("min_area_source", "guarantee", "normalized_score", "source", "date",
                                   "inspect_ad_version")}}),
        "reference": (set(), {"n": Int(0), "pixel_p50": _NUMBER, "pixel_p99": Number(0), "score_median": _NUMBER,
                              "score_max": _NUMBER, "input": _NUMBERS}),
        "training": (set(), {}),
        "export": ({"format", "file", "anomaly_map"}, {
            "format": Options(*FORMATS), "file": Options(*FORMATS.values()),
            "anomaly_map": Satisfies("an object of map settings", lambda v: isinstance(v, dict) and set(v) <= _MAP_FIELDS)}),
    }


def _check_section(cfg_file: Path, name: str, section: Any, required: set, rules: dict,
                   allowed: set | None = None) -> None:
    if not isinstance(section, dict):
        raise InspectError(f"{cfg_file}: '{name}' must be a JSON object; the bundle is damaged or was edited: "
                           f"re-run 'inspect-ad fit'")
    unknown = sorted(set(section) - allowed) if allowed is not None else []
    if unknown:
        raise InspectError(f"{cfg_file}: '{name}' has unknown fields {', '.join(unknown)[:80]}; the bundle was "
                           f"made by another inspect-ad or edited: re-run 'inspect-ad fit'")
    missing = sorted(required - set(section))
    if missing:
        raise InspectError(f"{cfg_file}: '{name}' lacks {', '.join(missing)}; the bundle is damaged or was "
                           f"edited: re-run 'inspect-ad fit' (or 'inspect-ad calibrate')")
    for key, rule in rules.items():
        if key in section and not rule.ok(section[key]):
            raise InspectError(f"{cfg_file}: {name}.{key} is {json.dumps(section[key])[:60]}, but must be {rule.what}; "
                               f"the bundle is damaged or was edited: re-run 'inspect-ad fit'")


def _field_check(default: Any) -> Constraint | None:
    """The type a model config field the config's table does not name must have, from its default
    (None: anything goes)."""
    if isinstance(default, bool):
        return Flag()
    if isinstance(default, int):
        # every int field with a positive default is a size (channels, slots, scales, stride):
        # 0 or less builds no model or fails deep inside torch
        return Int(1) if default > 0 else Satisfies("an integer", is_int)
    if isinstance(default, float):
        return _NUMBER
    if isinstance(default, str):
        return Text()
    if isinstance(default, (tuple, list)):
        return Satisfies("a list", lambda v: isinstance(v, (list, tuple)))  # JSON gives lists, Python settings tuples
    return None


def _required_fields(spec) -> set:
    return {f.name for f in fields(spec.build_config()) if f.default is MISSING and f.default_factory is MISSING}


def _check_model_config(cfg_file: Path, name: Any, cfg: Any) -> None:
    try:
        spec = get_spec(name) if isinstance(name, str) else None
    except InspectError:
        spec = None
    if spec is None:
        raise InspectError(f"{cfg_file}: model.name {json.dumps(name)[:60]} is not a known model; the bundle "
                           f"was made by another inspect-ad or edited")
    rules, allowed = _model_rules(name, cfg)
    _check_section(cfg_file, "model.config", _flat_view(cfg), set(), rules, allowed | _required_fields(spec))


def _flat_view(cfg: Any) -> Any:
    """A model config whose nested ``memory`` object is spread out as ``memory.<field>`` keys, so
    that each memory field is checked, and named, on its own."""
    memory = cfg.get("memory") if isinstance(cfg, dict) else None
    if not isinstance(memory, dict):
        return cfg
    return {**{k: v for k, v in cfg.items() if k != "memory"}, **{DOTTED + k: v for k, v in memory.items()}}


def _model_rules(name: str, cfg: Any) -> tuple[dict, set]:
    """{option: constraint} for the model's config fields (its config's table; for a field the
    table does not name, a type from its default), the memory's under their flat and dotted
    names, and the option names a saved config may hold."""
    config_cls = model_config_class(name, cfg if isinstance(cfg, dict) else {})
    defaults = {}
    for f in fields(config_cls):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    table = getattr(config_cls, "_constraints", {})
    rules = {k: rule for k, d in defaults.items() if (rule := table.get(k) or _field_check(d)) is not None}
    if "memory" in defaults:
        rules["memory"] = Satisfies("an object of memory settings", lambda v: isinstance(v, dict))
        # a saved memory holds every field (the config refuses those its model does not read, if set)
        rules.update({DOTTED + k: rule for k, rule in FIELD_RULES.items()})
        rules.update({flat: FIELD_RULES[k] for flat, k in FLAT_NAMES.items() if k in config_cls.memory_fields})
    return rules, set(defaults) | set(rules)


def check_model_options(name: str, options: dict, flag: str = "-o") -> None:
    """The fit-time twin of the load-time check: each model option against its field's type and range,
    before a model is built (unknown names are make_config's to report, with the valid ones)."""
    try:
        get_spec(name)
    except InspectError:
        return  # the Detector names the image models to choose from
    rules, _ = _model_rules(name, options)
    for key, value in _flat_view(options).items():
        if key in rules and not rules[key].ok(value):
            raise InspectError(f"{flag} {key}={json.dumps(value)[:40]}: {key} must be {rules[key].what}")


def validate_meta(meta: dict, cfg_file: Path) -> None:
    """Refuse a config.json whose fields have the wrong type or an absurd value (one line, naming
    the field), before any of it is used."""
    model = meta.get("model")
    if not isinstance(model, dict) or "name" not in model:
        raise InspectError(f"{cfg_file} lacks the 'model' name; the bundle is damaged: re-run 'inspect-ad fit'")
    _check_model_config(cfg_file, model["name"], model.get("config", {}))
    if model["name"] not in IMAGE_MODELS:
        return  # video and tabular bundles carry their own sections
    from inspect_ad.scoring.anomaly_map import MapConfig
    from inspect_ad.data.preprocess import Preprocessing
    # these two are passed to their dataclass as keyword arguments: an unknown key would be a TypeError
    allowed = {"preprocessing": {f.name for f in fields(Preprocessing)}, "anomaly_map": {f.name for f in fields(MapConfig)}}
    for name, (required, rules) in _image_rules().items():
        if name in meta or name == "preprocessing":
            _check_section(cfg_file, name, meta.get(name), required, rules, allowed.get(name))
    prep, cfg = meta["preprocessing"], model.get("config", {})
    for key, model_key in (("channels", "in_channels"), ("image_size", "image_size")):
        if model_key in cfg and cfg[model_key] != prep[key]:
            raise InspectError(f"{cfg_file}: preprocessing.{key} {prep[key]} does not match the model's "
                               f"{model_key} {cfg[model_key]}; the bundle was edited: re-run 'inspect-ad fit'")


def update_bundle_sections(path: str | os.PathLike, **sections: Any) -> dict:
    """Rewrite config.json with ``sections`` replaced; the weights are untouched."""
    meta = read_bundle_config(path)
    remove_leftovers(path, [CONFIG])   # an interrupted rewrite's temporary file
    meta.update(sections)
    atomic_write_json(Path(path) / CONFIG, meta)
    return meta


def load_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    meta = read_bundle_config(path)
    if isinstance(meta.get("export"), dict) and not (path / WEIGHTS).is_file():
        fmt = meta["export"].get("format")
        raise InspectError(f"{path} holds a model exported as {fmt}, without the torch weights: run it with "
                           f"--runtime {fmt} (inspect, segment), or pass --bundle the bundle it was exported from")
    name, cfg = meta["model"]["name"], meta["model"].get("config", {})
    try:
        config = saved_config(name, cfg)
    except (ValueError, TypeError) as e:
        raise InspectError(f"{path / CONFIG}: model.config is invalid ({e}); the bundle was edited: "
                           f"re-run 'inspect-ad fit'")
    _check_shapes(path / WEIGHTS, name, config)
    model = create_model(name, config)
    state = _read_tensors(path / WEIGHTS)
    _check_dtypes(path / WEIGHTS, model.state_dict(), state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InspectError(f"{path / WEIGHTS} does not match model {name!r} (missing {len(missing)}, "
                           f"unexpected {len(unexpected)} tensors); the bundle was made by another version")
    bad = _non_finite(state)
    if bad:
        raise InspectError(f"{path / WEIGHTS} holds NaN or inf in {len(bad)} tensors (e.g. {bad[0]}): the model "
                           f"is broken and would pass every part; fit it again")
    sections = {k: v for k, v in meta.items() if k not in ("format", "bundle_version", "inspect_ad_version", "model")}
    tensors = _read_tensors(path / EXTRA) if (path / EXTRA).is_file() else {}
    _check_extra(path / EXTRA, tensors, meta)
    return Bundle(model.to(device).eval(), name, config, sections, path,
                  {k: v.to(device) for k, v in tensors.items()})


def _check_extra(file: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Reference maps are z-scoring denominators: a wrong shape fails deep in scoring, a zero or
    NaN std turns every score into inf or NaN."""
    ref = tensors.get("map_reference")
    if ref is None:
        return
    size = meta.get("preprocessing", {}).get("image_size")
    shape = (2, *size_shape(size)) if size is not None else None
    if (shape is not None and tuple(ref.shape) != shape) or not ref.is_floating_point() \
            or _non_finite(tensors) or not bool((ref[1] > 0).all()):
        raise InspectError(f"{file}: map_reference must be finite {shape} means and positive stds, "
                           f"got shape {list(ref.shape)}; the bundle is damaged: re-run 'inspect-ad fit'")


def _check_shapes(file: Path, name: str, config: Any) -> None:
    """Compare the model's parameter shapes (built on the meta device: nothing is allocated) with
    the safetensors header, so a crafted config (memory_slots=1e9) fails before it costs memory."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in create_model(name, config).state_dict().items()}
    except Exception as e:  # a model that cannot be built on meta is checked by load_state_dict
        log.debug("no meta-device shape check for %s: %s", name, e)
        return
    try:
        with safe_open(str(file), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise InspectError(f"{file} cannot be read ({e}); the bundle is damaged: re-run 'inspect-ad fit'")
    wrong = sorted(k for k in expected if k in stored and stored[k] != expected[k])
    if wrong:
        k = wrong[0]
        raise InspectError(f"{file}: {len(wrong)} tensors do not have the shape the config asks for (e.g. {k}: "
                           f"stored {list(stored[k])}, config {list(expected[k])}); the bundle's config.json "
                           f"was edited or belongs to other weights: re-run 'inspect-ad fit'")


def _check_dtypes(file: Path, expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> None:
    """load_state_dict casts: float weights relabelled as int32 (same bytes) would load as numbers
    of another meaning, and make a model that judges nothing right."""
    wrong = sorted(k for k in expected if k in stored and stored[k].dtype != expected[k].dtype)
    if wrong:
        k = wrong[0]
        raise InspectError(f"{file}: {len(wrong)} tensors do not have the type the model holds (e.g. {k}: stored "
                           f"{stored[k].dtype}, model {expected[k].dtype}); the weights were edited or belong to "
                           f"another model: re-run 'inspect-ad fit'")


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as e:
        raise InspectError(f"{file} cannot be read ({e}); the bundle is damaged: re-run 'inspect-ad fit'")
