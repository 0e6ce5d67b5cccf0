"""The video models: MemAE3D, MNAD (recon / pred), prototype (inspect_ad/models/video.py)."""
import math

import pytest
import torch

from inspect_ad.detectors.bundle import load_bundle, save_bundle
from inspect_ad.models import create_model, get_spec, list_models
from inspect_ad.models.video import MNAD, update_memory, video_loss


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
