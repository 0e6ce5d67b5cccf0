"""The shared memory core: one interface (:class:`Memory`), several addressing variants."""
from .base import Memory, MemoryOutput, flatten_queries, unflatten_queries
from .coreset import CoresetMemory, greedy_coreset, nearest
from .memae import MemAEMemory, addressing_entropy, hard_shrink

__all__ = [
    "Memory", "MemoryOutput", "flatten_queries", "unflatten_queries",
    "MemAEMemory", "addressing_entropy", "hard_shrink", "CoresetMemory", "greedy_coreset", "nearest",
]
from .mnad import MNADMemory, compactness_loss, nearest_item_distance, separateness_loss
from .prototype import PrototypeMemory, discriminative_loss

__all__ += ["MNADMemory", "compactness_loss", "nearest_item_distance", "separateness_loss",
            "PrototypeMemory", "discriminative_loss"]
