"""``--config FILE``: a command's options from a YAML or JSON file, under the flags' names
(``epochs: 10``, ``map-scales: [1, 2]``, ``model-options: {num_scales: 3}``), and the resolved
options of a fit recorded in its bundle, so that ``fit --config BUNDLE/config.json`` trains it again.

The file's values become click's default map: they pass the same types, ranges and callbacks as
the flags, and a flag given on the command line wins over the file."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click
import yaml

from inspect_ad.cli.common import CONFIG_FILE
from inspect_ad.detectors.bundle import BUNDLE_FORMAT
from inspect_ad.errors import InspectError

SECTION = "fit_options"   # the bundle's config.json section holding them
SUFFIXES = (".yaml", ".yml", ".json")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (true/false only): YAML 1.1 reads ``standardize: off`` as False."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def config_option(f):
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_use_config,
                        help="YAML or JSON file of this command's options, keys named as the flags "
                             "(epochs: 10, model-options: {num_scales: 3}); flags given override it. "
                             "A bundle's config.json trains that bundle again (into its folder unless --out).")(f)


def config_key(param: click.Option) -> str:
    """The option's key in a config file: its long flag's name (``--map-scales``: map-scales)."""
    return getattr(param, "config_key", None) or next(o for o in param.opts if o.startswith("--"))[2:]


def _norm(key) -> str:
    return str(key).strip().lower().replace("_", "-")


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.expose_value]


def _use_config(ctx: click.Context, param, value: str | None) -> None:
    if value is None:
        return
    values = read_config(Path(value))
    ctx.default_map = {**(ctx.default_map or {}), **default_map(values, ctx.command, value)}
    ctx.meta[CONFIG_FILE] = value


def read_config(path: Path) -> dict:
    """The options in ``path``: a YAML or JSON mapping, or the recorded options of a bundle's
    config.json (with ``out``: that bundle's folder, so that --overwrite is needed to replace it)."""
    if path.suffix.lower() not in SUFFIXES:
        raise InspectError(f"--config {path}: name a YAML or JSON file ({', '.join(SUFFIXES)})")
    if path.exists() and not path.is_file():   # a FIFO would block the read for ever
        raise InspectError(f"--config {path} is not a regular file; pass a YAML or JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InspectError(f"--config {path} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise InspectError(f"--config {path} is not a text file; pass a YAML or JSON file") from None
    values = _parse(path, text)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InspectError(f"--config {path} holds a {type(values).__name__}, not a mapping of option names "
                           f"to values (e.g. epochs: 10)")
    if values.get("format") != BUNDLE_FORMAT:
        return values
    if not isinstance(values.get(SECTION), dict):
        raise InspectError(f"--config {path} is a model bundle's config without the fit options it was trained "
                           f"with (a bundle from an older inspect-ad, or not made by 'inspect-ad fit'); "
                           f"pass the options as flags or in a YAML or JSON file")
    return {"out": str(path.parent), **values[SECTION]}


def _parse(path: Path, text: str):
    try:
        return _parse_text(path, text)
    except RecursionError:   # both parsers give up on deep nesting; no option file nests more than twice
        raise InspectError(f"--config {path} nests too deeply to be an options file; pass a mapping of option "
                           f"names to values (e.g. epochs: 10)") from None


def _parse_text(path: Path, text: str):
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InspectError(f"--config {path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InspectError(f"--config {path} is not valid YAML: {getattr(e, 'problem', None) or e}{where}") from None


def default_map(values: dict, command: click.Command, source: str) -> dict:
    """``values`` (keys: the flags' names, with dashes or underscores) as ``{param name: value}``."""
    keys = {}
    for p in _options(command):
        for name in (config_key(p), *(o[2:] for o in p.opts if o.startswith("--"))):
            keys[_norm(name)] = p
    out, seen, unknown = {}, {}, []
    for key, value in values.items():
        p = keys.get(_norm(key))
        if p is None:
            unknown.append(str(key))
            continue
        if p.name in seen:
            raise InspectError(f"--config {source}: {seen[p.name]} and {key} are the same option; keep one")
        seen[p.name] = key
        if value is not None:   # null: the option's default
            out[p.name] = _click_value(p, value)
    if unknown:
        valid = ", ".join(config_key(p) for p in _options(command))
        raise InspectError(f"--config {source}: unknown key{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(unknown)}; valid keys: {valid}")
    return out


def _click_value(param: click.Option, value):
    """A file's natural spelling as the command line's: a mapping of model options as KEY=VALUE
    entries, a list for a comma-separated option (map-scales) joined by commas."""
    if param.multiple and isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if not param.multiple and param.nargs == 1 and isinstance(value, list):
        return ",".join(map(str, value))
    return value


def resolved_options(ctx: click.Context, leave_out: tuple[str, ...] = ()) -> dict:
    """Every option's final value under its config key, paths made absolute so that the record
    reads the same from any folder; ready for :func:`read_config` to read back."""
    return {config_key(p): _saved_value(p, ctx.params[p.name]) for p in _options(ctx.command)
            if p.name not in leave_out}


def _saved_value(param: click.Option, value):
    if isinstance(param.type, click.Path) and isinstance(value, (str, os.PathLike)):
        return os.path.abspath(value)
    return list(value) if isinstance(value, tuple) else value
