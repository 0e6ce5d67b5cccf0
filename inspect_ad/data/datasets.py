"""Where images come from: MVTec AD category folders, JSON manifests and plain folders.

An :class:`ImageSet` is only paths and labels; pixels are read lazily, so a set of thousands of
images costs nothing until it is used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from inspect_ad.errors import InspectError
from inspect_ad.data.io import is_image_file, list_images

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One test image: its path, its mask's path (None for good images) and its label."""

    image: Path
    mask: Path | None
    label: str

    @property
    def is_anomalous(self) -> bool:
        return self.label != GOOD


@dataclass
class ImageSet:
    """Training images (defect-free) and labelled test samples of one inspection task."""

    name: str
    train: list[Path]
    test: list[Sample] = field(default_factory=list)

    def require_train(self) -> "ImageSet":
        if not self.train:
            raise InspectError(f"no training images found for {self.name}; add defect-free images "
                               f"({', '.join(s.lstrip('.') for s in ('.png', '.jpg', '.bmp', '.tif'))})")
        return self

    def require_test(self) -> "ImageSet":
        if not self.test:
            raise InspectError(f"no test images found for {self.name}; evaluation needs labelled test images")
        return self

    def has_masks(self) -> bool:
        """Whether the defective test images come with defect masks: False when none has one (labels
        from folder names only: image metrics only). A set with masks must have them all, as one
        missing would count its defect as good pixels; the first missing one is named."""
        defective = [s for s in self.test if s.is_anomalous]
        lacking = [s for s in defective if not _exists(s.mask)]
        if len(lacking) == len(defective):
            return False
        if lacking:
            first = lacking[0]
            what = f"mask {first.mask} does not exist" if first.mask else \
                f"test image {first.image} ({first.label}) has no mask"
            raise InspectError(f"{what}, while other defective images of {self.name} have masks "
                               f"({len(lacking)} of {len(defective)} lack one); add it, or mark the image as good")
        return True


def _exists(path: Path | None) -> bool:
    return path is not None and (path.exists() or path.is_symlink())   # a broken link: read_mask names it


def mvtec_categories(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if (p / "train").is_dir())


def from_mvtec(root: str | Path, category: str) -> ImageSet:
    """``root/category/{train/good, test/<defect>, ground_truth/<defect>/<name>_mask.png}``; a category
    with no mask at all (no ``ground_truth/``) has ``mask=None`` for every sample."""
    root = Path(root)
    if not root.is_dir():
        raise InspectError(f"data root {root} does not exist; pass the folder that holds the category "
                           f"folders (e.g. /data/mvtec_ad)")
    cat = root / category
    if not cat.is_dir():
        found = mvtec_categories(root)
        hint = f"choose one of: {', '.join(found)}" if found else "it holds no MVTec-layout category"
        raise InspectError(f"category {category!r} not found in {root}; {hint}")
    train_dir = cat / "train" / GOOD
    if not train_dir.is_dir():
        raise InspectError(f"{train_dir} is missing; an MVTec-layout category needs train/good/ with defect-free images")
    test = []
    test_dir = cat / "test"
    if test_dir.is_dir():
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for img in list_images(defect_dir):
                mask = None if defect_dir.name == GOOD else \
                    cat / "ground_truth" / defect_dir.name / f"{img.stem}_mask.png"
                test.append(Sample(img, mask, defect_dir.name))
    if not any(_exists(s.mask) for s in test):   # no ground_truth/ at all: labels from folder names only
        test = [replace(s, mask=None) for s in test]
    return ImageSet(f"{root.name}/{category}", list_images(train_dir), test).require_train()


def from_manifest(path: str | Path) -> ImageSet:
    """JSON ``{"train": [paths], "test": [{"image", "mask" (or null), "label"}]}``;
    paths are relative to the manifest file."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise InspectError(f"manifest {path} {what}; check the path")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InspectError(f"manifest {path} is not valid JSON ({e.__class__.__name__}: {e}); fix the file")
    except RecursionError:
        raise InspectError(f"manifest {path} nests its JSON too deeply; it must be an object with a 'train' list "
                           f"and a 'test' list") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("train", []), list):
        raise InspectError(f"manifest {path} must be an object with a 'train' list and a 'test' list")
    base = path.parent
    bad = next((i for i, p in enumerate(doc.get("train", [])) if not isinstance(p, str) or not p), None)
    if bad is not None:
        raise InspectError(f"manifest {path}: train entry {bad} is {json.dumps(doc['train'][bad])[:60]}, not a path; "
                           f"list image paths as strings")
    train = [base / p for p in doc.get("train", [])]
    test = []
    if not isinstance(doc.get("test", []), list):
        raise InspectError(f"manifest {path}: 'test' must be a list of {{\"image\", \"mask\", \"label\"}} objects")
    for i, entry in enumerate(doc.get("test", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) \
                or not isinstance(entry.get("mask") or "", str) or not isinstance(entry.get("label") or "", str):
            raise InspectError(f"manifest {path}: test entry {i} needs an 'image' path (and a 'mask' path or null, "
                               f"a 'label' string)")
        label = entry.get("label") or (GOOD if entry.get("mask") is None else "defect")
        mask = base / entry["mask"] if entry.get("mask") else None
        test.append(Sample(base / entry["image"], mask, label))
    missing = [p for p in train[:1000] if not p.is_file()]
    if missing:
        raise InspectError(f"manifest {path} lists {len(missing)} missing training image(s), e.g. {missing[0]}; "
                           f"paths must be relative to the manifest")
    return ImageSet(path.stem if path.stem != "split" else path.parent.name, train, test).require_train()


def from_folder(path: str | Path, recursive: bool = True) -> ImageSet:
    """A plain folder of defect-free images (no test set)."""
    path = Path(path)
    if not path.is_dir():
        raise InspectError(f"folder {path} does not exist; check the path")
    return ImageSet(path.name, list_images(path, recursive)).require_train()


def expand_inputs(inputs: list[str | Path], recursive: bool = True) -> list[Path]:
    """Files and folders given on a command line -> image files, in the order given."""
    return [path for path, _ in named_inputs(inputs, recursive)]


def named_inputs(inputs: list[str | Path], recursive: bool = True) -> list[tuple[Path, str]]:
    """Files and folders given on a command line -> (image file, output name), in the order given.
    The name keeps where an image came from: ``test/crack/000`` for ``test/crack/000.png`` found in
    the folder ``test`` (so ``crack/000`` and ``color/000`` stay apart), the stem for a file given by
    name; a name already taken gets ``_1``, ``_2``, ..."""
    out: list[tuple[Path, str]] = []
    used: set[str] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            found = [(p, (Path(item.resolve().name) / p.relative_to(item)).with_suffix("").as_posix())
                     for p in list_images(item, recursive)]
        elif item.exists() or item.suffix:
            found = [(item, item.stem)]
        else:
            raise InspectError(f"{item} does not exist; pass image files or folders")
        out.extend((path, _unique(name, used)) for path, name in found)
    return out


def _unique(name: str, used: set[str]) -> str:
    unique, k = name, 1
    while unique in used:
        unique, k = f"{name}_{k}", k + 1
    used.add(unique)
    return unique


def load_image_set(data_root: str | Path | None = None, category: str | None = None,
                   manifest: str | Path | None = None, train_dir: str | Path | None = None) -> ImageSet:
    """Pick the source from whichever option the user gave (exactly one)."""
    given = [x is not None for x in (data_root, manifest, train_dir)]
    if sum(given) != 1:
        raise InspectError("give exactly one data source: --data-root with --category, --manifest, or --train-dir")
    if data_root is not None:
        if not category:
            raise InspectError("--data-root needs --category (an MVTec AD category name such as bottle)")
        return from_mvtec(data_root, category)
    if manifest is not None:
        return from_manifest(manifest)
    return from_folder(train_dir)


__all__ = ["GOOD", "Sample", "ImageSet", "from_mvtec", "from_manifest", "from_folder", "expand_inputs",
           "load_image_set", "mvtec_categories", "is_image_file"]
