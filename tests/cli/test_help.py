"""Every option of every command says what it is for in --help, under one heading."""
import click
import click.testing
import pytest
from conftest import run_cli

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


def _sections(help_text: str) -> dict[str, list[str]]:
    """{heading: the first flag of each option listed under it} of a --help page."""
    sections, current = {}, None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  -"):
            current.append(line.split()[0].rstrip(","))
    return sections


def _shown_flags(cmd: click.Command) -> list[str]:
    return sorted([p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not p.hidden] + ["--help"])


def test_fit_help_lists_every_option_under_exactly_one_heading():
    sections = _sections(run_cli("fit", "--help").output)
    assert list(sections) == ["Data", "Model", "Training", "Maps and scoring", "Calibration", "Output and run"]
    assert sorted(f for flags in sections.values() for f in flags) == _shown_flags(main.commands["fit"])
    assert {"--epochs", "--lr"} <= set(sections["Training"]) and "--config" in sections["Output and run"]


@pytest.mark.parametrize("name", [name for name, cmd in _commands(main) if getattr(cmd, "sections", None)])
def test_grouped_commands_list_every_option_once_and_none_under_other(name):
    sections = _sections(run_cli(*name.split(), "--help").output)
    assert "Other options" not in sections and len(sections) >= 2
    assert sorted(f for flags in sections.values() for f in flags) == _shown_flags(dict(_commands(main))[name])


def test_an_option_no_heading_names_is_shown_under_other_options_and_a_typo_fails_at_once():
    from inspect_ad.cli.common import Command

    @click.command(cls=Command, sections={"Data": ("root",)})
    @click.option("--root", help="Where.")
    @click.option("--late", help="Added later.")
    def cmd(root, late):
        pass

    sections = _sections(click.testing.CliRunner().invoke(cmd, ["--help"]).output)
    assert sections == {"Data": ["--root", "--help"], "Other options": ["--late"]}
    with pytest.raises(ValueError, match="roots"):
        click.command(cls=Command, sections={"Data": ("roots",)})(click.option("--root", help="x")(lambda root: None))
