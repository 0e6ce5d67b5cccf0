"""Atomic file writes: a temporary file in the same folder, fsync, then rename (and fsync the
folder, so the rename itself survives a power cut), so a crash or Ctrl-C never leaves a
half-written model, report or image behind.

Files get the permissions a plain ``open()`` would give them (0666 less the umask): mkstemp and
safetensors create them 0600, which would hide every bundle and report from colleagues and from a
web server serving the reports.

A writer holds an ``flock`` on its temporary file (or staging folder) until the rename, so that the
next run can tell the leftovers of a killed one (:func:`remove_leftovers`) from a live writer's.
Writes stay inside their output folder: :func:`refuse_symlinks` refuses a folder reached through a
symbolic link, and :func:`open_nofollow` a file that is one.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from inspect_ad.errors import InspectError

log = logging.getLogger(__name__)
NAME_MAX = 255   # bytes in one file name (Linux, macOS, Windows)
_TEMP = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp$")         # atomic_path's names (mkstemp: 8 of [a-z0-9_])
_STAGING = re.compile(r"^\..*\.new-[a-z0-9_]{8}$")        # staging_folder's names


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


def shortened(name: str, room: int) -> str:
    """``name`` cut to at most ``room`` bytes (UTF-8, or the bytes of a non-UTF-8 name as they are)."""
    raw = os.fsencode(name)
    return name if len(raw) <= room else os.fsdecode(raw[:room])


def fitting_name(name: str, suffix_bytes: int) -> str:
    """``name``, or a shortened one ending in a hash of it, so that it and a suffix of
    ``suffix_bytes`` bytes fit in one file name (NAME_MAX bytes)."""
    room = NAME_MAX - suffix_bytes
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib
    return f"{shortened(name, room - 9)}~{hashlib.blake2b(os.fsencode(name), digest_size=4).hexdigest()}"


def _hold(fd: int) -> None:
    """Lock a live writer's temporary file or folder, which remove_leftovers then leaves alone
    (where the file system has no locks, it cannot take one either, and removes nothing)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.
    ``durable=False`` skips the two fsyncs: still never half-written, but a power cut may lose
    the file. For what can be made again (report thumbnails), where they were most of the cost
    of writing (1.9 ms a 256² JPEG, 0.3 ms of it encoding)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".NAME.XXXXXXXX.tmp" within NAME_MAX, however long NAME is
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{shortened(path.name, NAME_MAX - 15)}.", suffix=".tmp")
    try:
        _hold(fd)
        yield Path(tmp)
        if durable:
            finish_file(tmp)
        else:
            honour_umask(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def staging_folder(path: Path) -> Iterator[Path]:
    """A new hidden folder beside ``path`` (``.NAME.new-XXXXXXXX``) to build ``path``'s contents in,
    locked while it is used, removed (with what is left in it) at the end."""
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{shortened(path.name, NAME_MAX - 15)}.new-"))
    fd = os.open(staging, os.O_RDONLY)
    try:
        _hold(fd)
        yield staging
    finally:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)


def _unused(path: Path) -> bool:
    """Whether no live process holds ``path``'s lock (a killed writer's lock went with it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_leftovers(folder: str | os.PathLike, names: Iterable[str] | None = None) -> int:
    """Remove what a killed run left in ``folder``: the temporary files of :func:`atomic_path` and
    the staging folders of :func:`staging_folder` for the files or folders ``names`` (None: any),
    told apart by their names and left alone while a live writer holds them. Returns how many."""
    bases = None if names is None else {shortened(n, NAME_MAX - 15) for n in names} | set(names)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        temp, staging = _TEMP.match(e.name), _STAGING.match(e.name)
        if not (temp or staging) or bases is not None and e.name[1:-13] not in bases:
            continue
        if e.is_dir(follow_symlinks=False) == bool(staging) and _unused(Path(e.path)):
            if staging:
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                Path(e.path).unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d files left by an interrupted run in %s", removed, folder)
    return removed


def refuse_symlinks(folder: str | os.PathLike, below: str | os.PathLike | None = None) -> None:
    """Refuse to write through a symlink, which would land files elsewhere. With ``below``: no part
    of ``folder`` from ``below`` down may be one; without: neither the parts the run will create nor
    the first existing one (the output folder, not the folders where the user keeps it)."""
    folder = Path(os.path.abspath(folder))
    stop = Path(os.path.abspath(below)).parent if below is not None else None
    for part in (folder, *folder.parents):
        if part == stop:
            return
        if part.is_symlink():
            raise InspectError(f"{part} is a symbolic link; give a real folder as output so that nothing is "
                               f"written elsewhere")
        if below is None and part.exists():
            return  # only the output's own parts are checked, not where the user keeps it


def open_nofollow(path: str | os.PathLike, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (planted, it would create or write its
    target, outside the output folder)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InspectError(f"{path} is a symbolic link; remove it (the tool writes it as a plain file, "
                               f"and never writes through a link)") from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    # surrogateescape: a file name that is not UTF-8 is written with its own bytes
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
