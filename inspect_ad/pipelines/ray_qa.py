"""Batch QA on Ray (``inspect-ad inspect --engine ray``): the report of :mod:`inspect_ad.reports.batch`,
its images scored by Ray workers on this machine or on a cluster.

What runs where: each worker (a Ray actor) loads the model once, then reads, scores and judges a
chunk of images at a time and returns their rows, with the JPEG thumbnails (a few kB each) of the
failures and of the passes nearer the threshold than the driver's bar when it sent the chunk
(:meth:`~inspect_ad.reports.batch.Pictures.bar`); the driver keeps those it wants. The driver alone
writes: rows, thumbnails, ``--sort-into`` links, the summary and the page, with the same code as
the local engine, so the files are the same but for the order rows arrive in (thumbnails are
numbered in that order); the report is rewritten in path order at the end.

A worker that dies (killed, out of memory, its machine lost) is restarted, up to ``RETRIES``
times, and its unfinished chunks run again on it; Ray returns each chunk's rows once, and the
driver keeps one row per resolved path whatever it is sent.

Inputs are those of the local engine (image files, folders and list files: ``.txt``, one path,
folder or URL a line, relative paths as on the command line, ``#`` comments; an entry that cannot
be read is an ERROR row) and URLs of images or folders on any file system that pyarrow or fsspec
opens (``s3://``, ``gs://``, ``file://`` ...). Workers read local paths under the names the driver
uses: on a cluster, put them on a file system that every machine mounts at the same place, or
give URLs. Scores equal the local engine's at the same torch thread count and batches; torch's
sums round differently with another thread count (in the 7th digit).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import socket
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from inspect_ad.data.io import IMAGE_SUFFIXES
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError, one_line
from inspect_ad.reports.batch import (Pictures, Report, Summary, expand_lists, find_names, is_url, locked_report,
                                      make_row, own_folders, require_images, row_key, thumb_jpegs,
                                      write_jpegs)
from inspect_ad.reports.visualize import colour_scale
from inspect_ad.scoring.calibration import check_calibration

log = logging.getLogger(__name__)
INSTALL = "pip install 'inspect-ad[ray]'"
RETRIES = 3          # restarts of a dead worker, and runs of a chunk it was given
IN_FLIGHT = 2        # chunks queued per worker, so that none waits for the driver between two
CONNECT_TIMEOUT = 10.0   # seconds to reach a cluster's address before Ray is asked to (it retries for minutes)


def require_ray():
    try:
        import ray
    except ImportError:
        raise InspectError(f"--engine ray needs Ray, which is not installed; run {INSTALL}") from None
    return ray


# --- inputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One input of a Ray run: the name it has in the report, its row key and its relative name."""

    source: str   # the name in the report and the one workers read
    key: str      # one row per key: the resolved path, or the URL
    rel: Path     # the name relative to the folder it was found in


def _filesystem(url: str):
    """(pyarrow file system, path in it) for ``url``: pyarrow's own, else fsspec's through pyarrow."""
    try:
        import pyarrow
        import pyarrow.fs as pafs
    except ImportError:
        raise InspectError(f"URL inputs need pyarrow, which is not installed; run {INSTALL}") from None
    try:
        return pafs.FileSystem.from_uri(url)
    except pyarrow.ArrowException as arrow_error:
        try:
            import fsspec
            fs, path = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise InspectError(f"cannot open {url} ({arrow_error}; fsspec: {e}); pass a local path or a URL "
                               f"pyarrow or fsspec opens (s3://, gs://, hdfs://, file://, ...)") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _url_items(url: str) -> list[Item]:
    """The image at ``url``, or the images under it (recursively, sorted) if it is a folder."""
    from pyarrow.fs import FileSelector, FileType
    fs, path = _filesystem(url)
    info = fs.get_file_info(path)
    if info.type == FileType.NotFound:
        raise InspectError(f"{url} does not exist; pass image files or folders")
    if info.type != FileType.Directory:
        return [Item(url, url, Path(PurePosixPath(path).name))]
    root = path.rstrip("/")
    found = sorted(i.path[len(root) + 1:] for i in fs.get_file_info(FileSelector(root, recursive=True))
                   if i.type == FileType.File and PurePosixPath(i.path).suffix.lower() in IMAGE_SUFFIXES
                   and not PurePosixPath(i.path).name.startswith("."))
    return [Item(f"{url.rstrip('/')}/{rel}", f"{url.rstrip('/')}/{rel}", Path(rel)) for rel in found]


def find_items(inputs: Iterable[str | Path], exclude: list[Path]) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Every input image once (by key), none under ``exclude`` (the report's own folders), and the
    files of the local folders that are not images (:class:`~inspect_ad.reports.batch.Found`);
    finding none is an error."""
    names = expand_lists(inputs)
    items = [item for name, _ in names if is_url(name) for item in _url_items(name)]
    found = find_names([n for n in names if not is_url(n[0])], exclude)
    items += [Item(str(p), str(row_key(p)), rel) for p, rel in found.files]
    unique = {}
    for item in items:
        unique.setdefault(item.key, item)
    require_images(len(unique), names, found.skipped)
    return list(unique.values()), found.skipped


# --- the workers -----------------------------------------------------------------------------

class Scorer:
    """One Ray worker: the model, loaded once, scoring the chunks it is given."""

    def __init__(self, load: Callable[[], Detector], threads: int, cwd: str):
        import torch
        if os.path.isdir(cwd):   # relative inputs, and the messages naming them, as the driver has them
            os.chdir(cwd)
        torch.set_num_threads(threads)
        self.det = load()
        self.scale = colour_scale(self.det)

    def pid(self) -> int:
        return os.getpid()

    def score(self, sources: list[str], bar: float) -> list[tuple[dict, dict[str, bytes] | None]]:
        """(row, thumbnails or None) of each source, in order: the failures' and those of the
        passes nearer the threshold than ``bar`` (:meth:`Pictures.bar`) get thumbnails."""
        with tempfile.TemporaryDirectory(prefix="inspect-ad-") as tmp:
            readable, failed = _fetched(sources, Path(tmp))
            preds = self.det.predict_iter(readable, len(sources), keep_image=True)
            out = []
            for source, read, p in zip(sources, readable, preds):
                if read != source:   # a URL's local copy: the row names the URL
                    p.source = source
                    p.error = failed.get(source) or p.error and p.error.replace(read, source)
                row, j = make_row(self.det, p)
                out.append((row, thumb_jpegs(p, j, self.scale) if Pictures.worth_drawing(j, bar) else None))
            return out


def _fetched(sources: list[str], folder: Path) -> tuple[list[str], dict[str, str]]:
    """The local name of each source (URLs copied into ``folder``), and why a copy failed."""
    readable, failed = [], {}
    for i, source in enumerate(sources):
        if not is_url(source):
            readable.append(source)
            continue
        local = folder / f"{i}{PurePosixPath(source).suffix}"
        try:
            fs, path = _filesystem(source)
            with fs.open_input_stream(path) as f:
                local.write_bytes(f.read())
        except (OSError, InspectError) as e:
            failed[source] = f"cannot read image {source} ({e}); check the URL and its permissions"
        readable.append(str(local))
    return readable, failed


class ScorerPool:
    """``n`` :class:`Scorer` actors running ``load``'s model, spread over the cluster, each asking
    for one CPU and using ``threads``; a dead one is restarted and its unfinished chunks run again
    (``RETRIES``). One pool can score several reports; ``close`` (or leaving ``with``) stops it."""

    def __init__(self, ray, load: Callable[[], Detector], n: int, threads: int):
        self.ray = ray
        remote = ray.remote(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES,
                            scheduling_strategy="SPREAD")(Scorer)
        self.actors = [remote.remote(load, threads, os.getcwd()) for _ in range(n)]
        self.pids()   # every model loaded: a worker that cannot start says so before the run

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def scored(self, chunks: Iterable[list[Item]], bar: Callable[[], float]) -> Iterator[tuple[list[Item], list]]:
        """(chunk, its rows) as the workers finish them; each worker keeps ``IN_FLIGHT`` queued,
        each sent with the pictures' ``bar()`` of the moment."""
        chunks, running = iter(chunks), {}

        def give(actor) -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                running[actor.score.remote([i.source for i in chunk], bar())] = (actor, chunk)

        for actor in self.actors:
            for _ in range(IN_FLIGHT):
                give(actor)
        while running:
            [ref], _ = self.ray.wait(list(running), num_returns=1)
            actor, chunk = running.pop(ref)
            give(actor)
            yield chunk, self.ray.get(ref)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)

    def __enter__(self) -> "ScorerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def ray_errors(ray) -> Iterator[None]:
    """A worker's InspectError as itself; a worker dead for good as one line."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, InspectError):
            raise e.cause from None
        raise
    except ray.exceptions.RayActorError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InspectError(f"a Ray worker stopped and could not be restarted ({first}); check the Ray logs "
                           f"(out of memory? inspect-ad installed on every machine?), then continue the "
                           f"report with --resume") from None


# --- the run ---------------------------------------------------------------------------------

def init_ray(ray, address: str | None, num_cpus: int | None = None) -> None:
    """Connect to the cluster at ``address`` (``auto``, ``HOST:6379``, ``ray://HOST:10001``), or start
    Ray on this machine with ``num_cpus`` (default: all it may use): quiet (no dashboard, workers' output kept in Ray's
    logs) and offline."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # factory machines are often offline
    local = {"num_cpus": num_cpus} if address is None and num_cpus else {}   # else Ray counts them
    if address is not None:
        check_address(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, **local)
    except (ConnectionError, ValueError) as e:   # ValueError: an address Ray cannot use
        raise InspectError(f"cannot reach the Ray cluster at --address {address} ({one_line(e)}); start one with "
                           f"'ray start --head', or leave out --address to run Ray on this machine") from None


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse in one line, within ``timeout`` seconds, an address that Ray would try to reach for
    minutes (nothing listening, a firewall), and ``ray://`` without Ray Client."""
    client = address.startswith("ray://")
    if client and importlib.util.find_spec("grpc") is None:
        raise InspectError(f"--address {address} is a Ray Client address, and Ray Client is not installed; run "
                           f"pip install 'ray[client]', or give the cluster's HOST:6379 address")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return   # 'auto' (a cluster on this machine) and names Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InspectError(f"cannot reach the Ray cluster at --address {address} ({e.strerror or e} within "
                           f"{timeout:g}s); check the address and that the cluster is running ('ray start --head'), "
                           f"or leave out --address to run Ray on this machine") from None


@contextmanager
def connected(ray, address: str | None) -> Iterator[None]:
    """Ray for the run: the session already open in this process, else one opened and closed here
    (which leaves a cluster at ``address`` running)."""
    if ray.is_initialized():
        yield
        return
    init_ray(ray, address)
    try:
        yield
    finally:
        ray.shutdown()


def worker_threads(ray, workers: int) -> int:
    """Threads per worker: the cluster's CPUs shared out (one machine's, with no address). Each
    worker holds one CPU of Ray's: with fewer free, the run would wait for them without end."""
    cpus, free = (int(r.get("CPU", 0)) for r in (ray.cluster_resources(), ray.available_resources()))
    if workers > free:
        raise InspectError(f"--workers {workers}: the Ray cluster has {free} CPUs free (of {cpus}); pass at "
                           f"most {free}, or wait for its other jobs")
    return max(1, cpus // workers)


def inspect_images_ray(load: Callable[[], Detector], inputs: Iterable[str | Path], out: str | Path,
                       workers: int = 1, address: str | None = None, batch_size: int = 16, resume: bool = False,
                       overwrite: bool = False, sort_into: str | Path | None = None, copy: bool = False,
                       progress: bool = True, pool: ScorerPool | None = None, copy_photos: bool = False) -> Summary:
    """:func:`~inspect_ad.reports.batch.inspect_images` with ``workers`` Ray workers, each of which
    calls ``load`` (a picklable function, e.g. a ``functools.partial`` of ``Detector.load``) once
    and scores chunks of ``batch_size`` images; or with ``pool``, workers already running ``load``'s
    model (kept for several reports)."""
    if workers < 1:
        raise InspectError(f"--workers {workers}: with --engine ray it counts Ray workers; pass 1 or more")
    ray = require_ray()
    det = load()   # here first: a bundle that cannot be used is one line before any worker starts
    cal, scale = check_calibration(det.calibration_, str(det.bundle_path_ or "the model")), colour_scale(det)
    del det
    found, skipped = find_items(inputs, own_folders(out, sort_into))   # before anything is written or started
    with connected(ray, address), ray_errors(ray):
        threads = worker_threads(ray, workers) if pool is None else 0
        with locked_report(out, sort_into):
            report = Report(Path(out), resume, overwrite, sort_into, copy, scale, copy_photos)
            report.skipped = skipped
            items = [i for i in found if Path(i.key) not in report.done]
            if sort_into is not None and any(is_url(i.source) for i in items):
                raise InspectError("--sort-into links local files, and some inputs are URLs; leave out --sort-into")
            with nullcontext(pool) if pool is not None else ScorerPool(ray, load, workers, threads) as running:
                report.start()
                try:
                    _write(report, running, items, batch_size, progress)
                finally:
                    summary = report.close(cal, by_path=True)
    return summary


def _write(report: Report, pool: ScorerPool, items: list[Item], batch_size: int, progress: bool) -> None:
    chunks = (items[i:i + batch_size] for i in range(0, len(items), batch_size))
    with tqdm(total=len(items), desc="inspect", disable=not progress) as bar:
        for chunk, results in pool.scored(chunks, report.pictures.bar):
            for item, (row, jpegs) in zip(chunk, results):
                if Path(item.key) in report.done:
                    continue
                row["resolved"] = item.key
                wanted = jpegs is not None and report.pictures.wants_row(row)
                report.add(row, item.rel, partial(write_jpegs, report.out, jpegs=jpegs) if wanted else None)
            bar.update(len(chunk))
