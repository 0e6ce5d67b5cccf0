"""Video anomaly models built on the shared memory core.

* ``memae3d``    — MemAE's video model (Gong et al., ICCV 2019, §4.2): 3D-conv autoencoder on 16-frame
  grayscale cuboids with a per-position MemAE memory (2000 slots) between encoder and decoder.
* ``mnad-recon`` — MNAD (Park et al., CVPR 2020) reconstructing the input frame; U-Net without skips.
* ``mnad-pred``  — MNAD predicting frame t+1 from frames t-3..t; U-Net with skips.
* ``prototype``  — Lai et al.'s (2021) two-branch autoencoder: shared encoder, prototype-guided memory,
  a future-frame decoder with skips and an RGB-difference decoder without.

Every model takes a clip (B, T, C, H, W) in [-1, 1] through :meth:`split_clip` into its input and
targets, so training and scoring code is shared. ``use_memory=False`` gives each paper's
no-memory ablation. Losses are the functions at the bottom of this module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspect_ad.memory import (MemAEMemory, MemoryConfig, MNADMemory, PrototypeMemory, addressing_entropy,
                               build_with_memory, compactness_loss, discriminative_loss, separateness_loss)
from inspect_ad.checks import Flag, Int, Ints, MultipleOf, Number, Options, require, validate
from inspect_ad.memory.config import as_memory_config
from inspect_ad.errors import ConfigError
from inspect_ad.models.registry import ModelSpec, register_model


@dataclass
class VideoOutput:
    """prediction: the reconstructed / predicted frames (same layout as ``target`` of split_clip).
    queries: flat (Q, C) memory queries (Q = B · positions), None without memory.
    weights: (Q, N) addressing weights, None without memory.
    diff: the prototype model's generated RGB difference (B, t·C, H, W), None for other models.
    """

    prediction: Tensor
    queries: Tensor | None = None
    weights: Tensor | None = None
    diff: Tensor | None = None


class _ConfigMixin:
    """What the video configs share: the embedded memory, read back from JSON and checked."""

    memory_fields: ClassVar[tuple[str, ...]]

    def to_dict(self) -> dict:
        return asdict(self)

    def _check_common(self) -> None:
        self.memory = as_memory_config(self.memory, self.memory_fields, type(self).__name__)
        validate(self)
        self.widths = tuple(self.widths)    # JSON gives a list


# the fields every video config has
_COMMON = {"in_channels": Int(1), "clip_length": Int(1), "image_size": Int(1), "widths": Ints(1), "use_memory": Flag()}


def _check_unet(config) -> None:
    """The 2D U-Nets: four widths, three max-pools that the decoder's up-convolutions must undo."""
    require(len(config.widths) == 4, "widths", config.widths, "4 U-Net widths (3 levels and the bottom)")
    MultipleOf(8, "three 2x max-pools and their up-convolutions").check("image_size", config.image_size)


@dataclass
class MemAE3DConfig(_ConfigMixin):
    """MemAE video model; values from MemAE §4.2 unless noted (the learning rate, §4: Adam
    1e-4, is a training setting)."""

    memory_fields = MemAEMemory.config_fields

    in_channels: int = 1                       # §4.2: grayscale cuboids
    clip_length: int = 16                      # §4.2: 16 neighbouring frames
    image_size: int = 256                      # authors' code resizes to 256×256 (paper silent)
    widths: tuple = (96, 128, 256, 256)        # §4.2: Conv3(3,2,96)-(3,2,128)-(3,2,256)-(3,2,256)
    # §4.2: N = 2000, one slot per feature position; eq. 5 cosine, eq. 7 λ in [1/N, 3/N]: None = 1/N
    # (0 = nonSpar); slots ±1/sqrt(C) as the authors' code. logit_scale: a softmax temperature on
    # eq. 5's cosine (1 = the paper): over 2000 slots cosines in [-1, 1] cap every weight at
    # e²/(e² + 1999) ≈ 0.004, so the read averages ~1000 slots.
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=2000))
    use_memory: bool = True                    # False = the "AE" row of Table 2
    entropy_weight: float = 0.0002             # eq. 10: α = 0.0002

    _constraints: ClassVar[dict] = {**_COMMON, "entropy_weight": Number(0)}

    def __post_init__(self):
        self._check_common()
        # each stride-2 conv halves time and space, each transposed one doubles them back
        size = MultipleOf(2 ** len(self.widths), f"{len(self.widths)} stride-2 3D convolutions, one per width")
        size.check("image_size", self.image_size)
        size.check("clip_length", self.clip_length)


MNAD_TASKS = ("recon", "pred")


@dataclass
class MNADConfig(_ConfigMixin):
    """MNAD (Park et al., CVPR 2020); §4.1 values, the reconstruction ones where the tasks differ
    (``build_mnad_config`` switches to the prediction values; the learning rates, 2e-5 recon and
    2e-4 pred, are training settings)."""

    memory_fields = MNADMemory.config_fields

    task: str = "recon"                        # "recon" (no skips) | "pred" (4 frames -> 5th, skips)
    in_channels: int = 3                       # authors' code reads RGB; grey frames are repeated
    clip_length: int = 1                       # §3: 1 frame (recon) or 4 + 1 (pred)
    image_size: int = 256                      # §4.1: 256×256, scaled to [-1, 1]
    widths: tuple = (64, 128, 256, 512)        # U-Net widths; C = 512 (§4.1), query map 32×32
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=10))   # §4.1: M = 10
    use_memory: bool = True                    # False = "w/o Mem." rows of Table 1
    compactness_weight: float = 0.01           # eq. 9: λ_c (0.1 for pred)
    separateness_weight: float = 0.01          # eq. 9: λ_s (0.1 for pred)
    margin: float = 1.0                        # eq. 12: α = 1
    score_weight: float = 0.7                  # eq. 16: λ (0.6 for pred)
    update_threshold: float = 0.015            # §3.1 test-time update gate γ (0.01 for pred)

    _constraints: ClassVar[dict] = {
        "task": Options(*MNAD_TASKS), **_COMMON, "compactness_weight": Number(0), "separateness_weight": Number(0),
        "margin": Number(0), "score_weight": Number(0, 1), "update_threshold": Number(0)}

    def __post_init__(self):
        self._check_common()
        _check_unet(self)
        if self.task == "recon":
            require(self.clip_length == 1, "clip_length", self.clip_length,
                    "1 for task recon (one frame in, the same out)")
        else:
            Int(2).check("clip_length", self.clip_length)    # at least one input frame and the target
        if self.use_memory:   # the separateness loss (eq. 12) takes the two nearest items
            Int(2).check("memory_slots", self.memory.slots)


@dataclass
class PrototypeConfig(_ConfigMixin):
    """Lai et al.'s two-branch model; §III-E values (the learning rate, Adam 2e-4, is a training setting)."""

    memory_fields = PrototypeMemory.config_fields

    in_channels: int = 3                       # RGB frames (grey frames are repeated)
    clip_length: int = 5                       # §III-E: t = 4 input frames, predict frame t+1
    image_size: int = 256                      # §III-E: 256×256 in [-1, 1]
    widths: tuple = (64, 128, 256, 512)        # query map 32×32×512 (§III-E)
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=100))  # §III-E / Table IV: N = 100
    use_memory: bool = True                    # False = "w/o" row of Table IV
    learn_items: bool = True                   # see memory/prototype.py
    update_items: bool = True                  # eq. 12 after every training step (see notes)
    pred_weight: float = 1.0                   # eq. 18: λ_pred = 1
    diff_weight: float = 0.1                   # eq. 18: λ_diff = 0.1
    dis_weight: float = 1.0                    # eq. 18: λ_dis = 1
    score_weight: float = 0.6                  # eq. 25: γ = 0.6

    _constraints: ClassVar[dict] = {
        **_COMMON, "clip_length": Int(2),   # at least one input frame and the target
        "learn_items": Flag(), "update_items": Flag(), "pred_weight": Number(0), "diff_weight": Number(0),
        "dis_weight": Number(0), "score_weight": Number(0, 1)}

    def __post_init__(self):
        self._check_common()
        _check_unet(self)


def build_mnad_config(variant: str, /, **overrides) -> MNADConfig:
    """Paper defaults for ``variant`` ("recon" or "pred"), then ``overrides`` (a saved config
    repeats its ``task``, which must agree)."""
    if overrides.setdefault("task", variant) != variant:
        raise ConfigError(f"task={overrides['task']!r}: model mnad-{variant} has task {variant!r}; "
                          f"use --model mnad-{overrides['task']} for that task")
    base = {}
    if variant == "pred":
        base = dict(clip_length=5, compactness_weight=0.1, separateness_weight=0.1, score_weight=0.6,
                    update_threshold=0.01)
    return build_with_memory(MNADConfig, **{**base, **overrides})


# ---- shared blocks -------------------------------------------------------------------------

def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNetEncoder(nn.Module):
    """MNAD's encoder: three double-conv + max-pool levels, then a double conv whose last BN and
    ReLU are dropped (MNAD §3.1: ReLU would cut the queries' negative values)."""

    def __init__(self, in_channels: int, widths: tuple):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.levels = nn.ModuleList([double_conv(in_channels, w0), double_conv(w0, w1), double_conv(w1, w2)])
        self.bottom = nn.Sequential(nn.Conv2d(w2, w3, 3, 1, 1), nn.BatchNorm2d(w3), nn.ReLU(inplace=True),
                                    nn.Conv2d(w3, w3, 3, 1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return self.bottom(F.max_pool2d(x, 2)), skips


class UNetDecoder(nn.Module):
    """Mirror of :class:`UNetEncoder`; ``skips=False`` drops the skip connections (MNAD-recon,
    the prototype model's RGB-difference branch) so the decoder cannot copy its input."""

    def __init__(self, in_channels: int, widths: tuple, out_channels: int, skips: bool):
        super().__init__()
        w0, w1, w2, w3 = widths
        k = 2 if skips else 1
        self.skips = skips
        self.bottom = double_conv(in_channels, w3)
        self.ups = nn.ModuleList([up_conv(w3, w2), up_conv(w2, w1), up_conv(w1, w0)])
        self.levels = nn.ModuleList([double_conv(k * w2, w2), double_conv(k * w1, w1), double_conv(k * w0, w0)])
        self.out = nn.Sequential(nn.Conv2d(w0, out_channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: Tensor, skips: list[Tensor]) -> Tensor:
        x = self.bottom(z)
        for i, (up, level) in enumerate(zip(self.ups, self.levels)):
            x = up(x)
            x = level(torch.cat([skips[-1 - i], x], dim=1) if self.skips else x)
        return self.out(x)


def _stack_frames(clip: Tensor) -> Tensor:
    """(B, T, C, H, W) -> (B, T·C, H, W): frames stacked along channels (MNAD's input)."""
    return clip.reshape(clip.shape[0], -1, *clip.shape[-2:])


# ---- models --------------------------------------------------------------------------------

class MemAE3D(nn.Module):
    """MemAE's video model: a 3D-conv autoencoder with a per-position memory (:class:`MemAE3DConfig`)."""

    def __init__(self, config: MemAE3DConfig):
        super().__init__()
        self.config = c = config
        widths = list(c.widths)
        enc, c_in = [], c.in_channels
        for w in widths:
            enc += [nn.Conv3d(c_in, w, 3, 2, 1), nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.encoder = nn.Sequential(*enc)
        outs = widths[-2::-1] + [c.in_channels]
        dec = []
        for i, w in enumerate(outs):
            dec.append(nn.ConvTranspose3d(c_in, w, 3, 2, 1, output_padding=1))
            if i < len(outs) - 1:     # §4.2: BN + ReLU after every layer but the last
                dec += [nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.decoder = nn.Sequential(*dec)
        self.memory = MemAEMemory.from_config(c.memory, widths[-1]) if c.use_memory else None

    def split_clip(self, clip: Tensor) -> tuple[Tensor, dict]:
        x = clip.transpose(1, 2)      # (B, C, T, H, W): the cuboid is its own target
        return x, {"target": x}

    def forward(self, x: Tensor) -> VideoOutput:
        z = self.encoder(x)
        if self.memory is None:
            return VideoOutput(self.decoder(z))
        read = self.memory(z)
        return VideoOutput(self.decoder(read.features), read.queries, read.weights)


class MNAD(nn.Module):
    """MNAD: a U-Net with the read/update memory between encoder and decoder (:class:`MNADConfig`)."""

    def __init__(self, config: MNADConfig):
        super().__init__()
        self.config = c = config
        n_in = 1 if c.task == "recon" else c.clip_length - 1
        self.encoder = UNetEncoder(n_in * c.in_channels, c.widths)
        self.memory = MNADMemory.from_config(c.memory, c.widths[-1]) if c.use_memory else None
        dec_in = 2 * c.widths[-1] if c.use_memory else c.widths[-1]   # query ⊕ read items (§3.1)
        self.decoder = UNetDecoder(dec_in, c.widths, c.in_channels, skips=c.task == "pred")

    def split_clip(self, clip: Tensor) -> tuple[Tensor, dict]:
        if self.config.task == "recon":
            return clip[:, -1], {"target": clip[:, -1]}
        return _stack_frames(clip[:, :-1]), {"target": clip[:, -1]}

    def forward(self, x: Tensor) -> VideoOutput:
        z, skips = self.encoder(x)
        if self.memory is None:
            return VideoOutput(self.decoder(z, skips))
        read = self.memory(F.normalize(z, dim=1))     # §3.1: L2-normalised queries
        return VideoOutput(self.decoder(read.features, skips), read.queries, read.weights)


class PrototypeAE(nn.Module):
    """Lai et al.'s two-branch autoencoder: a shared encoder and the prototype memory, a future-frame
    decoder and an RGB-difference decoder (:class:`PrototypeConfig`)."""

    def __init__(self, config: PrototypeConfig):
        super().__init__()
        self.config = c = config
        n_in = (c.clip_length - 1) * c.in_channels
        self.encoder = UNetEncoder(n_in, c.widths)
        self.memory = (PrototypeMemory.from_config(c.memory, c.widths[-1], learn_items=c.learn_items)
                       if c.use_memory else None)
        self.pred_decoder = UNetDecoder(c.widths[-1], c.widths, c.in_channels, skips=True)
        self.diff_decoder = UNetDecoder(c.widths[-1], c.widths, n_in, skips=False)

    def split_clip(self, clip: Tensor) -> tuple[Tensor, dict]:
        past, future = clip[:, :-1], clip[:, -1]
        # eq. 5: x_diff = x_clips − I_{t+1}; halved so it stays in the decoder's tanh range
        return _stack_frames(past), {"target": future, "diff": _stack_frames(past - future[:, None]) / 2}

    def forward(self, x: Tensor) -> VideoOutput:
        z, skips = self.encoder(x)
        queries = weights = None
        if self.memory is not None:
            z = F.normalize(z, dim=1)
            read = self.memory(z)
            z, queries, weights = read.features, read.queries, read.weights
        return VideoOutput(self.pred_decoder(z, skips), queries, weights, self.diff_decoder(z, []))


# ---- losses --------------------------------------------------------------------------------

def memae3d_loss(model: MemAE3D, out: VideoOutput, targets: dict) -> tuple[Tensor, dict]:
    """MemAE eq. 10: cuboid MSE + α · addressing entropy."""
    mse = F.mse_loss(out.prediction, targets["target"])
    ent = addressing_entropy(out.weights) if out.weights is not None else mse.new_zeros(())
    return mse + model.config.entropy_weight * ent, {"mse": float(mse.detach()), "entropy": float(ent.detach())}


def mnad_loss(model: MNAD, out: VideoOutput, targets: dict) -> tuple[Tensor, dict]:
    """MNAD eq. 9: L_rec + λ_c L_compact + λ_s L_separate."""
    c = model.config
    rec = F.mse_loss(out.prediction, targets["target"])
    if out.queries is None:
        return rec, {"rec": float(rec.detach())}
    items = model.memory.items
    comp = compactness_loss(out.queries, items)
    sep = separateness_loss(out.queries, items, c.margin)
    loss = rec + c.compactness_weight * comp + c.separateness_weight * sep
    return loss, {"rec": float(rec.detach()), "compact": float(comp.detach()), "separate": float(sep.detach())}


def prototype_loss(model: PrototypeAE, out: VideoOutput, targets: dict) -> tuple[Tensor, dict]:
    """Lai et al. eq. 18: λ_pred L_pred + λ_diff L_diff + λ_dis L_dis."""
    c = model.config
    pred = F.mse_loss(out.prediction, targets["target"])
    diff = F.mse_loss(out.diff, targets["diff"])
    loss = c.pred_weight * pred + c.diff_weight * diff
    logs = {"pred": float(pred.detach()), "diff": float(diff.detach())}
    if out.queries is not None:
        dis = discriminative_loss(out.queries, model.memory.items)
        loss = loss + c.dis_weight * dis
        logs["dis"] = float(dis.detach())
    return loss, logs


LOSSES = {MemAE3D: memae3d_loss, MNAD: mnad_loss, PrototypeAE: prototype_loss}


def video_loss(model: nn.Module, out: VideoOutput, targets: dict) -> tuple[Tensor, dict]:
    return LOSSES[type(model)](model, out, targets)


def update_memory(model: nn.Module, out: VideoOutput) -> None:
    """After a training step: MNAD eq. 3 / Lai et al. eq. 12 (MemAE's memory learns by backprop)."""
    memory = getattr(model, "memory", None)
    if out.queries is not None and hasattr(memory, "update") and getattr(model.config, "update_items", True):
        memory.update(out.queries)


def per_sample_distance(model: nn.Module, out: VideoOutput, batch: int) -> Tensor | None:
    """MNAD eq. 14 / Lai et al. eq. 22: mean over positions of the distance to the nearest item."""
    memory = getattr(model, "memory", None)
    if out.queries is None or not hasattr(memory, "distance"):
        return None
    return memory.distance(out.queries.detach()).reshape(batch, -1).mean(dim=1)


__all__ = ["VideoOutput", "MemAE3DConfig", "MNADConfig", "PrototypeConfig", "build_mnad_config",
           "MemAE3D", "MNAD", "PrototypeAE", "UNetEncoder", "UNetDecoder", "memae3d_loss", "mnad_loss",
           "prototype_loss", "video_loss", "update_memory", "per_sample_distance",
           "VIDEO_MODELS"]


# ---- registry ------------------------------------------------------------------------------

def _example(config) -> Tensor:
    """A forward input of two clips for smoke tests."""
    model_in = {MemAE3DConfig: lambda c: (c.in_channels, c.clip_length),
                MNADConfig: lambda c: ((1 if c.task == "recon" else c.clip_length - 1) * c.in_channels,),
                PrototypeConfig: lambda c: ((c.clip_length - 1) * c.in_channels,)}[type(config)](config)
    return torch.rand(2, *model_in, config.image_size, config.image_size) * 2 - 1


_TINY_2D = dict(image_size=32, widths=(4, 8, 8, 16), memory_slots=4)
VIDEO_MODELS = {
    "memae3d": (partial(build_with_memory, MemAE3DConfig), MemAE3D,
                dict(image_size=32, widths=(4, 4, 8, 8), memory_slots=20)),
    "mnad-recon": (partial(build_mnad_config, "recon"), MNAD, _TINY_2D),
    "mnad-pred": (partial(build_mnad_config, "pred"), MNAD, _TINY_2D),
    "prototype": (partial(build_with_memory, PrototypeConfig), PrototypeAE, _TINY_2D),
}
for _name, (_cfg, _cls, _tiny) in VIDEO_MODELS.items():
    register_model(ModelSpec(_name, _cfg, _cls, _tiny, _example, family="video"))
