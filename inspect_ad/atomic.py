"""Atomic file writes: a temporary file in the same folder, fsync, then rename (and fsync the
folder, so the rename itself survives a power cut), so a crash or Ctrl-C never leaves a
half-written model, report or image behind.

Files get the permissions a plain ``open()`` would give them (0666 less the umask): mkstemp and
safetensors create them 0600, which would hide every bundle and report from colleagues and from a
web server serving the reports.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def current_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike) -> None:
    os.chmod(path, 0o666 & ~current_umask())


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and new entries in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def finish_file(path: str | os.PathLike) -> None:
    """Permissions and durability for a file written by someone else's writer (safetensors)."""
    honour_umask(path)
    fsync_file(path)


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.
    ``durable=False`` skips the two fsyncs: still never half-written, but a power cut may lose
    the file. For what can be made again (report thumbnails), where they were most of the cost
    of writing (1.9 ms a 256² JPEG, 0.3 ms of it encoding)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            finish_file(tmp)
        else:
            honour_umask(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
