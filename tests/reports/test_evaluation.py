"""ROC/PRO plots and model comparisons (inspect_ad/reports/evaluation.py), read from the
matplotlib objects rather than the pixels."""

import numpy as np
import pytest

from inspect_ad.atomic import atomic_write_json
from inspect_ad.errors import InspectError
from inspect_ad.reports import visualize
from inspect_ad.reports.evaluation import (CURVES_FILE, FPR_LIMIT, _plot_points, save_comparison_plots,
                                           save_curve_plots)
from inspect_ad.scoring import metrics

CURVES = {"roc_fpr": np.array([0, 0.5, 1.0]), "roc_tpr": np.array([0, 0.9, 1.0]),
          "pro_fpr": np.array([0, 0.1, 1.0]), "pro": np.array([0, 0.6, 1.0])}
METRICS = {"image_auroc": 0.923, "aupro": 0.71, "dataset": "widget", "n_images": 4}


@pytest.fixture
def figures(monkeypatch):
    """The figures that would have been saved, by file name, kept open to be inspected."""
    kept = {}
    monkeypatch.setattr(visualize, "_save", lambda fig, path, info=None: kept.setdefault(path.name, fig))
    yield kept
    for fig in kept.values():
        visualize.plt.close(fig)


def legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def report(folder, metrics_=METRICS, curves=CURVES):
    folder.mkdir(parents=True)
    atomic_write_json(folder / "metrics.json", metrics_)
    np.savez(folder / CURVES_FILE, **curves)
    return folder


def test_roc_legend_gives_the_auroc_beside_a_chance_line(figures, tmp_path):
    save_curve_plots(tmp_path, {"patchcore": (METRICS, CURVES)})
    assert legend(figures["roc.png"]) == ["patchcore (AUROC 0.923)", "chance (AUROC 0.500)"]
    chance = figures["roc.png"].axes[0].lines[-1]
    assert chance.get_linestyle() == "--" and list(chance.get_xdata()) == list(chance.get_ydata()) == [0, 1]


def test_pro_plot_marks_the_integration_limit_and_ends_just_past_it(figures, tmp_path):
    save_curve_plots(tmp_path, {"patchcore": (METRICS, CURVES)})
    ax = figures["pro_curve.png"].axes[0]
    assert legend(figures["pro_curve.png"])[0] == "patchcore (AUPRO@30% 0.710)"
    assert ax.lines[-1].get_xdata()[0] == FPR_LIMIT and FPR_LIMIT < ax.get_xlim()[1] < 0.35


def test_the_chance_aupro_in_the_legend_is_what_aupro_gives_a_random_scorer(figures, tmp_path):
    rng = np.random.default_rng(0)
    masks = [np.zeros((64, 64), bool) for _ in range(4)]
    for m in masks:
        m[10:30, 20:44] = True
    random = metrics.aupro(masks, [rng.random((64, 64)) for _ in masks], fpr_limit=FPR_LIMIT)
    save_curve_plots(tmp_path, {"m": (METRICS, CURVES)})
    stated = float(legend(figures["pro_curve.png"])[1].rsplit(" ", 1)[1].rstrip(")"))
    assert stated == pytest.approx(random, abs=0.01)


def test_comparison_draws_every_model_and_one_chance_line(figures, tmp_path):
    reports = {name: report(tmp_path / name, {**METRICS, "image_auroc": auroc})
               for name, auroc in (("patchcore", 0.923), ("mmae", 0.81))}
    written = save_comparison_plots(reports, tmp_path / "cmp")
    assert [p.name for p in written] == ["roc_models.png", "pro_models.png"]
    assert legend(figures["roc_models.png"]) == ["patchcore (AUROC 0.923)", "mmae (AUROC 0.810)",
                                                 "chance (AUROC 0.500)"]
    assert len(figures["pro_models.png"].axes[0].lines) == 2 + 2     # the models, chance, the limit


def test_comparison_refuses_reports_of_different_test_sets(tmp_path):
    reports = {"a": report(tmp_path / "a"), "b": report(tmp_path / "b", {**METRICS, "n_images": 9})}
    with pytest.raises(InspectError, match="different test sets.*b: widget, 9 images"):
        save_comparison_plots(reports, tmp_path / "cmp")


def test_comparison_names_a_folder_that_is_not_a_report(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(InspectError, match=f"{tmp_path / 'old'} is not a complete evaluation report"):
        save_comparison_plots({"old": tmp_path / "old"}, tmp_path / "cmp")


def test_thinned_curve_keeps_its_ends_and_about_n_points():
    fpr = np.sort(np.random.default_rng(0).random(100_000))
    keep = _plot_points(fpr, n=500)
    assert keep[0] == 0 and keep[-1] == fpr.size - 1 and len(keep) <= 502
    assert np.all(np.diff(keep) > 0)


def test_a_calibrated_run_marks_its_operating_point_on_the_roc(figures, tmp_path):
    point = {"image_threshold": 2.0, "target_frr": 0.01, "fpr": 0.025, "tpr": 0.857}
    save_curve_plots(tmp_path, {"patchcore": ({**METRICS, "operating_point": point}, CURVES)})
    ax = figures["roc.png"].axes[0]
    assert legend(figures["roc.png"])[1] == "patchcore at its threshold (target FRR 0.01): FPR 0.025, TPR 0.857"
    marker = ax.lines[1]
    assert marker.get_marker() == "o" and (marker.get_xdata()[0], marker.get_ydata()[0]) == (0.025, 0.857)
    assert marker.get_color() == ax.lines[0].get_color()


def test_the_operating_point_counts_the_threshold_s_decisions_on_the_test_set():
    from pathlib import Path
    from inspect_ad.data.datasets import Sample
    from inspect_ad.reports.evaluation import operating_point
    samples = [Sample(Path(f"{i}.png"), None, "good") for i in range(4)] + \
              [Sample(Path(f"d{i}.png"), Path(f"m{i}.png"), "crack") for i in range(2)]
    scores = np.array([0.1, 0.5, 1.2, 0.3, 1.5, float("nan")])   # a good part above, a NaN defect: both FAIL
    p = operating_point(samples, scores, {"image_threshold": 1.0, "target_frr": 0.05})
    assert (p["fpr"], p["tpr"]) == (0.25, 1.0)
