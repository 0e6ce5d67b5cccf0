"""Every option of every command says what it is for in --help."""
import click

from inspect_ad.cli import main


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_option_has_help_text():
    missing = {name: [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not p.help]
               for name, cmd in _commands(main)}
    assert {k: v for k, v in missing.items() if v} == {}
    assert len(missing) >= 10   # fit, calibrate, segment, inspect, evaluate, demo, data synth, video fit/evaluate/score
