"""The model registry (inspect_ad/models/registry.py): every registered model's tiny variant, configs and
option checks."""
from dataclasses import fields, is_dataclass

import pytest
import torch

from inspect_ad.errors import ConfigError, InspectError
from inspect_ad.memory import MemoryConfig
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


# Each model's paper memory, as the configs had it before MemoryConfig (slots, λ, init).
PAPER_MEMORY = {
    "mmae": MemoryConfig(60, init_std=1.0), "memae": MemoryConfig(60, init_std=1.0),
    "memae_mnist": MemoryConfig(100, shrink_threshold=0.01), "memae_mnist_nonspar": MemoryConfig(100, 0.0),
    "memae_cifar10": MemoryConfig(500, shrink_threshold=1 / 500), "memae_cifar10_nonspar": MemoryConfig(500, 0.0),
    "memae_fc": MemoryConfig(50), "memae_fc_nonspar": MemoryConfig(50, 0.0), "memae3d": MemoryConfig(2000),
    "mnad-recon": MemoryConfig(10), "mnad-pred": MemoryConfig(10), "prototype": MemoryConfig(100),
}


@pytest.mark.parametrize("name", PAPER_MEMORY)
def test_every_model_embeds_its_paper_memory(name):
    assert make_config(name).memory == PAPER_MEMORY[name]


def _state(name, **options):
    torch.manual_seed(0)
    return create_model(name, **options).state_dict()


@pytest.mark.parametrize("spelling", [
    dict(memory_slots=7, similarity="dot", slot_init_std=None),                        # flat, as before
    {"memory.slots": 7, "memory.similarity": "dot", "memory.init_std": None},         # dotted
    dict(memory=dict(slots=7, similarity="dot", init_std=None)),                       # nested, partial
    dict(memory=MemoryConfig(7, similarity="dot")),                                    # a MemoryConfig
])
def test_flat_dotted_and_nested_memory_options_give_the_same_model(spelling):
    tiny = {k: v for k, v in get_spec("mmae").tiny.items() if k != "memory_slots"}
    cfg = make_config("mmae", **tiny, **spelling)
    assert cfg.memory == MemoryConfig(7, similarity="dot") and cfg.memory.logit_scale == 1.0
    reference = _state("mmae", **tiny, memory_slots=7, similarity="dot", slot_init_std=None)
    state = _state("mmae", **tiny, **spelling)
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_later_memory_options_win_and_variant_defaults_stay():
    assert make_config("memae_mnist_nonspar", memory_slots=5).memory == MemoryConfig(5, 0.0)
    assert make_config("mmae", memory=dict(slots=5), memory_slots=9).memory.slots == 9
    assert make_config("mmae", memory_slots=9, memory=dict(slots=5)).memory.slots == 5


def test_memae3d_and_tabular_read_every_memory_option():
    """MemAE3D used to drop similarity and the slot init, the tabular model the slot init."""
    m3d = create_model("memae3d", **get_spec("memae3d").tiny, similarity="dot", slot_init_std=2.0).memory
    fc = create_model("memae_fc", **get_spec("memae_fc").tiny, slot_init_std=2.0).memory
    assert m3d.similarity == "dot" and m3d.slots.abs().max() > 1 and fc.slots.abs().max() > 1


BAD_OPTIONS = [
    ("mmae", dict(grid_stride=12), "grid_stride=12: must be a power of 2"),
    ("mmae", dict(similarity="l2"), "unknown similarity 'l2'; choose one of: cosine, dot"),
    ("mmae", {"memory.similarity": "l2"}, "unknown memory.similarity 'l2'; choose one of: cosine, dot"),
    ("mmae", dict(image_size=100), "image_size=100: must be one side or a (height, width) pair of integers in [8, 4096], multiples of 16 (grid_stride=16)"),
    ("memae", dict(num_scales=3), "num_scales=3: model 'memae' always has num_scales=1"),
    ("ae", dict(use_memory=True), "use_memory=True: model 'ae' always has use_memory=False"),
    ("mmae", dict(num_scales=0), "num_scales=0: must be an integer >= 1"),
    ("mmae", dict(scale_factor=1.5), "scale_factor=1.5: must be a finite number in (0, 1)"),
    ("mmae", dict(latent_channels=0), "latent_channels=0"),
    ("mmae", dict(memory_slots=0), "memory_slots=0: must be an integer >= 1"),
    ("mmae", dict(memory_slots=1e9), "memory_slots=1000000000.0"),
    ("mmae", dict(shrink_threshold=-0.1), "shrink_threshold=-0.1: must be null or a finite number in [0, 1)"),
    ("mmae", dict(shrink_threshold=1.0), "shrink_threshold=1.0"),
    ("mmae", dict(logit_scale=0), "logit_scale=0: must be a finite number > 0"),
    ("mmae", dict(slot_init_std=-1), "slot_init_std=-1"),
    ("mmae", dict(entropy_weight=-1), "entropy_weight=-1"),
    ("mmae", dict(memory=dict(slots=5, size=3)), "the memory has no option size; valid options: slots"),
    ("mmae", dict(backbone="efficientnet_lite0", patch_size=2), "patch_size=2: must be an odd integer"),
    ("mmae", dict(backbone="efficientnet_lite0", kernel_size=2), "kernel_size=2: must be an odd integer"),
    ("mmae", dict(backbone="efficientnet_lite0", scale_source="pyramid"), "unknown scale_source 'pyramid'"),
    ("mmae", dict(backbone="efficientnet_lite0", stages=[]), "stages=[]: must be a non-empty list"),
    ("mmae", dict(backbone="efficientnet_lite0", stages=[2, 2]), "stages=[2, 2]: must be distinct"),
    ("mmae", dict(backbone="efficientnet_lite0", in_channels=4), "in_channels=4: must be 1 or 3"),
    ("mmae", dict(backbone="efficientnet_lite0", grid_stride=12), "grid_stride=12"),
    ("patchcore", dict(coreset_ratio=0), "coreset_ratio=0: must be a finite number in (0, 1]"),
    ("patchcore", dict(num_neighbours=0), "num_neighbours=0: must be an integer from 1 to max_slots"),
    ("patchcore", dict(patch_size=4), "patch_size=4"),
    ("memae_mnist", dict(memory_layout="pixel"), "unknown memory_layout 'pixel'; choose one of: image, position"),
    ("memae_mnist", dict(encoder=[[3, 0, 4]], decoder=[[3, 2, 1]]), "encoder=[[3, 0, 4]]: must be a non-empty list"),
    ("memae_mnist", dict(decoder=[[3, 2, 64], [3, 2, 1]]), "decoder=((3, 2, 64), (3, 2, 1)): needs as many layers"),
    ("memae_mnist", dict(similarity="l2"), "unknown similarity 'l2'"),
    ("memae_fc", dict(hidden=[8, 0]), "hidden=[8, 0]: must be a list of integers >= 1"),
    ("memae_fc", dict(latent_dim=0), "latent_dim=0"),
    ("memae_fc", dict(shrink_threshold="1/N"), "shrink_threshold='1/N'"),
    ("memae3d", dict(image_size=40), "image_size=40: must be a multiple of 16 (4 stride-2 3D convolutions"),
    ("memae3d", dict(clip_length=8), "clip_length=8: must be a multiple of 16"),
    ("memae3d", dict(widths=[]), "widths=[]"),
    ("mnad-recon", dict(image_size=36), "image_size=36: must be a multiple of 8"),
    ("mnad-recon", dict(widths=[4, 8, 8]), "widths=(4, 8, 8): must be 4 U-Net widths"),
    ("mnad-recon", dict(clip_length=5), "clip_length=5: must be 1 for task recon"),
    ("mnad-recon", dict(memory_slots=1), "memory_slots=1: must be an integer >= 2"),
    ("mnad-recon", dict(task="pred"), "task='pred': model mnad-recon has task 'recon'"),
    ("mnad-recon", dict(memory=dict(slots=10, similarity="dot")), "similarity='dot': MNADConfig's memory does not"),
    ("mnad-pred", dict(clip_length=1), "clip_length=1: must be an integer >= 2"),
    ("mnad-pred", dict(score_weight=2), "score_weight=2"),
    ("prototype", dict(clip_length=1), "clip_length=1: must be an integer >= 2"),
    ("prototype", dict(image_size=28), "image_size=28: must be a multiple of 8"),
]


@pytest.mark.parametrize("name,options,message", BAD_OPTIONS, ids=[f"{n}-{next(iter(o))}" for n, o, _ in BAD_OPTIONS])
def test_bad_option_values_raise_one_config_error_line_naming_them(name, options, message):
    with pytest.raises(ConfigError) as info:
        make_config(name, **options)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InspectError)


def test_unknown_options_list_the_flat_memory_names():
    with pytest.raises(ConfigError, match=r"has no option nope; valid options: .*memory_slots.*slot_init_std"):
        make_config("mmae", nope=1)
    with pytest.raises(ConfigError) as info:          # MNAD's memory reads the number of items only
        make_config("mnad-recon", similarity="dot")
    assert "has no option similarity" in str(info.value) and "memory_slots" in str(info.value)
    with pytest.raises(ConfigError, match="has no option memory.similarity"):
        make_config("prototype", **{"memory.similarity": "dot"})


@pytest.mark.parametrize("name", ["memae3d", "mnad-recon", "mnad-pred", "prototype"])
def test_the_video_learning_rate_is_a_training_option(name):
    with pytest.raises(ConfigError, match=r"has no option learning_rate \(learning_rate is a training setting: pass --lr\)"):
        make_config(name, learning_rate=1e-4)


def test_unknown_model_lists_choices():
    with pytest.raises(InspectError, match="unknown model 'mmea'; choose one of: .*mmae"):
        create_model("mmea")
    with pytest.raises(InspectError, match="has no option"):
        make_config("mmae", num_scale=3)
