"""The training loop: determinism, resume, settings (inspect_ad/training/loop.py)."""
import pytest
import torch

from inspect_ad.data.preprocess import Preprocessing, TrainImages
from inspect_ad.training.batches import LoaderBatches
from inspect_ad.training.loop import TrainConfig, train
from inspect_ad.training.objectives import memae_objective
from inspect_ad.errors import InspectError
from inspect_ad.models import create_model, get_spec

TINY = dict(get_spec("mmae").tiny, in_channels=1)   # the registered tiny MMAE, on grey images


def run(tiny_mvtec, epochs, ckpt=None, resume=False, model=None):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    torch.manual_seed(0)
    model = model or create_model("mmae", **TINY)
    cfg = TrainConfig(epochs=epochs, batch_size=4, checkpoint_every=1, seed=3)
    batches = LoaderBatches(TrainImages(paths, Preprocessing(TINY["image_size"], 1)), cfg.batch_size, cfg.seed)
    hist = train(model, batches, cfg, memae_objective(2e-4), checkpoint_dir=ckpt, resume=resume, progress=False)
    return model, hist


def test_training_is_deterministic(tiny_mvtec):
    a, ha = run(tiny_mvtec, 2)
    b, hb = run(tiny_mvtec, 2)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_matches_uninterrupted_run(tiny_mvtec, tmp_path):
    full, hist_full = run(tiny_mvtec, 3)
    run(tiny_mvtec, 2, ckpt=tmp_path / "ckpt")                     # "interrupted" after 2 epochs
    resumed, hist = run(tiny_mvtec, 3, ckpt=tmp_path / "ckpt", resume=True)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] == hist_full[-1]["loss"]
    assert all(torch.equal(p, q) for p, q in zip(full.state_dict().values(), resumed.state_dict().values()))


@pytest.mark.parametrize("bad", [dict(synthetic_defects=2.0), dict(ssim_weight=float("nan")), dict(epochs=0),
                                 dict(lr=-1.0), dict(schedule="linear")])
def test_train_config_refuses_settings_out_of_range(bad):
    with pytest.raises(InspectError, match=r"=\S+: must be (a finite number|an integer)|choose one of"):
        TrainConfig(**bad)
