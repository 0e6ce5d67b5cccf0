"""Min–max normalisation g(·), as the papers use it (MemAE §4.1 on test sets, MNAD eq. 15 per
test video), or against a range fixed once on normal data."""
from __future__ import annotations

import numpy as np


def minmax(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(x − min) / (max − min), with min/max from ``values`` (NaN ignored) unless given; all zeros
    when the range is empty."""
    lo = np.nanmin(values) if lo is None else lo
    hi = np.nanmax(values) if hi is None else hi
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
