"""The CPU route's requirements (requirements-cpu.txt, README "Set-up") stay in step with pyproject.toml."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_DEPS = {"torch", "torchvision", "timm"}   # the route's first command installs these with --no-deps


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted, todo = list(project["dependencies"]), ["test"]
    while todo:
        for req in extras[todo.pop()]:
            if _name(req) == "inspect-ad":   # inspect-ad[deploy,ray]: the extras it names
                todo += req[req.index("[") + 1:req.index("]")].split(",")
            else:
                wanted.append(req)
    return {_name(r): r.replace(" ", "") for r in wanted}


def _cpu_requirements() -> dict[str, str]:
    lines = (ROOT / "requirements-cpu.txt").read_text().splitlines()
    reqs = [line.replace(" ", "") for line in lines if line.strip() and not line.startswith("#")]
    return {_name(r): r for r in reqs}


def test_the_cpu_requirements_hold_every_dependency_but_the_no_deps_ones_as_pyproject_states_them():
    project, cpu = _project_requirements(), _cpu_requirements()
    assert NO_DEPS <= set(project)
    missing = {n: r for n, r in project.items() if n not in NO_DEPS and cpu.get(n) != r}
    assert missing == {}, f"requirements-cpu.txt lacks or states differently: {missing}"
    assert not NO_DEPS & set(cpu), "torch, torchvision and timm come from the --no-deps command"


def test_the_readme_cpu_command_pins_torch_as_pyproject_does():
    project = _project_requirements()
    readme = (ROOT / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("pip install --no-deps"))
    words = [w.strip('"') for w in first.split()]
    for name in NO_DEPS:
        assert project[name] in words, (project[name], first)
    assert "-r requirements-cpu.txt" in readme
