"""Training objectives, kept apart from the models' forward passes."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from inspect_ad.ops.gms import msgms_map
from inspect_ad.memory import addressing_entropy
from inspect_ad.ops.ssim import ssim_map

if TYPE_CHECKING:  # models import losses; avoid the cycle at run time
    from inspect_ad.models.outputs import FeatureOutput, ReconstructionOutput


def memory_entropy(weights: list[Tensor]) -> Tensor:
    """Mean over memories of the addressing entropy (MemAE eq. 9); 0 without memory."""
    if not weights:
        return torch.zeros(())
    return torch.stack([addressing_entropy(w) for w in weights]).mean()


def memae_loss(out: "ReconstructionOutput", x: Tensor, entropy_weight: float,
               ssim_weight: float = 0.0, gms_weight: float = 0.0) -> tuple[Tensor, dict]:
    """MemAE eq. 10 / MMAE §3.2: MSE reconstruction + α · entropy of the addressing weights.

    ``ssim_weight`` > 0 adds w · (1 − mean SSIM), our extension for textures (not in the papers);
    ``gms_weight`` > 0 adds w · (1 − mean MSGMS), RIAD's gradient term (not in the papers either).
    """
    mse = F.mse_loss(out.reconstruction, x)
    ent = memory_entropy(out.weights).to(mse.device)
    total, parts = mse + entropy_weight * ent, {"mse": float(mse.detach()), "entropy": float(ent.detach())}
    if ssim_weight > 0:
        dssim = 1 - ssim_map(out.reconstruction, x).mean()
        total = total + ssim_weight * dssim
        parts["dssim"] = float(dssim.detach())
    if gms_weight > 0:
        dgms = 1 - msgms_map(out.reconstruction, x).mean()
        total = total + gms_weight * dgms
        parts["dgms"] = float(dgms.detach())
    return total, parts


def feature_loss(out: "FeatureOutput", entropy_weight: float) -> tuple[Tensor, dict]:
    """Feature MMAE: mean per-position cosine distance between each scale's features and their
    reconstruction (the same quantity as its anomaly map) + α · addressing entropy (MemAE eq. 10)."""
    cos = torch.stack([(1 - F.cosine_similarity(t, r, dim=1, eps=1e-6)).mean()
                       for t, r in zip(out.features, out.reconstructions)]).mean()
    ent = memory_entropy(out.weights).to(cos.device)
    return cos + entropy_weight * ent, {"cosine": float(cos.detach()), "entropy": float(ent.detach())}
