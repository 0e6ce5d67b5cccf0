"""A set of long, narrow real parts for checking non-square inputs: the MTD images of the fixed split
whose sides differ by 1.8× or more, tall ones turned to lie flat (with their masks), written as a
manifest that keeps MTD's own train/test membership.

    python recipes/long_parts.py --out runs/long_parts
    python recipes/benchmark.py --sets long_parts=runs/long_parts/manifest.json --results ...

MTD's tiles come in many shapes (width:height about 1:3 to 8:3); squashing the long ones to a square
input changes their defects' shapes the most. This set is those alone, all of one orientation, so
that ``--image-size auto`` gets one aspect ratio to follow (about 2.3:1 here).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2

from inspect_ad.data.io import image_shape

MIN_ASPECT = 1.8


def _landscape(src: Path, dst: Path, tall: bool) -> str:
    img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"error: cannot read {src}; check the MTD folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE) if tall else img)
    return str(dst)


def write_long_parts(split: Path, out: Path, min_aspect: float = MIN_ASPECT) -> Path:
    """The manifest of the long parts of ``split`` (MTD's split.json), their files under ``out``."""
    root = split.parent
    manifest = json.loads(split.read_text())

    def keep(rel: str, mask: str | None = None):
        h, w = image_shape(root / rel)
        if max(h, w) < min_aspect * min(h, w):
            return None
        image = _landscape(root / rel, out / "images" / rel, h > w)
        return image, mask and _landscape(root / mask, out / "masks" / mask, h > w)

    train = [kept[0] for rel in manifest["train"] if (kept := keep(rel))]
    test = []
    for entry in manifest["test"]:
        kept = keep(entry["image"], entry.get("mask"))
        if kept:
            test.append({"image": kept[0], "mask": kept[1], "label": entry["label"]})
    result = {"name": "mtd_long_parts", "train": train, "test": test,
              "description": f"MTD images with sides {min_aspect}x apart or more, turned landscape "
                             f"(recipes/long_parts.py)"}
    path = out / "manifest.json"
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("INSPECT_AD_SHARED", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--split", type=Path, default=shared / "mtd" / "split.json", help="MTD's split.json")
    p.add_argument("--out", type=Path, default=Path("runs/long_parts"))
    p.add_argument("--min-aspect", type=float, default=MIN_ASPECT)
    a = p.parse_args()
    if not a.split.is_file():
        raise SystemExit(f"error: {a.split} does not exist; pass --split PATH/mtd/split.json or set INSPECT_AD_SHARED")
    path = write_long_parts(a.split, a.out.resolve(), a.min_aspect)
    m = json.loads(path.read_text())
    bad = sum(e["label"] != "good" for e in m["test"])
    print(f"{len(m['train'])} training, {len(m['test'])} test images ({bad} defective): {path}")


if __name__ == "__main__":
    main()
