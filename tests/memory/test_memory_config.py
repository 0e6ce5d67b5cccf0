"""MemoryConfig, the one memory config every memory model embeds (inspect_ad/memory/config.py), and the
memories built from it."""
from dataclasses import asdict

import pytest
import torch

from inspect_ad.errors import ConfigError
from inspect_ad.memory import MNADMemory, MemAEMemory, MemoryConfig, PrototypeMemory
from inspect_ad.memory.config import FIELDS, as_memory_config, fold_memory_options


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
