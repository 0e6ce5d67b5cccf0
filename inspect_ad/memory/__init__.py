"""The shared memory core: one interface (:class:`Memory`), several addressing variants."""
from inspect_ad.memory.base import Memory, MemoryOutput, flatten_queries, unflatten_queries
from inspect_ad.memory.config import MemoryConfig, build_with_memory
from inspect_ad.memory.coreset import CoresetMemory, greedy_coreset, nearest
from inspect_ad.memory.memae import MemAEMemory, addressing_entropy, hard_shrink

__all__ = [
    "Memory", "MemoryOutput", "MemoryConfig", "build_with_memory", "flatten_queries", "unflatten_queries",
    "MemAEMemory", "addressing_entropy", "hard_shrink", "CoresetMemory", "greedy_coreset", "nearest",
]
from inspect_ad.memory.mnad import MNADMemory, compactness_loss, nearest_item_distance, separateness_loss
from inspect_ad.memory.prototype import PrototypeMemory, discriminative_loss

__all__ += ["MNADMemory", "compactness_loss", "nearest_item_distance", "separateness_loss",
            "PrototypeMemory", "discriminative_loss"]
