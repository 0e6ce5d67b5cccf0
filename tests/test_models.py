from dataclasses import fields, is_dataclass

import pytest
import torch

from inspect_ad.errors import InspectError
from inspect_ad.models.losses import memae_loss
from inspect_ad.models import create_model, get_spec, list_models, make_config


def tensors_in(obj):
    if torch.is_tensor(obj):
        yield obj
    elif is_dataclass(obj):
        for f in fields(obj):
            yield from tensors_in(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from tensors_in(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from tensors_in(x)


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_receives_a_gradient(name):
    """The timm habit: catches a memory, branch or fuser that is never used."""
    torch.manual_seed(0)
    spec = get_spec(name)
    cfg = make_config(name, **spec.tiny)
    model = create_model(name, cfg).train()
    out = model(spec.example_input(cfg))
    if not any(p.requires_grad for p in model.parameters()):  # non-parametric (patchcore): nothing to train
        assert not any(t.requires_grad for t in tensors_in(out))
        return
    loss = sum(t.float().pow(2).mean() for t in tensors_in(out) if t.requires_grad)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not dead, f"{name}: parameters without gradient: {dead}"


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("channels", [1, 3])
def test_mmae_output_shapes(k, channels):
    model = create_model("mmae", num_scales=k, in_channels=channels, image_size=64, grid_stride=16,
                         latent_channels=8, base_channels=4, max_channels=8, memory_slots=10)
    x = torch.rand(2, channels, 64, 96)  # non-square
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert len(out.weights) == k and len(out.features) == k
    assert all(f.shape == (2, 8, 4, 6) for f in out.features)
    assert all(w.shape == (2 * 4 * 6, 10) for w in out.weights)
    assert (out.attention is None) == (k == 1)
    if out.attention is not None:
        assert out.attention.shape == (2, k, 4, 6)
        assert torch.allclose(out.attention.sum(1), torch.ones(2, 4, 6), atol=1e-5)


def test_ablations_are_configs_of_one_model():
    assert make_config("memae").num_scales == 1 and make_config("memae").use_memory
    assert not make_config("ae").use_memory and make_config("ae").num_scales == 5
    ae = create_model("ae", image_size=32, grid_stride=8, latent_channels=8, base_channels=4, max_channels=8)
    out = ae(torch.rand(1, 3, 32, 32))
    assert out.weights == [] and len(ae.memories) == 0


def test_paper_defaults():
    cfg = make_config("mmae")
    assert (cfg.num_scales, cfg.scale_factor, cfg.image_size, cfg.memory_slots) == (5, 0.5, 256, 60)
    assert cfg.entropy_weight == 0.0002


def test_loss_is_mse_plus_weighted_entropy():
    torch.manual_seed(0)
    model = create_model("mmae", image_size=32, grid_stride=8, latent_channels=8, base_channels=4, max_channels=8)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    total, parts = memae_loss(out, x, entropy_weight=0.5)
    assert total.item() == pytest.approx(parts["mse"] + 0.5 * parts["entropy"], rel=1e-5)
    with_terms, parts = memae_loss(out, x, entropy_weight=0.5, ssim_weight=2.0, gms_weight=3.0)
    assert 0 < parts["dgms"] <= 1 and 0 < parts["dssim"] <= 2
    assert with_terms.item() == pytest.approx(total.item() + 2.0 * parts["dssim"] + 3.0 * parts["dgms"], rel=1e-5)


def test_input_not_multiple_of_grid_is_rejected():
    model = create_model("mmae", image_size=32, grid_stride=8, latent_channels=8, base_channels=4, max_channels=8)
    with pytest.raises(ValueError, match="multiple of grid_stride"):
        model(torch.rand(1, 3, 30, 32))


def test_unknown_model_lists_choices():
    with pytest.raises(InspectError, match="unknown model 'mmea'; choose one of: .*mmae"):
        create_model("mmea")
    with pytest.raises(InspectError, match="has no option"):
        make_config("mmae", num_scale=3)
