"""The shared memory core: one interface (:class:`Memory`), several addressing variants."""
from .base import Memory, MemoryOutput, flatten_queries, unflatten_queries
from .memae import MemAEMemory, addressing_entropy, hard_shrink

__all__ = [
    "Memory", "MemoryOutput", "flatten_queries", "unflatten_queries",
    "MemAEMemory", "addressing_entropy", "hard_shrink",
]
