"""Training objectives, kept apart from the models' forward passes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from typing import TYPE_CHECKING

from .memory import addressing_entropy

if TYPE_CHECKING:  # models import losses; avoid the cycle at run time
    from .models.outputs import ReconstructionOutput


def memory_entropy(weights: list[Tensor]) -> Tensor:
    """Mean over memories of the addressing entropy (MemAE eq. 9); 0 without memory."""
    if not weights:
        return torch.zeros(())
    return torch.stack([addressing_entropy(w) for w in weights]).mean()


def memae_loss(out: "ReconstructionOutput", x: Tensor, entropy_weight: float) -> tuple[Tensor, dict]:
    """MemAE eq. 10 / MMAE §3.2: MSE reconstruction + α · entropy of the addressing weights."""
    mse = F.mse_loss(out.reconstruction, x)
    ent = memory_entropy(out.weights).to(mse.device)
    return mse + entropy_weight * ent, {"mse": float(mse.detach()), "entropy": float(ent.detach())}
