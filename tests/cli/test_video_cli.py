"""The video commands (inspect_ad/cli/video.py): fit, evaluate, score, and their one-line errors."""
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import one_line_error, run_cli

from inspect_ad.cli.image import main
from inspect_ad.cli.video import video as video_cli
from inspect_ad.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video_set, write_frame_folders


def test_cli_fit_evaluate_score(tmp_path):
    cfg = SyntheticVideoConfig(size=32, train_videos=2, test_videos=2, frames=24, anomaly_start=(8, 10))
    data = write_frame_folders(make_synthetic_video_set(0, cfg), tmp_path / "data")
    runner = CliRunner()
    out = tmp_path / "m"
    r = runner.invoke(video_cli, ["fit", "--recipe", "mnad-pred", "--data", str(data), "--out", str(out),
                                  "--setting", "tiny", "--epochs", "1", "--max-steps-per-epoch", "2",
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "warning: --setting is deprecated; use --preset" in r.output
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
    r = CliRunner().invoke(main, ["video", "fit", "--recipe", "mnad-pred", "--data", "synthetic", "--out", "x",
                                      "--preset", "tiny", "--epochs", "1", "--device", "cuda"])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output and "--device cpu" in r.output


def test_cli_unknown_recipe_lists_choices():
    r = CliRunner().invoke(video_cli, ["fit", "--recipe", "mnda", "--data", "synthetic", "--out", "x"])
    assert r.exit_code != 0 and "mnad-pred" in r.output


def test_video_cli_takes_the_image_commands_option_names(tmp_path):
    """--model, --data-root, -o, --quiet as in the image commands (test_cli_fit_evaluate_score uses
    the older --recipe, --data and --setting, still accepted)."""
    runner = CliRunner()
    base = ["fit", "--model", "mnad-recon", "--data-root", "synthetic", "--out", str(tmp_path / "m"), "--preset",
            "tiny", "--epochs", "1", "--max-steps-per-epoch", "1", "--device", "cpu", "--quiet"]
    r = runner.invoke(video_cli, [*base, "-o", "memory_slots=3", "--set", "score_weight=0.5"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["config"]
    assert json.dumps(cfg).count('"score_weight": 0.5') == 1 and "3" in json.dumps(cfg)
    r = runner.invoke(video_cli, ["evaluate", "--bundle", str(tmp_path / "m"), "--data-root", "synthetic"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(video_cli, [*base, "--overwrite", "-o", "widths=[4, 8]"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


run = run_cli


def test_video_help_shows_the_shared_names_only():
    for command in ("fit", "evaluate"):
        text = run("video", command, "--help").output
        assert "--data-root" in text and "--data " not in text and "--recipe" not in text, command
    assert "--preset" in run("video", "fit", "--help").output and "--setting" not in run("video", "fit", "--help").output


def test_video_fit_refuses_to_replace_a_bundle(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.json").write_text("{}")
    one_line_error(run("video", "fit", "--recipe", "memae3d", "--data", "synthetic", "--preset", "tiny",
                       "--out", tmp_path / "v"), "--overwrite")
    assert (tmp_path / "v" / "config.json").read_text() == "{}"


def test_video_evaluate_on_an_image_bundle_is_one_line(qa):
    root, _ = qa
    one_line_error(run("video", "evaluate", "--model", root / "model", "--data", "synthetic"), "not a video model")
