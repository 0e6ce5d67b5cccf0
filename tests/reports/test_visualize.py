"""Heatmap colour bars and galleries (inspect_ad/reports/visualize.py), read from the matplotlib
objects rather than the pixels."""
import numpy as np
import pytest

from inspect_ad.detectors.image import Detector
from inspect_ad.reports import visualize
from inspect_ad.reports.visualize import ColourScale, colour_bar, colour_scale, save_gallery


@pytest.fixture
def figures(monkeypatch):
    """The figures the module would have saved, kept open to be inspected."""
    kept = []
    monkeypatch.setattr(visualize, "_save", lambda fig, path: kept.append(fig))
    yield kept
    for fig in kept:
        visualize.plt.close(fig)


def bar_ticks(bar) -> dict[float, str]:
    return {round(float(t), 6): label.get_text() for t, label in zip(bar.get_ticks(), bar.ax.get_yticklabels())}


def test_colour_range_is_the_same_before_and_after_calibration(qa_bundles):
    before = colour_scale(Detector.load(qa_bundles / "uncalibrated", "cpu"))
    calibrated = Detector.load(qa_bundles / "model", "cpu")
    after = colour_scale(calibrated)
    assert before.vmax == after.vmax == 2 * calibrated.reference_["pixel_p99"]
    assert before.threshold is None and after.threshold == calibrated.calibration_["pixel_threshold"]


def test_colour_bar_marks_the_threshold_and_drops_ticks_that_would_overlap_it():
    fig, ax = visualize.plt.subplots()
    ticks = bar_ticks(colour_bar(fig, ColourScale(1.0, 0.43), ax=ax))
    visualize.plt.close(fig)
    assert ticks[0.43] == "threshold\n0.43"
    assert all(abs(t - 0.43) >= 0.15 for t in ticks if t != 0.43) and 0.2 in ticks


def test_a_threshold_above_the_scale_is_named_at_its_top():
    fig, ax = visualize.plt.subplots()
    ticks = bar_ticks(colour_bar(fig, ColourScale(1.0, 2.5), ax=ax))
    visualize.plt.close(fig)
    assert ticks[1.0] == "threshold\n2.5\n(above scale)"


def test_gallery_has_a_colour_bar_and_readable_captions(figures, tmp_path):
    img, amap = np.zeros((16, 16, 1), np.uint8), np.zeros((16, 16))
    save_gallery(tmp_path / "g.png", [("good\nscore 1.5\n000.png", img, amap, None)] * 2, ColourScale(2.0, 1.0))
    (fig,) = figures
    captions = [ax.title for ax in fig.axes if ax.get_title()]
    assert [c.get_text() for c in captions] == ["good\nscore 1.5\n000.png"] * 2
    assert min(c.get_fontsize() for c in captions) >= 10
    bar = fig.axes[-1]   # the colour bar's, after the 2 × 2 picture axes
    assert len(fig.axes) == 2 * 2 + 1 and "threshold\n1" in [t.get_text() for t in bar.get_yticklabels()]
