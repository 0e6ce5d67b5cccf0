"""Convolutional building blocks shared by the image models (strided-conv encoders,
pixel-shuffle decoders), as the MMAE paper prescribes: 3×3 convolutions, stride 2 to halve,
pixel shuffle to double, LeakyReLU(0.2) everywhere but the output."""
from __future__ import annotations

from torch import nn

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
