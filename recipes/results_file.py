"""Results files that several recipes write (speed.md: bench_inference and bench_ray): each recipe
owns a section between two HTML comments, which Markdown does not show, and rewriting one section
leaves the others as their recipes wrote them."""
from __future__ import annotations

from pathlib import Path

from inspect_ad.atomic import atomic_write_text


def write_section(path: Path, owner: str, text: str) -> None:
    """Replace ``owner``'s section of ``path`` with ``text``, or append it; atomic."""
    begin, end = f"<!-- {owner}: begin -->", f"<!-- {owner}: end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.is_file() else ""
    if begin in old and end in old[old.index(begin):]:
        start = old.index(begin)
        stop = old.index(end, start) + len(end)
        new = old[:start] + block.rstrip("\n") + old[stop:]
    else:
        new = f"{old.rstrip()}\n\n{block}" if old.strip() else block
    atomic_write_text(path, new)


def publish(text: str, path: Path | None, owner: str) -> None:
    """Print a recipe's report, and write it as ``owner``'s section of ``path`` if one is given."""
    print(text)
    if path is not None:
        write_section(path, owner, text)
