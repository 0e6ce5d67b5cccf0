"""The package's layering, read from the code's own imports: data flows one way
(ops → data, memory → models → training, scoring → detectors → reports → pipelines → cli) and no modules
import each other in a loop. A failure names the import that breaks it."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inspect_ad"
# lowest first; a module may import from its own layer and the ones below
LAYERS = [{"errors", "atomic", "checks"}, {"ops"}, {"data", "memory"}, {"models"}, {"training", "scoring"}, {"deploy"}, {"detectors"},
          {"reports"}, {"pipelines"}, {"cli", "__main__"}]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every inspect_ad module ``path`` imports, at module level or inside functions."""
    package = _module(path).split(".")[:None if path.name == "__init__.py" else -1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            if base.startswith("inspect_ad"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("inspect_ad"))
    return found


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_subpackage_has_a_layer():
    assert {m for m in MODULES if m != "inspect_ad" and _layer(m) is None} == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "inspect_ad"))
def test_imports_only_from_its_own_layer_or_below(module):
    upward = sorted(i for i in GRAPH[module] if i != "inspect_ad" and _layer(i) > _layer(module))
    assert upward == [], f"{module} imports from a higher layer: {upward}"


def test_no_import_cycles():
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
