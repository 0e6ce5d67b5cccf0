"""What the image and video commands share: the error bridge (a user's mistake is one line on
stderr and exit code 2, never a traceback) and the options both take, under the same names."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import click

from inspect_ad.checks import MAX_SIZE
from click.core import ParameterSource

from inspect_ad.engine.device import DEVICE_HELP
from inspect_ad.errors import InspectError, one_line
from inspect_ad.models import parse_overrides

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
    kept working, e.g. ``--model`` for ``--bundle``), and optionally its key in a ``--config`` file
    where the flag's own name would read badly there (``model-options`` for ``-o/--option``)."""

    def __init__(self, param_decls, hidden_names: tuple[str, ...] = (), config_key: str | None = None, **kwargs):
        super().__init__([*param_decls, *hidden_names], **kwargs)
        self.hidden_names = set(hidden_names)
        self.config_key = config_key

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_names]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


# --- the shared options: one name, type and check for one thing in every command -------------

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
    return click.option("--epochs", type=click.IntRange(1), default=default, show_default=default is not None,
                        help=help)


def batch_size_option(default: int | None = None, help: str | None = None):
    return click.option("--batch-size", type=click.IntRange(1), default=default, show_default=default is not None,
                        help=help)


def lr_option(default: float | None = None, help: str | None = "Learning rate."):
    return click.option("--lr", type=click.FloatRange(0, min_open=True), default=default,
                        show_default=default is not None, help=help)


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
