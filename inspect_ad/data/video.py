"""Video anomaly datasets: normal training videos and test videos with per-frame labels.

Layouts read (``load_video_dataset`` detects which):

* frame folders (MNAD's UCSD Ped2 / CUHK Avenue / ShanghaiTech distribution):
  ``training/frames/<video>/*.jpg`` and ``testing/frames/<video>/*.jpg`` with frame labels as
  ``frame_labels_*.npy`` (one (1, N) or (N,) array over all test frames, videos in sorted order)
  or ``testing/test_frame_mask/<video>.npy`` (ShanghaiTech: one array per video).
* the original UCSD download: ``Train/Train001/*.tif``, ``Test/Test001/*.tif`` and the
  ``Test/UCSDped2.m`` file whose ``gt_frame = [61:180]`` lines give 1-based anomalous ranges.
* ``synthetic`` (or ``synthetic:<seed>``): the built-in set of :mod:`.synthetic_video`.

A :class:`Video` is paths (or an in-memory array) plus labels; frames are decoded only when a
model asks for them, at the size it asks for.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from inspect_ad.errors import InspectError
from inspect_ad.data.frames import Video, VideoSet
from inspect_ad.data.io import list_images
from inspect_ad.data.synthetic_video import make_synthetic_video_set

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
LAYOUTS = ("frame folders (training/frames, testing/frames)", "UCSD original (Train/, Test/)", "synthetic")


def _frame_videos(folder: Path) -> list[Video]:
    if not folder.is_dir():
        return []
    videos = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        paths = [p for p in list_images(sub) if p.suffix.lower() in FRAME_SUFFIXES]
        if paths:
            videos.append(Video(sub.name, paths))
    return videos


def _attach_labels(videos: list[Video], labels: list[np.ndarray], source: Path) -> None:
    for video, lab in zip(videos, labels):
        if len(lab) != len(video):
            raise InspectError(f"{source}: video {video.name} has {len(video)} frames but "
                               f"{len(lab)} labels; use the label file that matches these frames")
        video.labels = lab.astype(np.int64)


def _split_concatenated(videos: list[Video], flat: np.ndarray, source: Path) -> list[np.ndarray]:
    total = sum(len(v) for v in videos)
    if flat.size != total:
        raise InspectError(f"{source} holds {flat.size} labels but the test videos have {total} "
                           "frames; use the label file that matches these frames")
    return np.split(flat.reshape(-1), np.cumsum([len(v) for v in videos])[:-1])


def load_frame_folders(root: str | Path, labels: str | Path | None = None) -> VideoSet:
    """MNAD's layout (UCSD Ped2, CUHK Avenue, ShanghaiTech); ``labels`` overrides the search for
    ``frame_labels_*.npy`` / ``testing/test_frame_mask/``."""
    root = Path(root)
    train = _frame_videos(root / "training" / "frames")
    test = _frame_videos(root / "testing" / "frames")
    if not train and not test:
        raise InspectError(f"{root}: no training/frames/<video>/ or testing/frames/<video>/ folders "
                           f"with frames; layouts understood: {'; '.join(LAYOUTS)}")
    label_file = Path(labels) if labels else next(iter(sorted(root.glob("frame_labels*.npy"))), None)
    mask_dir = root / "testing" / "test_frame_mask"
    if label_file is not None and test:
        _attach_labels(test, _split_concatenated(test, np.load(label_file), label_file), label_file)
    elif mask_dir.is_dir() and test:
        missing = [v.name for v in test if not (mask_dir / f"{v.name}.npy").is_file()]
        if missing:
            raise InspectError(f"{mask_dir}: no label file for test video(s) {', '.join(missing[:3])}; "
                               "add <video>.npy with one 0/1 label per frame")
        _attach_labels(test, [np.load(mask_dir / f"{v.name}.npy") for v in test], mask_dir)
    return VideoSet(root.name, train, test)


_GT_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")


def parse_ucsd_m_file(path: str | Path) -> list[list[tuple[int, int]]]:
    """The ``TestVideoFile{end+1}.gt_frame = [61:180];`` lines of UCSD's .m file: one list of
    1-based inclusive (start, end) ranges per test video, in file order."""
    path = Path(path)
    videos = []
    for match in _GT_LINE.finditer(path.read_text(errors="replace")):
        ranges = []
        for part in filter(None, (p.strip() for p in match.group(1).split(","))):
            bounds = part.split(":")
            try:
                lo, hi = int(bounds[0]), int(bounds[-1])
            except ValueError:
                raise InspectError(f"{path}: cannot read frame range {part!r}; expected e.g. [61:180]")
            ranges.append((lo, hi))
        videos.append(ranges)
    if not videos:
        raise InspectError(f"{path}: no 'gt_frame = [a:b]' lines found; pass UCSD's Test/UCSDped*.m file")
    return videos


def _ranges_to_labels(ranges: list[tuple[int, int]], length: int) -> np.ndarray:
    labels = np.zeros(length, dtype=np.int64)
    for lo, hi in ranges:
        labels[max(lo - 1, 0):min(hi, length)] = 1
    return labels


def load_ucsd_original(root: str | Path) -> VideoSet:
    """The UCSD Anomaly Detection download (``UCSDped1`` / ``UCSDped2`` folder)."""
    root = Path(root)

    def pick(folder: Path, prefix: str) -> list[Video]:
        return [v for v in _frame_videos(folder) if re.fullmatch(prefix + r"\d+", v.name)]
    train, test = pick(root / "Train", "Train"), pick(root / "Test", "Test")
    if not train and not test:
        raise InspectError(f"{root}: no Train/Train001/*.tif or Test/Test001/*.tif folders; "
                           f"layouts understood: {'; '.join(LAYOUTS)}")
    m_files = sorted((root / "Test").glob("*.m"))
    if m_files and test:
        ranges = parse_ucsd_m_file(m_files[0])
        if len(ranges) != len(test):
            raise InspectError(f"{m_files[0]} lists {len(ranges)} test videos but {root / 'Test'} has "
                               f"{len(test)}; use the .m file shipped with this download")
        for video, r in zip(test, ranges):
            video.labels = _ranges_to_labels(r, len(video))
    return VideoSet(root.name, train, test)


def load_video_dataset(spec: str | Path) -> VideoSet:
    """A dataset from a folder in any supported layout, or ``synthetic[:seed]``."""
    text = str(spec)
    if text == "synthetic" or text.startswith("synthetic:"):
        seed = text.partition(":")[2]
        if seed and not seed.isdigit():
            raise InspectError(f"bad synthetic seed {seed!r}; write e.g. synthetic:0")
        return make_synthetic_video_set(seed=int(seed or 0))
    root = Path(spec)
    if not root.is_dir():
        raise InspectError(f"video dataset {root} does not exist; pass a dataset folder or 'synthetic'")
    if (root / "training").is_dir() or (root / "testing").is_dir():
        return load_frame_folders(root)
    if (root / "Train").is_dir() or (root / "Test").is_dir():
        return load_ucsd_original(root)
    raise InspectError(f"{root}: unknown video layout; layouts understood: {'; '.join(LAYOUTS)}")


def load_clip_folder(folder: str | Path) -> Video:
    """A single clip to score: a folder of frames (sorted by name)."""
    folder = Path(folder)
    paths = [p for p in list_images(folder) if p.suffix.lower() in FRAME_SUFFIXES] if folder.is_dir() else []
    if not paths:
        raise InspectError(f"{folder}: no frames found; pass a folder of .jpg/.png/.tif frames")
    return Video(folder.name, paths)
