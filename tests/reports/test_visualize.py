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
    monkeypatch.setattr(visualize, "_save", lambda fig, path, info=None: kept.append(fig))
    yield kept
    for fig in kept:
        visualize.plt.close(fig)


def bar_ticks(bar) -> dict[float, str]:
    return {round(float(t), 6): label.get_text() for t, label in zip(bar.get_ticks(), bar.ax.get_yticklabels())}


def test_a_calibrated_scale_is_in_units_of_the_image_threshold_with_both_thresholds_marked(qa_bundles):
    det = Detector.load(qa_bundles / "model", "cpu")
    cal = det.calibration_
    scale = colour_scale(det)
    assert scale.unit == cal["image_threshold"]
    # from the training images' median map value, with the FAIL line at two thirds of the bar
    assert scale.vmin == pytest.approx(min(0.9, det.reference_["pixel_p50"] / cal["image_threshold"]))
    assert (1.0 - scale.vmin) / (scale.vmax - scale.vmin) == pytest.approx(2 / 3)
    assert dict((text, v) for v, text in scale.marks) == {
        "FAIL threshold": 1.0, "outline (pixel threshold)": pytest.approx(cal["pixel_threshold"] / cal["image_threshold"])}
    assert "image threshold" in scale.label


def test_an_uncalibrated_scale_is_labelled_as_such_in_units_of_the_training_scores(qa_bundles):
    det = Detector.load(qa_bundles / "uncalibrated", "cpu")
    scale = colour_scale(det)
    assert scale.unit == det.reference_["score_max"] and "not calibrated" in scale.label
    assert scale.marks == ((1.0, "highest training score"),)


def test_with_a_mean_score_the_scale_is_the_pixel_threshold_s(qa_bundles):
    from dataclasses import replace
    det = Detector.load(qa_bundles / "model", "cpu")
    det.map_config = replace(det.map_config, pooling="mean")
    scale = colour_scale(det)
    assert scale.unit == det.calibration_["pixel_threshold"] and "mean score" in scale.label


def test_colour_bar_marks_the_thresholds_and_drops_ticks_that_would_overlap_them():
    fig, ax = visualize.plt.subplots()
    ticks = bar_ticks(colour_bar(fig, ColourScale(2.0, marks=((1.0, "FAIL"), (0.43, "outline"))), ax=ax))
    visualize.plt.close(fig)
    assert ticks[1.0] == "1 FAIL" and ticks[0.43] == "0.43 outline"
    assert all(min(abs(t - 1.0), abs(t - 0.43)) >= 0.12 * 1.5 for t in ticks if t not in (1.0, 0.43)) and 0 in ticks


def test_thumbnails_and_pictures_colour_a_value_alike():
    scale = ColourScale(2.0)
    rgb = visualize.heat_rgb(np.array([[0.0, 2.0, 3.0, 9.0]]), scale)   # 0, the unit, the top, beyond it
    cmap = visualize.matplotlib.colormaps[visualize.HEAT_CMAP]
    expected = [(np.array(cmap(v)[:3]) * 255).round() for v in (0.0, 1.0 / 1.5, 1.0, 1.0)]
    assert np.abs(rgb[0].astype(float) - np.array(expected)).max() <= 3


def test_gallery_has_a_colour_bar_and_readable_captions(figures, tmp_path):
    img, amap = np.zeros((16, 16, 1), np.uint8), np.zeros((16, 16))
    save_gallery(tmp_path / "g.png", [("good\nPASS 0.93\n000.png", img, amap, None)] * 2,
                 ColourScale(2.0, marks=((1.0, "FAIL threshold"),)))
    (fig,) = figures
    captions = [ax.title for ax in fig.axes if ax.get_title()]
    assert [c.get_text() for c in captions] == ["good\nPASS 0.93\n000.png"] * 2
    assert min(c.get_fontsize() for c in captions) >= 10
    bar = fig.axes[-1]   # the colour bar's, after the 2 × 2 picture axes
    assert len(fig.axes) == 2 * 2 + 1 and "1 FAIL threshold" in [t.get_text() for t in bar.get_yticklabels()]
