"""Video anomaly detection: MNAD / prototype memories, losses, scoring, loaders, models, CLI."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import load_recipe

from inspect_ad.detectors.bundle import load_bundle, save_bundle
from inspect_ad.cli.image import main as main_cli
from inspect_ad.cli.video import video as video_cli
from inspect_ad.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video_set, write_frame_folders
from inspect_ad.data.video import (load_frame_folders, load_ucsd_original, load_video_dataset,
                                   parse_ucsd_m_file)
from inspect_ad.errors import InspectError
from inspect_ad.memory import (MNADMemory, PrototypeMemory, compactness_loss, discriminative_loss,
                               separateness_loss)
from inspect_ad.models import create_model, get_spec, list_models
from inspect_ad.models.video import MNAD, update_memory, video_loss
from inspect_ad.detectors.video import (RawScores, VideoDetector, VideoResult, anomaly_score, evaluate_videos,
                                        frame_psnr, per_video_auc, recipe_setting, regular_score, scored_clips,
                                        video_train_config)
from inspect_ad.scoring.normalize import minmax

E = math.e


def _mnad(items):
    mem = MNADMemory(len(items), len(items[0]))
    mem.items.copy_(torch.tensor(items))
    return mem


# ---- MNAD memory ----------------------------------------------------------------------------

def test_mnad_items_are_buffers_not_parameters():
    mem = MNADMemory(10, 8)
    assert list(mem.parameters()) == [] and "items" in mem.state_dict()


def test_mnad_read_concatenates_query_and_softmax_read():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    out = mem(torch.tensor([[1.0, 0.6], [0.0, 0.8]]).reshape(1, 2, 1, 2))   # queries [1, 0], [0.6, 0.8]
    assert out.features.shape == (1, 4, 1, 2)                       # 2C channels
    w1 = torch.tensor([E, 1.0]) / (E + 1)                           # softmax(qᵀp) for q = [1, 0]
    assert torch.allclose(out.weights[0], w1)
    assert torch.allclose(out.features[0, :, 0, 0], torch.cat([torch.tensor([1.0, 0.0]), w1]))


def test_mnad_update_uses_nearest_queries_with_max_normalised_weights():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])          # q1, q2 -> p1; q3 -> p2
    mem.update(q)
    # column 1 of softmax over queries: e^1, e^0.8, e^0; over U_1 = {q1, q2} max-normalised: 1, e^-0.2
    p1 = torch.tensor([1 + 1 + 0.8 * E ** -0.2, 0.6 * E ** -0.2])
    assert torch.allclose(mem.items[0], p1 / p1.norm(), atol=1e-6)
    assert torch.allclose(mem.items[1], torch.tensor([0.0, 1.0]))  # p2 + q3, renormalised


def test_mnad_item_chosen_by_no_query_is_unchanged():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    mem.update(torch.tensor([[1.0, 0.0], [0.9, 0.1]]))
    assert torch.equal(mem.items[1], torch.tensor([0.0, 1.0]))


def test_compactness_zero_when_queries_are_their_nearest_items():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(compactness_loss(items.clone(), items)) == 0.0
    # q = [0.6, 0.8] -> nearest p2, ‖q − p2‖² = 0.36 + 0.04, mean over C = 2
    assert float(compactness_loss(torch.tensor([[0.6, 0.8]]), items)) == pytest.approx(0.2)


def test_separateness_is_a_hinge_on_nearest_minus_second_nearest():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0]])                                  # d_pos = 0, d_neg = √2
    assert float(separateness_loss(q, items, margin=1.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(separateness_loss(q, items, margin=2.0)) == pytest.approx(2 - math.sqrt(2), abs=1e-4)


# ---- prototype memory ------------------------------------------------------------------------

def test_prototype_update_is_softmax_over_queries_then_l2norm():
    mem = PrototypeMemory(2, 2)
    with torch.no_grad():
        mem.items.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    mem.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    m1 = torch.tensor([1.0, 0.0]) + E / (E + 1) * torch.tensor([2.0, 0.0]) + 1 / (E + 1) * torch.tensor([0.0, 1.0])
    assert torch.allclose(mem.items[0], m1 / m1.norm(), atol=1e-6)


def test_prototype_read_is_cosine_softmax_with_query_width():
    mem = PrototypeMemory(2, 2)
    with torch.no_grad():
        mem.items.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    out = mem(torch.tensor([[5.0, 0.0]]))                          # cosine ignores the norm
    assert torch.allclose(out.weights[0], torch.tensor([E, 1.0]) / (E + 1))
    assert out.features.shape == (1, 2)


def test_discriminative_loss_is_trace_ratio():
    items = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    z = torch.tensor([[3.0, 0.0], [-1.0, 1.0]])                     # one query per item, K = 2
    # Tr(S_B) = ½·1 + ½·1 = 1;  Tr(S_W) = ½·‖[2,0]‖² + ½·‖[0,1]‖² = 2.5
    assert float(discriminative_loss(z, items)) == pytest.approx(2.5)


# ---- scoring -----------------------------------------------------------------------------------

def test_minmax_and_psnr():
    assert np.allclose(minmax(np.array([1.0, 3.0, 2.0])), [0, 1, 0.5])
    assert np.allclose(minmax(np.array([2.0, 2.0])), [0, 0])
    assert np.allclose(minmax(np.array([1.0, np.nan, 3.0]), 1.0, 5.0)[[0, 2]], [0, 0.5])
    # [-1, 1] frames: 0 vs 0.2 is 0.1 on [0, 1] -> MSE 0.01 -> 20 dB
    assert frame_psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.2)) == pytest.approx([20.0])


def test_anomaly_score_per_video_and_calibrated():
    model = create_model("mnad-pred", **get_spec("mnad-pred").tiny)           # λ = 0.6
    raw = RawScores(np.array([30.0, 20.0, 25.0]), np.array([0.3, 0.1, 0.2]), np.full(3, np.nan))
    assert np.allclose(anomaly_score(model, raw), [0.4, 0.6, 0.5])
    cal = {"psnr": [20.0, 40.0], "distance": [0.0, 0.4]}
    assert np.allclose(anomaly_score(model, raw, cal), [0.6, 0.7, 0.65])


def test_per_video_auc_skips_unscored_frames_and_one_class_videos():
    nan = np.nan
    raw = RawScores(np.array([nan, 30.0, 20.0, 25.0, 22.0]), np.full(5, nan), np.full(5, nan))
    mixed = VideoResult("a", np.array([1, 0, 1, 0, 1]), raw, np.array([0.9, 0.1, 0.8, 0.5, 0.4]), None)
    only_normal = VideoResult("b", np.zeros(5, int), raw, np.arange(5.0), None)
    # scored frames 1-4: normal 0.1, 0.5 vs anomalous 0.8, 0.4 -> pairs won 3 of 4
    assert per_video_auc([mixed, only_normal]) == {"a": pytest.approx(0.75)}


def test_regular_score_weights_large_errors():
    target = torch.zeros(1, 1, 2, 2)
    pred = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])                # one pixel off by 1 on [0, 1]
    assert float(regular_score(pred, target)) == pytest.approx(1.0)


def test_scored_clips_centre_cuboids_and_skip_first_predicted_frames():
    memae = create_model("memae3d", **get_spec("memae3d").tiny)
    clips = scored_clips(memae, 20)
    assert clips[0] == (0, 0) and clips[10] == (10, 2) and clips[19] == (19, 4)
    pred = create_model("mnad-pred", **get_spec("mnad-pred").tiny)
    assert scored_clips(pred, 7) == [(4, 0), (5, 1), (6, 2)]


# ---- data ---------------------------------------------------------------------------------------

def _write_frames(folder, n, ext=".jpg", size=(12, 10)):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}{ext}"), np.full(size, 10 * i, np.uint8))


def test_frame_folder_layout_with_concatenated_labels(tmp_path):
    for v in ("01", "02"):
        _write_frames(tmp_path / "training" / "frames" / v, 3)
    _write_frames(tmp_path / "testing" / "frames" / "01", 2)
    _write_frames(tmp_path / "testing" / "frames" / "02", 3)
    np.save(tmp_path / "frame_labels_ped2.npy", np.array([[0, 1, 1, 0, 0]]))
    ds = load_video_dataset(tmp_path)
    assert [len(v) for v in ds.train] == [3, 3]
    assert ds.test[0].labels.tolist() == [0, 1] and ds.test[1].labels.tolist() == [1, 0, 0]
    frames = ds.test[1].frames(8, 1)
    assert frames.shape == (3, 1, 8, 8) and frames.min() >= -1 and frames.max() <= 1


def test_frame_folder_label_count_mismatch_names_the_file(tmp_path):
    _write_frames(tmp_path / "testing" / "frames" / "01", 2)
    np.save(tmp_path / "frame_labels_x.npy", np.zeros(5))
    with pytest.raises(InspectError, match="frame_labels_x.npy"):
        load_frame_folders(tmp_path)


def test_shanghaitech_per_video_label_files(tmp_path):
    _write_frames(tmp_path / "training" / "frames" / "01_001", 2)
    _write_frames(tmp_path / "testing" / "frames" / "01_0014", 3)
    (tmp_path / "testing" / "test_frame_mask").mkdir()
    np.save(tmp_path / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 0, 1]))
    ds = load_video_dataset(tmp_path)
    assert ds.test[0].labels.tolist() == [0, 0, 1]


def test_ucsd_original_layout_with_m_file(tmp_path):
    root = tmp_path / "UCSDped2"
    _write_frames(root / "Train" / "Train001", 3, ".tif")
    _write_frames(root / "Test" / "Test001", 6, ".tif")
    _write_frames(root / "Test" / "Test001_gt", 6, ".bmp")          # pixel masks: not a video
    _write_frames(root / "Test" / "Test002", 4, ".tif")
    (root / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3, 5:6];\n"
        "TestVideoFile{end+1}.gt_frame = [4:9];\n")
    assert parse_ucsd_m_file(root / "Test" / "UCSDped2.m") == [[(2, 3), (5, 6)], [(4, 9)]]
    ds = load_ucsd_original(root)
    assert [v.name for v in ds.test] == ["Test001", "Test002"]
    assert ds.test[0].labels.tolist() == [0, 1, 1, 0, 1, 1] and ds.test[1].labels.tolist() == [0, 0, 0, 1]


def test_unknown_layout_lists_the_layouts(tmp_path):
    with pytest.raises(InspectError, match="layouts understood"):
        load_video_dataset(tmp_path)


def test_synthetic_set_is_deterministic_and_labelled():
    cfg = SyntheticVideoConfig(size=32, train_videos=1, test_videos=3, frames=40, anomaly_start=(10, 12))
    a, b = make_synthetic_video_set(3, cfg), make_synthetic_video_set(3, cfg)
    assert np.array_equal(a.train[0].array, b.train[0].array)
    assert all(np.array_equal(x.array, y.array) for x, y in zip(a.test, b.test))
    for v in a.test:
        assert v.labels[:10].sum() == 0 and v.labels.sum() > 0
        assert np.all(v.masks[v.labels > 0].reshape(int(v.labels.sum()), -1).any(axis=1))
    assert not np.array_equal(a.train[0].array, make_synthetic_video_set(4, cfg).train[0].array)


# ---- models, bundle, CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["memae3d", "mnad-recon", "mnad-pred", "prototype"])
def test_video_model_trains_one_step_and_round_trips(name, tmp_path):
    assert name in list_models("video")
    spec = get_spec(name)
    cfg = spec.build_config(**spec.tiny)
    model = create_model(name, cfg)
    clip = torch.rand(2, cfg.clip_length, cfg.in_channels, cfg.image_size, cfg.image_size) * 2 - 1
    x, targets = model.split_clip(clip)
    assert x.shape == spec.example_input(cfg).shape
    out = model(x)
    loss, logs = video_loss(model, out, targets)
    loss.backward()
    update_memory(model, out)
    assert math.isfinite(float(loss.detach())) and logs
    model.eval()
    save_bundle(tmp_path / "b", model, name, cfg)
    loaded = load_bundle(tmp_path / "b")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k


def test_mnad_no_memory_ablation_has_no_memory():
    model = create_model("mnad-recon", **{**get_spec("mnad-recon").tiny, "use_memory": False})
    assert isinstance(model, MNAD) and model.memory is None
    assert model(torch.zeros(1, 3, 32, 32)).queries is None


def test_cli_fit_evaluate_score(tmp_path):
    cfg = SyntheticVideoConfig(size=32, train_videos=2, test_videos=2, frames=24, anomaly_start=(8, 10))
    data = write_frame_folders(make_synthetic_video_set(0, cfg), tmp_path / "data")
    runner = CliRunner()
    out = tmp_path / "m"
    r = runner.invoke(video_cli, ["fit", "--recipe", "mnad-pred", "--data", str(data), "--out", str(out),
                                  "--setting", "tiny", "--epochs", "1", "--max-steps-per-epoch", "2",
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["training"]["ran_on"].startswith("CPU (")
    r = runner.invoke(video_cli, ["evaluate", "--model", str(out), "--data", str(data)])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["frame_auc"] <= 1 and "frame_auc_calibrated" in metrics
    assert metrics["frames_scored"] == 2 * (24 - 4)                 # first 4 frames have no clip
    assert (out / "eval" / "scores.png").stat().st_size > 0
    clip = data / "testing" / "frames" / "test00_fast"
    r = runner.invoke(video_cli, ["score", str(clip), "--model", str(out), "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert len(rows) == 25 and rows[0].startswith("frame,file,psnr")
    assert rows[1].split(",")[2] == "nan" and rows[5].split(",")[2] != "nan"   # frames 0-3 unscored


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cli_fit_names_a_missing_gpu_in_one_line():
    r = CliRunner().invoke(main_cli, ["video", "fit", "--recipe", "mnad-pred", "--data", "synthetic", "--out", "x",
                                      "--setting", "tiny", "--epochs", "1", "--device", "cuda"])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output and "--device cpu" in r.output


def test_cli_unknown_recipe_lists_choices():
    r = CliRunner().invoke(video_cli, ["fit", "--recipe", "mnda", "--data", "synthetic", "--out", "x"])
    assert r.exit_code != 0 and "mnad-pred" in r.output


@pytest.mark.parametrize("weight,term", [(1.0, "psnr"), (0.0, "distance")])
def test_term_auc_is_the_frame_auc_when_the_score_is_that_term_alone(weight, term):
    cfg = SyntheticVideoConfig(size=32, train_videos=0, test_videos=2, frames=20, anomaly_start=(6, 8))
    videos = make_synthetic_video_set(0, cfg).test
    model = create_model("mnad-recon", **{**get_spec("mnad-recon").tiny, "score_weight": weight,
                                          "in_channels": 1, "image_size": 32})
    metrics, _ = evaluate_videos(model, videos, test_time_update=False)
    assert metrics["term_auc"][term] == pytest.approx(metrics["frame_auc"])
    nomem = create_model("mnad-recon", **{**get_spec("mnad-recon").tiny, "use_memory": False, "in_channels": 1,
                                          "image_size": 32})
    assert "term_auc" not in evaluate_videos(nomem, videos, test_time_update=False)[0]


def test_ped2_recipe_passes_model_options_and_skips_finished_runs(tmp_path, capsys):
    ped2 = load_recipe("ped2")
    argv = ["--data", "synthetic", "--setting", "tiny", "--recipes", "memae3d", "--memory", "yes",
            "--epochs", "1", "--max-steps-per-epoch", "1", "-o", "logit_scale=20", "--out", str(tmp_path),
            "--table", str(tmp_path / "t.md")]
    ped2.main(argv)
    row = json.loads((tmp_path / "results.jsonl").read_text())
    assert row["model"]["logit_scale"] == 20 and row["options"] == ["logit_scale=20"]
    assert "| memae3d `logit_scale=20` | yes |" in (tmp_path / "t.md").read_text()
    capsys.readouterr()
    ped2.main(argv)                                                   # same run again: nothing retrained
    assert capsys.readouterr().out == "" and len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


OLD_VIDEO_BUNDLE = Path(__file__).parent / "data" / "bundle_0.1_video_mnad_pred"


def test_video_bundle_from_before_the_detector_loads_and_scores_identically():
    # saved by `inspect-ad video fit --recipe mnad-pred --setting tiny --epochs 2 --max-steps-per-epoch 3`
    # at 4d2404c: its score ranges sit under "calibration" and its config carries learning_rate
    det = VideoDetector.load(OLD_VIDEO_BUNDLE, "cpu")
    assert set(det.ranges_) == {"psnr", "distance"} and det.calibration_ is None
    scores = det.score_samples(make_synthetic_video_set(seed=0).test[0])
    assert np.isnan(scores[:4]).all()      # frames 0-3 have no 4-frame history
    assert float(np.nansum(scores)) == 64.63366320038455   # that version's own scores, pinned
    assert scores[4:7].tolist() == [0.8344350810933884, 0.7714279918749963, 0.8031549616653761]


def test_video_detector_fit_calibrate_save_load(tmp_path):
    ds = make_synthetic_video_set(seed=0)
    tc = video_train_config("mnad-recon", "tiny", epochs=1, max_steps_per_epoch=2, device="cpu")
    det = VideoDetector("mnad-recon", recipe_setting("mnad-recon", "tiny")["model"], tc).fit(ds.train[:2], progress=False)
    det.calibrate(ds.train[2:3], target_frr=0.2)
    det.save(tmp_path / "m")
    back = VideoDetector.load(tmp_path / "m", "cpu")
    video = ds.test[0]
    assert np.array_equal(back.score_samples(video), det.score_samples(video), equal_nan=True)
    assert back.threshold_ == det.threshold_ and back.predict(video).dtype == bool
    assert back.train_config == tc


def test_video_training_config_follows_the_papers():
    assert video_train_config("mnad-recon", "paper").lr == 2e-5 and video_train_config("mnad-pred", "paper").lr == 2e-4
    assert video_train_config("mnad-recon", "cpu", lr=None).lr == 2e-4     # None: keep the setting's value
    assert video_train_config("prototype", "paper").schedule == "cosine"


def test_video_cli_takes_the_image_commands_option_names(tmp_path):
    runner = CliRunner()
    base = ["fit", "--recipe", "mnad-recon", "--data", "synthetic", "--out", str(tmp_path / "m"), "--setting", "tiny",
            "--epochs", "1", "--max-steps-per-epoch", "1", "--device", "cpu"]
    r = runner.invoke(video_cli, [*base, "-o", "memory_slots=3", "--set", "score_weight=0.5"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["config"]
    assert json.dumps(cfg).count('"score_weight": 0.5') == 1 and "3" in json.dumps(cfg)
    r = runner.invoke(video_cli, ["evaluate", "--bundle", str(tmp_path / "m"), "--data", "synthetic"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(video_cli, [*base, "--overwrite", "-o", "widths=[4, 8]"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
