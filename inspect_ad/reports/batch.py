"""Batch QA: inspect a folder tree of images with a calibrated model and write a report.

``REPORT/`` holds

- ``results.jsonl`` — one JSON object per input (the source of truth), appended and flushed row
  by row, so an interrupted run loses at most the row being written;
- ``results.csv`` — the same rows (``boxes`` as JSON), appended alongside;
- ``thumbs/`` — for the failures and the passes nearest the threshold (:class:`Pictures`): the
  photo and its heatmap alone (JPEG, ≤ 160 px; colours of :func:`~inspect_ad.reports.visualize.colour_scale`,
  1.0 the image threshold), and the heatmap over the photo at up to 1024 px a side, for a closer
  look; the defect regions outlined in white (FAILs only);
- ``photos/`` — with ``copy_photos``, a copy of every input photo, which the page links instead of
  the original, so the report folder holds everything it shows and can be moved or sent alone;
- ``summary.json`` and ``index.html`` (:mod:`inspect_ad.reports.html`), rewritten atomically at the
  end, also after an interruption.

Rows: ``path, score, normalized_score (score ÷ image threshold: FAIL above 1), decision
(PASS/FAIL/INVALID/ERROR), defect_area (pixels), n_regions, boxes ([[x0, y0, x1, y1], ...], pixels
of the photo, x1/y1 exclusive, largest region first), error``; the regions (area, count, boxes)
are those of a FAIL, and a PASS has none (:func:`~inspect_ad.scoring.calibration.judge`);
results.jsonl also holds ``resolved`` (the absolute path), ``folder`` (the input's folder relative
to the folder it was found in, ``.`` at its top), ``thumb`` (where the pictures are, if any) and
``photo`` (the copy, with ``copy_photos``).
A file that cannot be read is a row with decision ERROR and the reason; the run goes on. An image
that is not a plausible part photo (blank, saturated, far outside the training images' grey
levels: :mod:`inspect_ad.data.sanity`) is INVALID, with the reason; a non-finite score is a FAIL with
the reason "invalid score". Neither is ever a PASS.

A run holds an exclusive lock on ``REPORT/.lock`` from start to end, so a second run (a resume
included) on the same report is refused instead of interleaving rows. Inputs are keyed by their
resolved path: the same file given twice, or under another spelling on resume, gets one row, and
the report and ``sort_into`` folders are never scanned as inputs. ``resume`` skips every file
already in the report (after dropping a half-written last line).

:class:`Report` writes the rows whatever scores them: this process (:func:`inspect_images`) or Ray
workers (:mod:`inspect_ad.pipelines.ray_qa`, whose report is sorted by path at the end).
"""
from __future__ import annotations

import csv
import fcntl
import filecmp
import heapq
import json
import logging
import math
import os
import re
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm.auto import tqdm

from inspect_ad.atomic import (atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, open_nofollow,
                               refuse_symlinks, remove_leftovers)
from inspect_ad.scoring.calibration import (ERROR, FAIL, INVALID, NORMALIZED_TEXT, NORMALIZED_THRESHOLD, PASS,
                                            Judgement, check_calibration)
from inspect_ad.data.io import inside, scan_images, warn_skipped
from inspect_ad.detectors.image import Detector, Prediction
from inspect_ad.training.device import check_workers
from inspect_ad.errors import InspectError, printable
from inspect_ad.reports.html import HEAT, IMAGE, NEAR, OVERLAY, render_html
from inspect_ad.reports.visualize import ColourScale, color_overlay, colour_scale, heat_rgb

log = logging.getLogger(__name__)
COLUMNS = ("path", "score", "normalized_score", "decision", "defect_area", "n_regions", "boxes", "error")
JSONL, CSV, HTML, SUMMARY, THUMBS, PHOTOS, LOCK = ("results.jsonl", "results.csv", "index.html", "summary.json",
                                                   "thumbs", "photos", ".lock")
THUMB_SIDE, OVERLAY_SIDE = 160, 1024


@dataclass
class Summary:
    """A batch run's counts (PASS, FAIL, ERROR, INVALID; new rows this run), time and report path."""

    total: int
    passed: int
    failed: int
    errors: int
    new: int
    seconds: float
    report: str
    invalid: int = 0
    skipped: int = 0     # files of the input folders that are not images (summary.json lists them)

    def exit_code(self) -> int:
        """For ``--fail-exit-code``: 1 if any part failed, else 3 if a file could not be read or an
        image was not a valid input, else 0."""
        return 1 if self.failed else 3 if self.errors or self.invalid else 0


# --- inputs and outputs ----------------------------------------------------------------------

LIST_SUFFIXES = (".txt",)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(name: str) -> bool:
    return bool(_URL.match(name))


def expand_lists(inputs: Iterable[str | Path]) -> list[tuple[str, bool]]:
    """The inputs with each list file (``.txt``: one path, folder or URL a line, relative paths as
    on the command line, ``#`` comments) replaced by its entries: (name, whether it was listed).
    A list that is not UTF-8 (Latin-1, say) names files by its bytes, as the file system does."""
    names: list[tuple[str, bool]] = []
    for name in map(str, inputs):
        if Path(name).suffix.lower() in LIST_SUFFIXES and Path(name).is_file():
            raw = Path(name).read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                log.warning("%s is not UTF-8 text; its lines are taken as file names byte for byte", printable(name))
                text = os.fsdecode(raw)
            lines = (line.strip() for line in text.splitlines())
            names += [(line, True) for line in lines if line and not line.startswith("#")]
        else:
            names.append((name, False))
    return names


@dataclass
class Found:
    """The inputs found: (file, its name relative to the folder it was found in), and the files of
    those folders that are not images, with why (:class:`~inspect_ad.data.io.Scan`)."""

    files: list[tuple[Path, Path]]
    skipped: list[tuple[Path, str]]


def gather(inputs: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[tuple[Path, Path]]:
    """(file, name relative to the folder it was found in), folders searched recursively, list
    files (:func:`expand_lists`) read; each file once (by resolved path), nothing under the
    ``exclude`` folders (the tool's own output). URLs are read by ``--engine ray`` only."""
    return find_names(expand_lists(inputs), exclude).files


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except ValueError:   # a NUL byte in a listed name: reading it says so
        return False


def row_key(path: str | Path) -> Path:
    """The key of a file's row: its resolved path (a link loop, which pathlib refuses, as it is)."""
    try:
        return Path(os.path.realpath(path))
    except ValueError:
        return Path(os.path.abspath(path))


def find_names(names: list[tuple[str, bool]], exclude: Iterable[str | Path] = ()) -> Found:
    """:func:`gather` of :func:`expand_lists`' names, with what the folder scans skipped; a listed
    file that is missing is kept (it is an ERROR row, not the end of the run), a missing
    command-line input is an error, and so is an input inside an ``exclude`` folder."""
    exclude = list(exclude)
    skip = [Path(os.path.abspath(f)) for f in exclude]
    own = [row_key(f) for f in exclude]
    out: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for name, listed in names:
        item = Path(name)
        if is_url(name):
            raise InspectError(f"{name} is a URL, which --engine ray reads (pip install 'inspect-ad[ray]'); "
                               f"add --engine ray, or pass local files")
        holder = next((f for f, key in zip(exclude, own) if inside(row_key(item), [key])), None)
        if holder is not None:
            raise InspectError(f"{name} is inside the output folder {holder} (or is it), whose files are never "
                               f"inspected; choose an --out (and --sort-into) outside the inputs")
        if _is_dir(item):
            scan = scan_images(item, recursive=True, exclude=skip)
            found = [(p, p.relative_to(item)) for p in scan.images]
            skipped += scan.skipped
        elif item.exists() or item.is_symlink() or listed:
            found = [(item, Path(item.name))]
        else:
            raise InspectError(f"{item} does not exist; pass image files, folders or list files (.txt)")
        for p, rel in found:
            key = row_key(p)
            if key not in seen and not inside(Path(os.path.abspath(p)), skip):
                seen.add(key)
                out.append((p, rel))
    warn_skipped(skipped, "the input folders")
    return Found(out, skipped)


def require_images(n: int, names: list[tuple[str, bool]], skipped: list[tuple[Path, str]]) -> None:
    """An inspection of nothing is a mistake (an empty or wrong folder), not a report of 0 images."""
    if n:
        return
    given = ", ".join(name for name, _ in names[:3]) + (", ..." if len(names) > 3 else "")
    why = f" ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
    raise InspectError(f"no images found in {given or 'the inputs'}{why}; pass image files, folders of them, or "
                       f"list files (.txt)")


@contextmanager
def report_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for the whole run: two runs on one report would interleave or lose rows."""
    out.mkdir(parents=True, exist_ok=True)
    with os.fdopen(open_nofollow(out / LOCK), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InspectError(f"another inspect run is writing the report in {out}; wait for it to end, "
                               f"or choose another --out")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_rows(path: Path) -> list[dict]:
    """Rows of a results.jsonl; a half-written last line (interrupted run) is dropped."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError):
                log.warning("dropping a half-written line of %s", path)
    return rows


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A text cell that a spreadsheet would run as a formula (a file named "=1+2.png") gets a
    leading apostrophe, as OWASP advises; numbers stay numbers."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _csv_line(row: dict) -> str:
    from io import StringIO
    buf = StringIO()
    cells = {**row, "boxes": json.dumps(row["boxes"])}
    csv.DictWriter(buf, COLUMNS, extrasaction="ignore").writerow({k: csv_safe(v) for k, v in cells.items()})
    return buf.getvalue()


class ReportFiles:
    """results.jsonl + results.csv, opened for appending; each row is flushed as it is written."""

    def __init__(self, out: Path, rows: list[dict]):
        # rewrite both from the surviving rows so a resumed report never holds half a row
        atomic_write_text(out / JSONL, "".join(json.dumps(r) + "\n" for r in rows))
        atomic_write_text(out / CSV, ",".join(COLUMNS) + "\n" + "".join(_csv_line(r) for r in rows))
        # surrogateescape: a file name that is not UTF-8 keeps its bytes (results.jsonl escapes it)
        self.jsonl, self.csv = open(out / JSONL, "a"), open(out / CSV, "a", newline="", errors="surrogateescape")

    def write(self, row: dict) -> None:
        self.jsonl.write(json.dumps(row) + "\n")
        self.csv.write(_csv_line(row))
        self.jsonl.flush()
        self.csv.flush()

    def close(self) -> None:
        self.jsonl.close()
        self.csv.close()


def place(src: Path, folder: Path, rel: Path, copy: bool = False) -> Path:
    """Link (or copy) ``src`` to ``folder/rel`` without ever replacing an existing file: a name
    already taken by another file gets a ``_1``, ``_2``... suffix; the same file is left as is."""
    folder.joinpath(rel).parent.mkdir(parents=True, exist_ok=True)
    dest, k = folder / rel, 1
    while True:
        if dest.exists() or dest.is_symlink():
            if dest.exists() and (os.path.samefile(dest, src) or copy and filecmp.cmp(dest, src, shallow=False)):
                return dest  # placed by an earlier, interrupted run
        else:
            try:
                if copy:
                    with open(src, "rb") as f, open(dest, "xb") as g:
                        shutil.copyfileobj(f, g)
                else:
                    os.symlink(src.resolve(), dest)
                return dest
            except FileExistsError:
                pass
        dest, k = folder / rel.with_name(f"{rel.stem}_{k}{rel.suffix}"), k + 1


# --- pictures --------------------------------------------------------------------------------

def contour_overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0)) -> np.ndarray:
    """RGB image with the outlines of the defect regions drawn on it."""
    rgb = np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(rgb, contours, -1, color, max(2, round(max(image.shape[:2]) / 150)))   # visible in a thumbnail


def write_mask(path: Path, mask: np.ndarray) -> None:
    """A binary mask as an 8-bit PNG: 255 = defect, 0 = good."""
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    f = side / max(rgb.shape[:2])
    if f < 1:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    return rgb


def _encoded(name: str, rgb: np.ndarray) -> bytes:
    """``rgb`` in the format that the file name's suffix names."""
    ok, buf = cv2.imencode(Path(name).suffix, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InspectError(f"cannot encode {name}")
    return buf.tobytes()


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    atomic_write_bytes(path, _encoded(str(path), rgb))


class Pictures:
    """Which rows get pictures: every failure, and each pass that is among the ``NEAR`` closest to
    the threshold so far, so that the page's near-threshold section has pictures without one for
    every pass (which are the very closest is only known at the end; in a random order about
    NEAR·ln(N/NEAR) passes get one). A NaN map (reason "invalid score") has no picture."""

    def __init__(self, rows: list[dict]):
        self.nearest: list[float] = []  # a heap of minus the distances to 1 of the nearest passes so far
        for r in rows:
            if r["decision"] == PASS and r.get("normalized_score") is not None:
                self._offer(NORMALIZED_THRESHOLD - r["normalized_score"])

    def _offer(self, distance: float) -> bool:
        if len(self.nearest) < NEAR:
            heapq.heappush(self.nearest, -distance)
        elif distance < -self.nearest[0]:
            heapq.heapreplace(self.nearest, -distance)
        else:
            return False
        return True

    def wants(self, j: Judgement | None) -> bool:
        return j is not None and self._wants(j.decision, j.normalized, j.reason)

    def bar(self) -> float:
        """How near the threshold a pass must be to get pictures now (the distance of the ``NEAR``-th
        nearest so far); it only shrinks. A worker that judges away from the writer draws the passes
        nearer than the bar when it was given its images: every pass the writer later wants is among them."""
        return -self.nearest[0] if len(self.nearest) >= NEAR else math.inf

    @staticmethod
    def worth_drawing(j: Judgement | None, bar: float) -> bool:
        return j is not None and j.reason is None and (j.decision == FAIL or j.decision == PASS
                                                       and NORMALIZED_THRESHOLD - j.normalized < bar)

    def wants_row(self, row: dict) -> bool:
        """:meth:`wants` for a row judged elsewhere (by a Ray worker)."""
        return self._wants(row["decision"], row["normalized_score"], row["error"])

    def _wants(self, decision: str, normalized: float | None, reason: str | None) -> bool:
        if reason is not None:
            return False
        return decision == FAIL or decision == PASS and self._offer(NORMALIZED_THRESHOLD - normalized)


WHITE = (255, 255, 255)


def thumb_jpegs(p: Prediction, j: Judgement, scale: ColourScale) -> dict[str, bytes]:
    """A row's pictures, encoded: {file suffix: JPEG bytes}: the photo and the heatmap alone as
    thumbnails, and the heatmap over the photo, larger; the regions outlined in white on both."""
    image = np.repeat(p.image, 3, axis=2) if p.image.shape[2] == 1 else p.image
    heat = contour_overlay(heat_rgb(p.map, scale), j.mask, WHITE)
    overlay = contour_overlay(color_overlay(image, p.map, scale), j.mask, WHITE)
    return {IMAGE: _encoded(IMAGE, _shrink(image, THUMB_SIDE)), HEAT: _encoded(HEAT, _shrink(heat, THUMB_SIDE)),
            OVERLAY: _encoded(OVERLAY, _shrink(overlay, OVERLAY_SIDE))}


def write_jpegs(folder: Path, name: str, jpegs: dict[str, bytes]) -> None:
    # pictures are made again by inspecting again: not worth an fsync each
    for suffix, data in jpegs.items():
        atomic_write_bytes(folder / f"{name}{suffix}", data, durable=False)


def write_thumbs(folder: Path, name: str, p: Prediction, j: Judgement, scale: ColourScale) -> None:
    write_jpegs(folder, name, thumb_jpegs(p, j, scale))


# --- the run ---------------------------------------------------------------------------------

def _finite_or_none(v: float) -> float | None:
    return v if np.isfinite(v) else None  # JSON has no NaN


def make_row(det: Detector, p: Prediction) -> tuple[dict, Judgement | None]:
    if p.error:
        return {"path": p.source, "resolved": str(row_key(p.source)), "score": None, "normalized_score": None, "decision": ERROR, "defect_area": None,
                "n_regions": None, "boxes": [], "error": p.error}, None
    j = det.judge(p)
    normalized = _finite_or_none(j.normalized)
    return {"path": p.source, "resolved": str(row_key(p.source)), "score": _finite_or_none(p.score),
            "normalized_score": None if normalized is None else round(normalized, 6), "decision": j.decision,
            "defect_area": j.defect_area, "n_regions": len(j.boxes), "boxes": j.boxes, "error": j.reason}, j


def _rows(det: Detector, todo: list[tuple[Path, Path]], batch_size: int,
          workers: int) -> Iterator[tuple[Path, Prediction]]:
    preds = det.predict_iter((p for p, _ in todo), batch_size, keep_image=True, workers=workers)
    yield from zip((rel for _, rel in todo), preds)


class RowWriter:
    """Runs ``record`` on each prediction in one background thread, in input order, so that
    judging, JPEG thumbnails and file writes overlap the model's next batch; at most ``ahead``
    predictions wait, which bounds memory. ``close`` waits for all and raises what one raised."""

    def __init__(self, record: Callable[[Path, Prediction], None], ahead: int):
        self.record, self.ahead = record, ahead
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="inspect-report")
        self.pending: deque[Future] = deque()

    def submit(self, rel: Path, p: Prediction) -> None:
        self.pending.append(self.pool.submit(self.record, rel, p))
        while len(self.pending) > self.ahead or self.pending and self.pending[0].done():
            self.pending.popleft().result()

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def inspect_images(det: Detector, inputs: Iterable[str | Path], out: str | Path, batch_size: int = 16,
                   resume: bool = False, overwrite: bool = False, sort_into: str | Path | None = None,
                   copy: bool = False, progress: bool = True, workers: int = 0,
                   copy_photos: bool = False) -> Summary:
    """Judge every image under ``inputs``, streaming (memory bounded by ``batch_size``); ``workers``
    processes read and preprocess images ahead of the model, and one thread writes the report.
    ``copy_photos``: copy every photo into the report (``photos/``) and link the copies."""
    cal = check_calibration(det.calibration_, str(det.bundle_path_ or "the model"))
    check_workers(workers)
    names = expand_lists(inputs)   # before anything is written: an input inside --out, or none, is an error
    found = find_names(names, exclude=own_folders(out, sort_into))
    require_images(len(found.files), names, found.skipped)
    with locked_report(out, sort_into):
        report = Report(Path(out), resume, overwrite, sort_into, copy, colour_scale(det), copy_photos)
        report.skipped = found.skipped
        todo = [(p, rel) for p, rel in found.files if row_key(p) not in report.done]
        return _inspect_locked(det, cal, report, todo, batch_size, progress, workers)


def own_folders(out: str | Path, sort_into: str | Path | None) -> list[Path]:
    """The folders a run writes, which are never its inputs."""
    return [Path(out)] + ([Path(sort_into)] if sort_into is not None else [])


@contextmanager
def locked_report(out: str | Path, sort_into: str | Path | None) -> Iterator[None]:
    """The checks of the output folders, then :func:`report_lock` on ``out``."""
    out = Path(out)
    for folder in (out, sort_into):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise InspectError(f"{folder} is a file, not a folder; choose another folder")
    refuse_symlinks(out)
    if sort_into is not None:
        refuse_symlinks(Path(sort_into))
    with report_lock(out):
        yield


class Report:
    """A report being written, whatever scores its images: the rows so far (a resumed report's
    first), their files, which rows get pictures, and where ``sort_into`` puts the images. Build it
    inside :func:`locked_report`, then :meth:`start`, :meth:`add` each row, :meth:`close`. ``scale``
    is the pictures' colour scale, which the page's legend shows."""

    def __init__(self, out: Path, resume: bool, overwrite: bool, sort_into: str | Path | None, copy: bool,
                 scale: ColourScale, copy_photos: bool = False):
        if (out / JSONL).exists() and not (resume or overwrite):
            raise InspectError(f"{out} already holds a report; pass --resume to continue it, --overwrite to "
                               f"replace it, or choose another --out")
        refuse_symlinks(out / THUMBS, below=out)
        (out / THUMBS).mkdir(parents=True, exist_ok=True)
        remove_leftovers(out, (JSONL, CSV, HTML, SUMMARY))   # a killed run's temporary files
        remove_leftovers(out / THUMBS)
        self.out, self.sort_into, self.copy, self.scale, self.copy_photos = out, sort_into, copy, scale, copy_photos
        self.skipped: list[tuple[Path, str]] = []   # what the input folders held that is not an image
        self.rows = read_rows(out / JSONL) if resume else []
        self.done = {Path(r["resolved"]) if r.get("resolved") else row_key(r["path"]) for r in self.rows}
        self.own = own_folders(out, sort_into)
        self.pictures = Pictures(self.rows)
        self.n_before = len(self.rows)

    def start(self) -> None:
        """Rewrite the files from the surviving rows (after the inputs were found: a missing input
        leaves a report as it was) and open them for appending."""
        self.files, self.t0 = ReportFiles(self.out, self.rows), time.perf_counter()

    def add(self, row: dict, rel: Path, draw: Callable[[str], None] | None = None) -> None:
        """Write one row; ``draw(name)`` writes its pictures, for a row that gets them."""
        row["folder"] = rel.parent.as_posix()
        if draw is not None:
            row["thumb"] = f"{THUMBS}/{len(self.rows):06d}"
            draw(row["thumb"])
        if self.copy_photos:
            self._copy_photo(row)
        if self.sort_into is not None:
            folder = Path(self.sort_into) / row["decision"].lower()
            refuse_symlinks((folder / rel).parent, below=Path(self.sort_into))
            place(Path(row["path"]), folder, rel, self.copy)
        self.files.write(row)
        self.rows.append(row)
        self.done.add(Path(row["resolved"]))

    def _copy_photo(self, row: dict) -> None:
        """``photos/NNNNNN_name``: the number keeps photos of the same name from different folders apart."""
        src = Path(row["path"])
        if not src.is_file():   # an unreadable row's file may be gone, or a URL
            return
        name = f"{PHOTOS}/{len(self.rows):06d}_{src.name}"
        (self.out / PHOTOS).mkdir(exist_ok=True)
        with atomic_path(self.out / name, durable=False) as tmp:
            shutil.copyfile(src, tmp)
        row["photo"] = name

    def close(self, cal: dict, by_path: bool = False) -> Summary:
        """Close the files (``by_path``: rewritten in path order), then write the summary and page."""
        self.files.close()
        if by_path:
            self.rows.sort(key=lambda r: r["path"])
            ReportFiles(self.out, self.rows).close()
        summary = _summary(self.rows, len(self.rows) - self.n_before, time.perf_counter() - self.t0, self.out,
                           len(self.skipped))
        write_summary(self.out, summary, cal, self.rows, self.scale, self.skipped)
        return summary


def _inspect_locked(det, cal, report: Report, todo: list[tuple[Path, Path]], batch_size, progress,
                    workers) -> Summary:
    report.start()

    def record(rel: Path, p: Prediction) -> None:
        row, j = make_row(det, p)
        wanted = report.pictures.wants(j)
        report.add(row, rel, (lambda name: write_thumbs(report.out, name, p, j, report.scale)) if wanted else None)

    writer = RowWriter(record, ahead=2 * batch_size)
    try:
        for rel, p in tqdm(_rows(det, todo, batch_size, workers), total=len(todo), desc="inspect",
                           disable=not progress):
            writer.submit(rel, p)
    finally:
        try:
            writer.close()
        finally:
            summary = report.close(cal)
    return summary


def _summary(rows: list[dict], n_new: int, seconds: float, out: Path, skipped: int = 0) -> Summary:
    count = {d: sum(r["decision"] == d for r in rows) for d in (PASS, FAIL, ERROR, INVALID)}
    return Summary(len(rows), count[PASS], count[FAIL], count[ERROR], n_new, round(seconds, 2), str(out),
                   count[INVALID], skipped)


# --- summary.json and index.html -------------------------------------------------------------

def write_summary(out: Path, summary: Summary, cal: dict, rows: list[dict], scale: ColourScale,
                  skipped: list[tuple[Path, str]] = (), gallery: int = 200) -> None:
    keys = ("target_frr", "n", "image_threshold", "pixel_threshold", "min_area", "min_area_fraction", "guarantee",
            "date")
    atomic_write_json(out / SUMMARY, {**asdict(summary), "calibration": {k: cal.get(k) for k in keys},
                                      "normalized_score": NORMALIZED_TEXT, "colour_scale": scale.to_dict(),
                                      "skipped_files": [[str(p), why] for p, why in skipped[:1000]]})
    atomic_write_text(out / HTML, render_html(rows, cal, out, scale.to_dict(), gallery))

