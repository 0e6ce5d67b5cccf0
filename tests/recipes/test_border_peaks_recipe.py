"""recipes/border_peaks.py: where good maps peak, and how their borders compare with the interior."""
import numpy as np

from conftest import load_recipe


def test_peaks_and_bands_are_counted_per_side():
    maps = np.ones((3, 20, 20), np.float32)
    maps[0, 19, 5] = maps[1, 10, 19] = maps[2, 10, 10] = 5.0   # bottom, right, the middle
    maps[:, :, -4:] += 0.5                                      # a band along the right
    s = load_recipe("border_peaks").border_stats(maps, strip=4)
    assert (s["peaks_bottom"], s["peaks_right"], s["peaks_top"], s["in_any_strip"]) == (1, 1, 0, 2)
    assert s["band_right"] > 1.4 and s["band_top"] < 1.2 and s["area_share"] == 1 - 144 / 400
