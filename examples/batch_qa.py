"""Batch QA through the Python API: the same as ``inspect-ad inspect DIR --model M --out REPORT``.

    python examples/batch_qa.py --model runs/mtd_calibration --out runs/qa_report /path/to/images
    python examples/batch_qa.py --model M --out R --by-hand /path/to/images   # your own loop

The first form calls the batch engine (CSV/JSONL/HTML report, resume, thumbnails). ``--by-hand``
shows the few calls underneath, for wiring decisions into your own line software: stream
predictions (memory bounded by the batch size), judge each, act on PASS/FAIL.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from inspect_ad.reports.batch import gather, inspect_images
from inspect_ad.detectors.image import Detector


def by_hand(det: Detector, inputs: list[str], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    files = [p for p, _ in gather(inputs)]
    n_fail = 0
    with open(out / "decisions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "decision", "normalized_score", "defect_area", "boxes", "error"])
        for p in det.predict_iter(files, batch_size=16):
            if p.error:                      # unreadable file: record it and go on
                w.writerow([p.source, "ERROR", "", "", "", p.error])
                continue
            j = det.judge(p)                 # PASS/FAIL, normalised score (FAIL above 1), regions of a FAIL
            n_fail += j.decision == "FAIL"
            w.writerow([p.source, j.decision, f"{j.normalized:.4f}", j.defect_area, j.boxes, ""])
            f.flush()
    print(f"{len(files)} images, {n_fail} FAIL; decisions in {out / 'decisions.csv'}")
    return 1 if n_fail else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    ap.add_argument("--model", required=True, help="a calibrated model bundle")
    ap.add_argument("--out", required=True, type=Path, help="report folder")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--by-hand", action="store_true", help="use the streaming API directly")
    args = ap.parse_args(argv)

    det = Detector.load(args.model, device="auto")
    if not det.calibration_:
        print(f"{args.model} is not calibrated: run 'inspect-ad calibrate --model {args.model} --good DIR'",
              file=sys.stderr)
        return 2
    print(det.calibration_["guarantee"])
    if args.by_hand:
        return by_hand(det, args.inputs, args.out)
    s = inspect_images(det, args.inputs, args.out, batch_size=16, resume=args.resume)
    print(f"{s.total} images: {s.passed} PASS, {s.failed} FAIL, {s.errors} unreadable; "
          f"open {args.out / 'index.html'}")
    return s.exit_code()


if __name__ == "__main__":
    sys.exit(main())
