import math
from dataclasses import asdict

import pytest
import torch

from inspect_ad.errors import ConfigError
from inspect_ad.memory import MemAEMemory, MemoryConfig, MNADMemory, PrototypeMemory, addressing_entropy, hard_shrink
from inspect_ad.memory.config import FIELDS, as_memory_config, fold_memory_options


@pytest.mark.parametrize("shape", [(4, 16), (2, 16, 5, 3), (2, 16, 3, 4, 5)])
def test_weights_nonnegative_and_sum_to_one(shape):
    torch.manual_seed(0)
    mem = MemAEMemory(num_slots=12, dim=16)
    out = mem(torch.randn(shape))
    q = shape[0] * math.prod(shape[2:])
    assert out.weights.shape == (q, 12)
    assert (out.weights >= 0).all()
    assert torch.allclose(out.weights.sum(-1), torch.ones(q), atol=1e-6)
    assert out.features.shape == shape


def test_shrinkage_zeroes_weights_below_threshold():
    w = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    shrunk = hard_shrink(w, threshold=0.1)
    assert shrunk[0, 3] == 0
    assert (shrunk[0, :3] > 0).all()
    # survivors are re-normalised in L1 and keep their order
    assert torch.isclose(shrunk.sum(), torch.tensor(1.0))
    assert shrunk[0, 0] > shrunk[0, 1] > shrunk[0, 2]


def test_shrinkage_matches_eq7_by_hand():
    w = torch.tensor([[0.6, 0.4]])
    lam, eps = 0.45, 1e-12
    expected = torch.tensor([[0.15 * 0.6 / (0.15 + eps), 0.0]])
    assert torch.allclose(hard_shrink(w, lam), expected / expected.sum())


def test_gradients_flow_through_shrinkage():
    mem = MemAEMemory(num_slots=8, dim=4, shrink_threshold=0.1)
    z = torch.randn(5, 4, requires_grad=True)
    mem(z).features.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert mem.slots.grad.abs().sum() > 0


def test_entropy_known_values():
    one_hot = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    uniform = torch.full((1, 4), 0.25)
    assert addressing_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    assert addressing_entropy(uniform).item() == pytest.approx(math.log(4), rel=1e-6)
    both = torch.cat([one_hot, uniform])
    assert addressing_entropy(both).item() == pytest.approx(math.log(4) / 2, rel=1e-6)


def test_default_threshold_inside_paper_interval():
    mem = MemAEMemory(num_slots=60, dim=8)
    assert 1 / 60 <= mem.shrink_threshold <= 3 / 60


def test_dot_and_cosine_similarity_differ_and_unknown_rejected():
    torch.manual_seed(0)
    cos, dot = MemAEMemory(6, 4, similarity="cosine"), MemAEMemory(6, 4, similarity="dot")
    dot.load_state_dict(cos.state_dict())
    z = 10 * torch.randn(3, 4)
    assert not torch.allclose(cos(z).weights, dot(z).weights)
    with pytest.raises(ValueError, match="choose one of: cosine, dot"):
        MemAEMemory(6, 4, similarity="l2")


def test_slot_init_scale_sets_read_size_not_cosine_weights():
    torch.manual_seed(0)
    small = MemAEMemory(60, 32)
    torch.manual_seed(0)
    unit = MemAEMemory(60, 32, init_std=1.0)
    assert small.slots.abs().max() <= 1 / math.sqrt(32)
    assert unit.slots.std().item() == pytest.approx(1.0, rel=0.1)
    scaled = MemAEMemory(60, 32, init_std=1.0)
    scaled.slots.data = 5 * unit.slots.data
    z = torch.randn(7, 32)
    # cosine addressing is blind to slot norms: same weights, read-out scaled with the slots
    assert torch.allclose(unit(z).weights, scaled(z).weights, atol=1e-6)
    assert torch.allclose(5 * unit(z).features, scaled(z).features, atol=1e-5)


def test_memory_config_defaults_are_memae_paper_values():
    assert MemAEMemory.config_fields == FIELDS      # the MemAE memory reads every field
    cfg = MemoryConfig(slots=50)
    assert (cfg.shrink_threshold, cfg.similarity, cfg.logit_scale, cfg.init_std) == (None, "cosine", 1.0, None)


@pytest.mark.parametrize("changes,message", [
    (dict(slots=0), "slots=0: must be an integer >= 1"),
    (dict(slots=True), "slots=True"),
    (dict(slots=2.0), "slots=2.0"),
    (dict(shrink_threshold=-0.01), "shrink_threshold=-0.01: must be null or a finite number in [0, 1)"),
    (dict(shrink_threshold=1.0), "shrink_threshold=1.0"),
    (dict(shrink_threshold=float("nan")), "shrink_threshold=nan"),
    (dict(similarity="l2"), "unknown similarity 'l2'; choose one of: cosine, dot"),
    (dict(logit_scale=0.0), "logit_scale=0.0: must be a finite number > 0"),
    (dict(logit_scale=float("inf")), "logit_scale=inf"),
    (dict(init_std=0), "init_std=0: must be null or a finite number > 0"),
])
def test_memory_config_refuses_bad_values_in_one_line(changes, message):
    with pytest.raises(ConfigError) as info:
        MemoryConfig(**{"slots": 10, **changes})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_updated_refuses_unknown_fields_and_lists_the_valid_ones():
    assert MemoryConfig(10).updated(similarity="dot") == MemoryConfig(10, similarity="dot")
    with pytest.raises(ConfigError, match="no option size; valid options: slots, shrink_threshold, similarity"):
        MemoryConfig(10).updated(size=3)


def test_fold_names_errors_as_the_user_spelled_the_option():
    with pytest.raises(ConfigError, match="memory_slots=-1: must be an integer >= 1"):
        fold_memory_options({"memory_slots": -1}, MemoryConfig(10))
    with pytest.raises(ConfigError, match="slot_init_std=-1"):
        fold_memory_options({"slot_init_std": -1}, MemoryConfig(10))
    folded = fold_memory_options({"grid_stride": 8, "slot_init_std": 2.0, "memory.slots": 3}, MemoryConfig(10))
    assert folded == {"grid_stride": 8, "memory": MemoryConfig(3, init_std=2.0)}


def test_a_saved_nested_memory_reads_back():
    cfg = MemoryConfig(7, 0.0, "dot", 10.0, 1.0)
    assert as_memory_config(asdict(cfg)) == cfg
    with pytest.raises(ConfigError, match="memory=5: must be a MemoryConfig"):
        as_memory_config(5)


@pytest.mark.parametrize("config", [MemoryConfig(12), MemoryConfig(12, 0.05, "dot", 10.0, 1.0)])
def test_from_config_builds_the_same_memory_as_the_arguments(config):
    torch.manual_seed(0)
    direct = MemAEMemory(12, 16, config.shrink_threshold, config.similarity, config.logit_scale, config.init_std)
    torch.manual_seed(0)
    built = MemAEMemory.from_config(config, 16)
    assert torch.equal(direct.slots, built.slots)
    assert (built.shrink_threshold, built.similarity, built.logit_scale) == (
        direct.shrink_threshold, direct.similarity, direct.logit_scale)


@pytest.mark.parametrize("memory_class", [MNADMemory, PrototypeMemory])
def test_memories_that_read_only_the_slots_refuse_the_other_settings(memory_class):
    torch.manual_seed(0)
    assert memory_class.from_config(MemoryConfig(6), 8).items.shape == (6, 8)
    with pytest.raises(ConfigError, match=f"logit_scale=10.0: {memory_class.__name__}'s memory does not use it"):
        memory_class.from_config(MemoryConfig(6, logit_scale=10.0), 8)
