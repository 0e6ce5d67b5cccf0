"""The pixel MMAE and its ablations ae / memae (inspect_ad/models/mmae.py)."""
import pytest
import torch

from inspect_ad.models import ablation_options, create_model, get_spec, make_config


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("channels", [1, 3])
def test_mmae_output_shapes(k, channels):
    # the tiny variant (8 latent channels, 10 slots) on 64 px images with a 16 px grid
    model = create_model("mmae", **{**get_spec("mmae").tiny, "num_scales": k, "in_channels": channels,
                                    "image_size": 64, "grid_stride": 16})
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
    ae = create_model("ae", **get_spec("ae").tiny)
    out = ae(torch.rand(1, 3, 32, 32))
    assert out.weights == [] and len(ae.memories) == 0


def test_one_option_set_for_the_three_image_models_drops_what_an_ablation_fixes():
    options = dict(num_scales=3, memory_slots=10, use_memory=True)
    assert ablation_options("memae", options) == dict(memory_slots=10, use_memory=True)
    assert ablation_options("ae", options) == dict(num_scales=3, memory_slots=10)
    assert ablation_options("mmae", options) == options
    assert make_config("memae", **ablation_options("memae", options)).num_scales == 1


def test_paper_defaults():
    cfg = make_config("mmae")
    assert (cfg.num_scales, cfg.scale_factor, cfg.image_size, cfg.memory.slots) == (5, 0.5, 256, 60)
    assert cfg.entropy_weight == 0.0002


def test_input_not_multiple_of_grid_is_rejected():
    model = create_model("mmae", **get_spec("mmae").tiny)
    with pytest.raises(ValueError, match="multiple of grid_stride"):
        model(torch.rand(1, 3, 30, 32))
