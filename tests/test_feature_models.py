"""The pretrained-feature models: the coreset memory, ``patchcore`` and feature MMAE."""
import numpy as np
import pytest
import torch

from inspect_ad.scoring.anomaly_map import MapConfig
from inspect_ad.data import from_mvtec
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.memory import CoresetMemory, greedy_coreset, nearest
from inspect_ad.models import TINY_FEATURE, FeatureMMAEConfig, FeatureOutput, create_model, make_config
from inspect_ad.engine.loop import TrainConfig


def test_greedy_coreset_picks_one_point_per_far_cluster():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres])
    chosen = greedy_coreset(points, 3)
    assert sorted(int(i) // 50 for i in chosen) == [0, 1, 2]


def test_nearest_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(300, 16, generator=gen), torch.randn(1000, 16, generator=gen)
    d, i = nearest(queries, bank, k=3, chunk=128)
    brute = torch.cdist(queries, bank).pow(2)
    torch.testing.assert_close(d, brute.topk(3, largest=False).values, atol=1e-4, rtol=1e-4)
    assert torch.equal(i[:, 0], brute.argmin(1))


def test_coreset_memory_reads_the_nearest_slot_with_sparse_weights():
    memory = CoresetMemory(1, 4)
    memory.fill(torch.eye(4).repeat(10, 1), ratio=0.1, max_slots=4)
    out = memory(torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.2, 1.1]]))
    torch.testing.assert_close(out.features, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
    assert out.weights.is_sparse and torch.equal(out.weights.to_dense().sum(1), torch.ones(2))


def test_coreset_bank_is_bounded_by_max_slots():
    memory = CoresetMemory(1, 8)
    assert memory.fill(torch.randn(5000, 8), ratio=0.5, max_slots=100) == 100
    assert memory.slots.shape == (100, 8) and memory.num_slots == 100


@pytest.mark.parametrize("name", ["mmae", "memae", "ae"])
def test_feature_variants_train_every_parameter_but_the_frozen_backbone(name):
    torch.manual_seed(0)
    cfg = make_config(name, **TINY_FEATURE)
    model = create_model(name, cfg).train()
    out = model(torch.rand(2, 3, 32, 32))
    assert isinstance(out, FeatureOutput) and out.anomaly_map.shape == (2, 8, 8)
    (out.anomaly_map.mean() + sum(w.mean() for w in out.weights)).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith("backbone.") for n, _ in trainable)
    dead = [n for n, p in trainable if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_feature_ablations_are_configs_of_one_model():
    assert isinstance(make_config("mmae", backbone="efficientnet_lite0"), FeatureMMAEConfig)
    memae = make_config("memae", backbone="efficientnet_lite0")
    assert memae.num_scales == 1 and len(memae.stages) == 1 and memae.use_memory
    assert not make_config("ae", backbone="efficientnet_lite0").use_memory
    assert not isinstance(make_config("mmae"), FeatureMMAEConfig)  # no backbone: the pixel model


def test_input_scales_run_the_backbone_on_the_resized_input():
    cfg = make_config("mmae", **{**TINY_FEATURE, "image_size": 64}, scale_source="input", num_scales=2)
    out = create_model("mmae", cfg)(torch.rand(1, 3, 64, 64))
    assert [t.shape[-1] for t in out.features] == [16, 8]   # stage 1 (stride 4) at 64 and 32 px
    assert [t.shape[1] for t in out.features] == [64, 64]   # stages 1 + 2 concatenated at each scale


def test_pixel_options_are_refused_for_a_feature_model():
    with pytest.raises(InspectError, match="has no option base_channels"):
        make_config("mmae", backbone="efficientnet_lite0", base_channels=4)


def fit_tiny(name, root, tmp_path, **options):
    data = from_mvtec(root, "widget")
    det = Detector(name, 32, train_config=TrainConfig(epochs=2, batch_size=4, lr=1e-3, seed=0, device="cpu"),
                   model_options={k: v for k, v in options.items() if k != "image_size"})
    det.fit(data.train, out=tmp_path / name, progress=False)
    return det, data


def test_patchcore_fits_without_training_and_reloads_identically(tiny_mvtec, tmp_path):
    det, data = fit_tiny("patchcore", tiny_mvtec, tmp_path, stages=[1, 2], coreset_ratio=0.5)
    assert det.history_ == [] and det.model_.memory.num_slots > 1
    assert det.training_info_["backbone_weights"].startswith("efficientnet-lite0")
    paths = [s.image for s in data.test]
    again = Detector.load(tmp_path / "patchcore", "cpu")
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))


def test_patchcore_scores_the_defects_above_the_good_parts(tiny_mvtec, tmp_path):
    det, data = fit_tiny("patchcore", tiny_mvtec, tmp_path, stages=[1, 2], coreset_ratio=0.5)
    scores = det.score_samples([s.image for s in data.test])
    labels = np.array([s.is_anomalous for s in data.test])
    assert scores[labels].min() > scores[~labels].max()


def test_feature_mmae_fits_on_cached_features_and_reloads_identically(tiny_mvtec, tmp_path):
    det, data = fit_tiny("mmae", tiny_mvtec, tmp_path, **TINY_FEATURE)
    assert len(det.history_) == 2 and np.isfinite(det.history_[-1]["loss"])
    paths = [s.image for s in data.test]
    again = Detector.load(tmp_path / "mmae", "cpu")
    assert isinstance(again.model_config_, FeatureMMAEConfig)
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))


@pytest.mark.parametrize("name", ["mmae", "patchcore"])
def test_feature_models_refuse_pixel_only_training_terms(tiny_mvtec, name):
    data = from_mvtec(tiny_mvtec, "widget")
    options = {k: v for k, v in TINY_FEATURE.items() if k != "image_size"} if name == "mmae" else {}
    det = Detector(name, 32, train_config=TrainConfig(epochs=1, device="cpu", synthetic_defects=0.5),
                   model_options=options)
    with pytest.raises(InspectError, match="apply to pixel models"):
        det.fit(data.train, progress=False)


def test_cli_fit_defaults_to_patchcore_on_pretrained_features_and_segments(tiny_mvtec, tmp_path):
    from click.testing import CliRunner

    from inspect_ad.cli.image import main
    out = tmp_path / "pc"
    r = CliRunner().invoke(main, ["fit", "--data-root", str(tiny_mvtec), "--category", "widget", "--out", str(out),
                                  "--image-size", "32", "--device", "cpu", "--quiet", "-o", "stages=[1,2]"])
    assert r.exit_code == 0, r.output
    assert "patchcore (efficientnet_lite0 features)" in r.output and "memory bank of" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--data-root", str(tiny_mvtec), "--category",
                                  "widget", "--out", str(tmp_path / "rep"), "--device", "cpu"])
    assert r.exit_code == 0 and "image_auroc=1.0000" in r.output, r.output


def test_cli_refuses_patchcore_without_a_backbone(tiny_mvtec, tmp_path):
    from click.testing import CliRunner

    from inspect_ad.cli.image import main
    r = CliRunner().invoke(main, ["fit", "--data-root", str(tiny_mvtec), "--category", "widget", "--out",
                                  str(tmp_path / "x"), "--backbone", "none"])
    assert r.exit_code == 2 and "works on pretrained features" in r.output


@pytest.mark.parametrize("settings", [dict(resize_mode="pad"), dict(normalization="stretch"),
                                      dict(map_config=MapConfig(sigma=2, standardize="score"))])
def test_patchcore_takes_the_preprocessing_and_map_options(tiny_mvtec, tmp_path, settings):
    data = from_mvtec(tiny_mvtec, "widget")
    det = Detector("patchcore", 32, train_config=TrainConfig(batch_size=4, device="cpu"),
                   model_options={"stages": [1, 2], "coreset_ratio": 0.5}, **settings)
    det.fit(data.train, out=tmp_path / "m", progress=False)
    again = Detector.load(tmp_path / "m", "cpu")
    paths = [s.image for s in data.test]
    np.testing.assert_array_equal(det.score_samples(paths), again.score_samples(paths))
    assert [m.shape for m in again.anomaly_maps(paths)] == [(40, 48)] * len(paths)
