"""Convolutional building blocks shared by the image models (strided-conv encoders,
pixel-shuffle decoders), as the MMAE paper prescribes: 3×3 convolutions, stride 2 to halve,
pixel shuffle to double, LeakyReLU(0.2) everywhere but the output."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SLOPE = 0.2


def conv_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.LeakyReLU(SLOPE, inplace=True))


def widths(base: int, n: int, cap: int) -> list[int]:
    """Channel widths doubling per level from ``base``, capped at ``cap`` (n + 1 entries)."""
    return [min(base * 2 ** i, cap) for i in range(n + 1)]


class StridedEncoder(nn.Sequential):
    """stem conv, ``n_down`` stride-2 convs, 1×1 projection to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, n_down: int, base: int, cap: int):
        w = widths(base, n_down, cap)
        layers = [conv_act(in_channels, w[0])]
        layers += [conv_act(w[i], w[i + 1], stride=2) for i in range(n_down)]
        layers.append(nn.Conv2d(w[-1], out_channels, 1))
        super().__init__(*layers)


class PixelShuffleDecoder(nn.Sequential):
    """``n_up`` × (conv to 4c, PixelShuffle(2), LeakyReLU), then a 3×3 conv to the image."""

    def __init__(self, in_channels: int, out_channels: int, n_up: int, base: int, cap: int):
        w = widths(base, n_up, cap)[::-1]
        layers = [conv_act(in_channels, w[0])]
        for i in range(n_up):
            layers += [nn.Conv2d(w[i], 4 * w[i + 1], 3, 1, 1), nn.PixelShuffle(2),
                       nn.LeakyReLU(SLOPE, inplace=True)]
        layers.append(nn.Conv2d(w[-1], out_channels, 3, 1, 1))
        super().__init__(*layers)


def memory_on_grid(encodings: Iterable[Tensor], grid: tuple[int, int],
                   memories: nn.ModuleList) -> tuple[list[Tensor], list[Tensor]]:
    """MMAE's per-scale step: each scale's encoding resized (bilinear) to the common grid and read
    through that scale's memory, if there are memories; returns the features and the weights."""
    feats, weights = [], []
    for k, f in enumerate(encodings):
        if f.shape[-2:] != grid:
            f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
        if memories:
            read = memories[k](f)
            f = read.features
            weights.append(read.weights)
        feats.append(f)
    return feats, weights


def attention_fuse(fuser: nn.Module | None, feats: list[Tensor]) -> tuple[Tensor, Tensor | None]:
    """MMAE's fuser: a per-position softmax over scales of ``fuser`` (a 1×1 conv of the
    concatenated features), fused = Σ_k a_k F_k; a single scale passes through."""
    if fuser is None:
        return feats[0], None
    attention = torch.softmax(fuser(torch.cat(feats, dim=1)), dim=1)
    return (attention.unsqueeze(2) * torch.stack(feats, dim=1)).sum(dim=1), attention
