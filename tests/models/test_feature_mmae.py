"""MMAE and its ablations on pretrained features (inspect_ad/models/feature_mmae.py)."""
import pytest
import torch

from inspect_ad.errors import InspectError
from inspect_ad.memory import MemoryConfig
from inspect_ad.models import FeatureMMAEConfig, FeatureOutput, TINY_FEATURE, create_model, make_config


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


def test_feature_mmae_embeds_its_own_memory():
    assert make_config("mmae", backbone="efficientnet_lite0").memory == MemoryConfig(256, init_std=1.0)


def test_jitter_changes_the_training_inputs_only_not_the_targets_or_scoring():
    torch.manual_seed(0)
    model = create_model("mmae", **TINY_FEATURE, jitter_scale=20.0)
    plain = create_model("mmae", **TINY_FEATURE)
    plain.load_state_dict(model.state_dict())
    targets = model.targets(torch.rand(2, 3, 32, 32))
    model.train(), plain.train()
    torch.manual_seed(1)
    jittered = model.reconstruct(targets)
    assert all(torch.equal(f, t) for f, t in zip(jittered.features, targets))   # the clean features stay the target
    assert not torch.allclose(jittered.reconstructions[0], plain.reconstruct(targets).reconstructions[0])
    torch.manual_seed(1)
    assert torch.equal(model.reconstruct(targets).anomaly_map, jittered.anomaly_map)   # seeded: the same draw
    model.eval(), plain.eval()
    assert torch.equal(model.reconstruct(targets).anomaly_map, plain.reconstruct(targets).anomaly_map)


def test_data_seeded_slots_are_training_latents_and_deterministic():
    x = torch.rand(3, 3, 32, 32)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("mmae", **TINY_FEATURE, slot_init="data")
        assert model.seed_memories([model.targets(x)], seed=5)
        models.append(model)
    slots = models[0].memories[0].slots
    assert torch.equal(slots, models[1].memories[0].slots)
    targets = models[0].targets(x)
    with torch.no_grad():
        z = models[0].encoders[0](targets[0])
        z = torch.nn.functional.interpolate(z, size=(4, 4), mode="bilinear", align_corners=False)
    queries = z.movedim(1, -1).reshape(-1, z.shape[1])
    assert all((queries - s).abs().sum(dim=1).min() < 1e-5 for s in slots)   # each slot is some query
    torch.manual_seed(0)
    assert not create_model("mmae", **TINY_FEATURE).seed_memories([targets])   # "random": left as drawn
