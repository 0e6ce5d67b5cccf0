"""What the image and video commands share: the error bridge (a user's mistake is one line on
stderr and exit code 2, never a traceback) and the options both take, under the same names."""
from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

import click

from inspect_ad.checks import MAX_SIZE
from click.core import ParameterSource

from inspect_ad.checks import Constraint
from inspect_ad.training.device import DEVICE_HELP
from inspect_ad.errors import InspectError, one_line
from inspect_ad.models import parse_overrides
from inspect_ad.scoring.anomaly_map import MapConfig, parse_scales
from inspect_ad.scoring.calibration import CALIBRATION_CONSTRAINTS, TARGET_FRR
from inspect_ad.training.loop import TrainConfig

CONFIG_FILE = "inspect_ad.config_file"   # ctx.meta key: the file a command's default map was read from
STATE_ENV = "INSPECT_AD_STATE"           # where the last fitted bundle is recorded (default: XDG state folder)
log = logging.getLogger(__name__)


class Command(click.Command):
    """A command whose ``--help`` lists its options under headings. ``sections`` maps each heading
    to its parameters' names, in the order shown; ``--help`` goes last under the last heading, and
    an option no heading names (one added later) under "Other options", so none is ever hidden.

    A bad value that came from a ``--config`` file says which file (the flag alone would send the
    reader looking at a command line that does not hold it)."""

    def __init__(self, *args, sections: dict[str, tuple[str, ...]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sections = dict(sections or {})
        named = [n for names in self.sections.values() for n in names]
        known = {p.name for p in self.params}
        wrong = sorted({n for n in named if n not in known or named.count(n) > 1})
        if wrong:  # a typo would silently move an option to "Other options"
            raise ValueError(f"command {self.name!r}: sections name unknown or repeated options {wrong}")

    def parse_args(self, ctx, args):
        for p in self.params:
            for name in getattr(p, "deprecated_names", ()):
                if any(a == name or a.startswith(name + "=") for a in args):
                    click.echo(f"warning: {name} is deprecated; use {p.opts[0]}", err=True)
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as e:
            source = ctx.meta.get(CONFIG_FILE)
            if source and e.param is not None and \
                    ctx.get_parameter_source(e.param.name) is ParameterSource.DEFAULT_MAP:
                e.message = f"{e.message} (from {source})"
            raise

    def format_options(self, ctx, formatter):
        if not self.sections:
            return super().format_options(ctx, formatter)
        records = {p.name: rec for p in self.get_params(ctx)
                   if isinstance(p, click.Option) and (rec := p.get_help_record(ctx)) is not None}
        help_option = self.get_help_option(ctx)
        help_name = help_option.name if help_option else None
        headings = list(self.sections)
        groups = {h: [n for n in names if n in records] for h, names in self.sections.items()}
        if help_name in records:
            groups[headings[-1]].append(help_name)
        placed = {n for names in groups.values() for n in names}
        groups["Other options"] = [n for n in records if n not in placed]
        # one first-column width for all sections, so their help texts line up
        width = min(max(len(rec[0]) for rec in records.values()), 30)
        for heading, names in groups.items():
            if names:
                with formatter.section(heading):
                    formatter.write_dl([(records[n][0].ljust(width), records[n][1]) for n in names], col_max=30)


class Group(click.Group):
    """Turns InspectError, click's usage errors and OSError (read-only folder, disk full) into one
    line on stderr and exit code 2. A ValueError or TypeError is only a user's mistake where
    :func:`option_errors` says so; anywhere else it is a bug and keeps its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InspectError as e:
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:  # click's own is four lines: usage, hint, blank, error
            click.echo(f"error: {one_line(e.format_message())} (see --help)", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            click.echo(one_line(f"error: {e.strerror or e}{where}; check that the folder exists, is writable and "
                                f"has free space"), err=True)
            ctx.exit(InspectError.exit_code)


Group.command_class = Command   # group.command(sections=...) makes a Command


@contextmanager
def option_errors():
    """The boundary where options become configs, a detector and its model: the config dataclasses
    check their fields in ``__post_init__`` (ValueError, or TypeError for a value of the wrong
    type), and a model refuses an input size its options cannot take. Inside it those are the
    user's to fix: one line naming the value, exit 2."""
    try:
        yield
    except InspectError:
        raise
    except (ValueError, TypeError) as e:
        raise InspectError(f"{one_line(e)}; check the options") from e


class Option(click.Option):
    """A click option with extra names that are accepted but left out of ``--help`` (old spellings
    kept working, e.g. ``--model`` for ``--bundle``; a ``deprecated_names`` one also warns on
    stderr), and optionally its key in a ``--config`` file where the flag's own name would read
    badly there (``model-options`` for ``-o/--option``)."""

    def __init__(self, param_decls, hidden_names: tuple[str, ...] = (), config_key: str | None = None,
                 deprecated_names: tuple[str, ...] = (), **kwargs):
        super().__init__([*param_decls, *hidden_names, *deprecated_names], **kwargs)
        self.hidden_names = {*hidden_names, *deprecated_names}
        self.deprecated_names = tuple(deprecated_names)
        self.config_key = config_key

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_names]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


# --- the shared options: one name, type and check for one thing in every command -------------

def default(owner, name: str):
    """The default of field ``name`` of a config dataclass, or of parameter ``name`` of a function:
    an option's default is the library's, so a command without options does what the API does."""
    if dataclasses.is_dataclass(owner):
        f = owner.__dataclass_fields__[name]
        return f.default_factory() if f.default is dataclasses.MISSING else f.default
    return inspect.signature(owner).parameters[name].default


def option_type(constraint: Constraint) -> click.ParamType:
    """The click type of a config field's constraint (``Config._constraints[name]``): the command
    line refuses what the config would, before anything runs, naming the range or the choices."""
    if constraint.kind == "int":
        return click.IntRange(constraint.low, constraint.high)
    if constraint.kind == "number":
        return click.FloatRange(None if constraint.low == -math.inf else constraint.low,
                                None if constraint.high == math.inf else constraint.high,
                                min_open=constraint.open_low, max_open=constraint.open_high)
    if constraint.kind == "choice":
        return click.Choice(constraint.choices)
    raise ValueError(f"no command-line type for {constraint.what}")


def field_option(flag: str, owner, field: str, *, param: str | None = None, overrides: bool = False, **kwargs):
    """``flag`` for field ``field`` of config dataclass ``owner`` (given to the command as
    ``param``, else as the flag's name): its type from the field's constraint, its default the
    field's (``overrides``: none, a given value overrides a loaded bundle's)."""
    if not overrides and "default" not in kwargs:
        kwargs.update(default=default(owner, field), show_default=True)
    return click.option(flag, *([param] if param else []), type=option_type(owner._constraints[field]), **kwargs)


def model_options(f):
    """``-o/--option KEY=VALUE`` (repeatable), given to the command as a dict ``options``; ``--set``
    is the video commands' older name, still accepted."""
    return click.option("-o", "--option", "options", cls=Option, hidden_names=("--set",),
                        config_key="model-options", multiple=True,
                        metavar="KEY=VALUE", callback=lambda ctx, param, pairs: parse_overrides(pairs, "-o"),
                        help="Model option, repeatable (e.g. -o num_scales=3); an unknown key lists the valid ones.")(f)


def bundle_option(help: str = "Model bundle folder (written by fit).", last: bool = False, **kwargs):
    """``--bundle DIR``, given as ``bundle``; ``--model`` is the older name, still accepted.
    ``last``: without it, the bundle that ``fit`` wrote last on this machine (:func:`last_bundle`)."""
    if last:
        kwargs.update(callback=lambda ctx, param, value: value or (None if ctx.resilient_parsing else last_bundle()))
        help += " Default: the bundle fitted last on this machine."
    return click.option("--bundle", "bundle", cls=Option, hidden_names=("--model",), required=not last,
                        type=click.Path(), help=help, **kwargs)


def _last_bundle_file() -> Path:
    state = os.environ.get(STATE_ENV) or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state",
                                              "inspect-ad")
    return Path(state) / "last_bundle"


def remember_bundle(path: str | os.PathLike) -> None:
    """Record ``path`` as the last fitted bundle; a state folder that cannot be written only costs
    the default (a warning, not an error: the fit itself succeeded)."""
    from inspect_ad.atomic import atomic_write_text
    try:
        atomic_write_text(_last_bundle_file(), os.path.abspath(path) + "\n")
    except OSError as e:
        log.warning("could not record the last fitted bundle in %s (%s)", _last_bundle_file(), e)


def last_bundle() -> str:
    """The bundle fitted last on this machine, with a one-line hint on stderr that it is used."""
    try:
        path = _last_bundle_file().read_text().strip()
    except OSError:
        path = ""
    if not path or not (Path(path) / "config.json").is_file():
        raise InspectError("no --bundle given and no fitted bundle recorded on this machine" + (
            f" ({path} is gone)" if path else "") + "; pass --bundle DIR, or run 'inspect-ad fit' first")
    click.echo(f"using the last fitted bundle {path} (--bundle chooses another)", err=True)
    return path


class InputSize(click.ParamType):
    """``auto``, one side (``256``) or ``H,W`` (``128,320``); a config file's number or
    ``[H, W]`` list too."""

    name = "auto|S|H,W"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        text = str(value).strip().lower().replace("x", ",")
        if text == "auto":
            return "auto"
        try:
            sides = [int(v) for v in text.split(",")]
        except ValueError:
            sides = []
        if len(sides) not in (1, 2) or not all(8 <= v <= MAX_SIZE for v in sides):
            self.fail(f"{value!r}: give auto, one side (e.g. 256) or height,width (e.g. 128,320), each in "
                      f"[8, {MAX_SIZE}]", param, ctx)
        return sides[0] if len(sides) == 1 or sides[0] == sides[1] else tuple(sides)


class TileSize(click.ParamType):
    """``auto``, ``off`` or a tile side in pixels."""

    name = "auto|off|S"

    def convert(self, value, param, ctx):
        text = "off" if value is None else str(value).strip().lower()
        if text in ("auto", "off"):
            return text
        if not text.isdigit() or not 8 <= int(text) <= MAX_SIZE:
            self.fail(f"{value!r}: give auto, off or a tile side in pixels (e.g. 256) in [8, {MAX_SIZE}]",
                      param, ctx)
        return int(text)


def device_option(f):
    return click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)(f)


def seed_option(f):
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(f)


def quiet_option(help: str = "No progress bar."):
    return click.option("--quiet", is_flag=True, help=help)


def overwrite_option(help: str = "Replace an existing bundle in --out."):
    return click.option("--overwrite", is_flag=True, help=help)


def epochs_option(default: int | None = None, help: str | None = None):
    return field_option("--epochs", TrainConfig, "epochs", default=default, show_default=default is not None,
                          help=help)


def batch_size_option(default: int | None = None, help: str | None = None):
    return field_option("--batch-size", TrainConfig, "batch_size", default=default,
                          show_default=default is not None, help=help)


def lr_option(default: float | None = None, help: str | None = "Learning rate."):
    return field_option("--lr", TrainConfig, "lr", default=default, show_default=default is not None, help=help)


def target_frr_option(help: str = "Target false-reject rate on good parts."):
    return click.option("--target-frr", default=TARGET_FRR, show_default=True,
                        type=option_type(CALIBRATION_CONSTRAINTS["target_frr"]), help=help)


def min_area_option(f):
    return click.option("--min-area", default=None, type=option_type(CALIBRATION_CONSTRAINTS["min_area"]),
                        help="Smallest defect region reported besides the peak's: a fraction of the image (e.g. "
                             "0.005), or pixels of the calibration images (e.g. 400), kept as a fraction "
                             "(default: calibrated).")(f)


MAP_HELP = {
    "sigma": "Gaussian smoothing of anomaly maps (pixels; default: 8 on pretrained features, 4 on pixels).",
    "pooling": "Image score from the smoothed map: its maximum (one small defect fails a part) or mean.",
    "scales": "Comma-separated pooling factors whose squared errors are averaged (e.g. 1,2,4).",
    "metric": "Anomaly map: squared error (the papers'), 1 - SSIM, or 1 - multi-scale gradient similarity.",
    "standardize": "Z-score each pixel against the training images' maps at that pixel: 'map' (alone: "
                   "--standardize) the heatmap and score, 'score' the image score only.",
}


def map_options(overrides: bool = False):
    """``--sigma``, ``--pooling``, ``--map-scales``, ``--map-metric``, ``--standardize``: the
    MapConfig fields, with its defaults (``--sigma``: the preset's), or with ``overrides`` none, a
    given value overriding a loaded bundle's."""
    def say(field: str) -> str:
        return f"Override the bundle's setting. {MAP_HELP[field]}" if overrides else MAP_HELP[field]

    def scales(ctx, param, value):
        return value and parse_scales(value)

    def decorate(f):
        f = field_option("--standardize", MapConfig, "standardize", overrides=overrides, is_flag=False,
                           flag_value="map", help=say("standardize"))(f)
        f = field_option("--map-metric", MapConfig, "metric", overrides=overrides, help=say("metric"))(f)
        f = click.option("--map-scales", callback=scales, help=say("scales"),
                         **({} if overrides else {"default": ",".join(map(str, default(MapConfig, "scales"))),
                                                  "show_default": True}))(f)
        f = field_option("--pooling", MapConfig, "pooling", overrides=overrides, help=say("pooling"))(f)
        return field_option("--sigma", MapConfig, "sigma", default=None, help=say("sigma"))(f)
    return decorate


def runtime_options(f):
    """``--runtime``, ``--precision``, ``--compile``: how a loaded model is run (see inspect_ad.deploy.runtime)."""
    from inspect_ad.deploy.runtime import PRECISIONS, RUNTIMES
    f = click.option("--compile", "compile_graph", is_flag=True,
                     help="torch runtime on a GPU: torch.compile the model and its map post-processing.")(f)
    f = click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
                     help="bf16: faster on GPUs (torch, openvino), maps within a stated tolerance of fp32.")(f)
    return click.option("--runtime", default="torch", show_default=True, type=click.Choice(RUNTIMES),
                        help="torch runs the bundle; onnx, openvino, torchscript run a folder written by "
                             "'inspect-ad export' (pass it as --bundle).")(f)
