import torch

from inspect_ad.data.preprocess import Preprocessing, TrainImages
from inspect_ad.models import create_model
from inspect_ad.engine.batches import LoaderBatches
from inspect_ad.engine.loop import TrainConfig, train
from inspect_ad.engine.objectives import memae_objective

TINY = dict(in_channels=1, image_size=32, grid_stride=8, latent_channels=8, base_channels=4, max_channels=8,
            num_scales=2, memory_slots=10)


def run(tiny_mvtec, epochs, ckpt=None, resume=False, model=None):
    paths = sorted((tiny_mvtec / "widget" / "train" / "good").glob("*.png"))
    torch.manual_seed(0)
    model = model or create_model("mmae", **TINY)
    cfg = TrainConfig(epochs=epochs, batch_size=4, checkpoint_every=1, seed=3)
    batches = LoaderBatches(TrainImages(paths, Preprocessing(32, 1)), cfg.batch_size, cfg.seed)
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
