"""The one training loop: Adam on an objective over batches, for every model family.

What differs between families is kept out of the loop: *where batches come from and in which
order* (:mod:`inspect_ad.training.batches`) and *what a step minimises* (an objective, see
:mod:`inspect_ad.training.objectives`). The loop adds what every family gets the same way: seeding,
the device, an optional cosine schedule, a validation pass that keeps the best epoch,
checkpoints with resume, progress and a per-epoch history, and on several processes
DistributedDataParallel (:mod:`inspect_ad.training.distributed`).
"""
from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from inspect_ad.training.checkpoint import load_checkpoint, save_checkpoint
from inspect_ad.training.distributed import all_sum, is_main, on_rank0, world_size
from inspect_ad.training.device import resolve_device, seed_everything
from inspect_ad.checks import Int, Number, Optional, Options, Text, validate
from inspect_ad.errors import InspectError

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Optimisation settings shared by every family. Defaults are MMAE's (§4.1); each family's
    detector starts from its own paper's values (:data:`~inspect_ad.detectors` docstrings).

    Parameters
    ----------
    epochs : int, default 100
        Passes over the training set (>= 1).
    batch_size : int, default 16
        Samples per optimiser step; on several processes, the global batch split between them.
    lr : float, default 1e-4
        Adam's learning rate (> 0).
    weight_decay : float, default 1e-5
        Adam's L2 penalty (>= 0).
    seed : int, default 0
        Seeds the weights' initialisation and the epochs' order: the same seed gives the same
        model on a CPU.
    device : str, default "auto"
        "cpu", "cuda", "cuda:N", "mps", or "auto" (a GPU when there is one).
    checkpoint_every : int, default 10
        Epochs between checkpoints; 0: only at the end.
    schedule : {"constant", "cosine"}, default "constant"
        The learning rate over the run: constant, or cosine annealing over all steps (MNAD §4.1).
    max_steps_per_epoch : int or None, default None
        A cap on the batches of each epoch, for smoke runs; None: every batch.
    ssim_weight, gms_weight : float, default 0.0
        Weights of the SSIM and gradient-similarity terms added to a pixel model's loss.
    synthetic_defects : float, default 0.0
        The fraction of training inputs that get a pasted synthetic defect, in [0, 1].
    """

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4             # MMAE §4.1: Adam, initial learning rate 1e-4
    weight_decay: float = 1e-5   # MMAE §4.1: weight decay 1e-5 (MemAE and MNAD: none)
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10   # epochs between checkpoints (0 = only at the end)
    schedule: str = "constant"   # "cosine": MNAD §4.1, cosine annealing over all steps
    max_steps_per_epoch: int | None = None   # cap on batches per epoch (smoke runs); None = all
    ssim_weight: float = 0.0         # > 0 adds an SSIM term to the pixel loss (models.losses.memae_loss)
    gms_weight: float = 0.0          # > 0 adds a gradient-similarity term (idem)
    synthetic_defects: float = 0.0   # > 0: this fraction of training inputs get pasted defects

    _constraints: ClassVar[dict] = {
        "epochs": Int(1), "batch_size": Int(1), "lr": Number(0, open_low=True), "weight_decay": Number(0),
        "seed": Int(0), "device": Text(), "checkpoint_every": Int(0), "schedule": Options(*SCHEDULES),
        "max_steps_per_epoch": Optional(Int(1)), "ssim_weight": Number(0), "gms_weight": Number(0),
        "synthetic_defects": Number(0, 1)}

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_saved(cls, section: dict) -> "TrainConfig":
        """The settings a bundle's training section recorded (it also holds what the run measured,
        and older bundles lack the newer fields)."""
        return cls(**{k: v for k, v in section.items() if k in cls.__dataclass_fields__})


class Batches(Protocol):
    """A training set as the loop sees it: the batches of one epoch, in the order of that epoch."""

    def epoch(self, epoch: int): ...        # -> iterator of batches (a tensor or a list of tensors)
    def steps(self) -> int: ...             # batches per epoch


Objective = Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]


def _to(batch, device: torch.device):
    # a batch is a tensor, or a list of per-scale tensors (cached backbone features)
    if isinstance(batch, list):
        return [t.to(device, non_blocking=True) for t in batch]
    return batch.to(device, non_blocking=True)


def _size(batch) -> int:
    return len(batch[0]) if isinstance(batch, list) else len(batch)


class _Step(nn.Module):
    """One step's loss as a module's forward: DistributedDataParallel averages the gradients of
    what runs inside its forward, and objectives call other methods too (reconstruct, split_clip)."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch):
        return self.objective(self.model, batch)


def _step(model: nn.Module, objective: Objective, device: torch.device) -> Callable:
    if world_size() == 1:
        return lambda batch: objective(model, batch)
    return DistributedDataParallel(_Step(model, objective),
                                   device_ids=[device.index] if device.type == "cuda" else None)


def train(model: nn.Module, batches: Batches, cfg: TrainConfig, objective: Objective,
          validate: Callable[[nn.Module], float] | None = None, checkpoint_dir: Path | None = None,
          resume: bool = False, progress: bool = True, fingerprint: dict | None = None) -> list[dict]:
    """Minimise ``objective`` with Adam for ``cfg.epochs``; returns the per-epoch history (losses
    averaged over samples).

    ``objective(model, batch) -> (loss, {name: float})``; if it has an ``after_step(model)``
    method, that runs after each optimiser step (MNAD's memory update, eq. 3).
    ``validate(model) -> float`` runs after every epoch; the weights of the epoch with the lowest
    value are kept (MemAE §4.1's 10% held out). ``fingerprint`` (JSON: settings, training list)
    is stored in checkpoints, and a resume from a checkpoint with another one is refused.

    In a torch.distributed group the model trains with DistributedDataParallel (each process on
    its share of every batch, see LoaderBatches); the history sums every process's samples; rank 0
    alone logs, shows progress and writes checkpoints, and every rank resumes from them."""
    if batches.steps() == 0:
        raise InspectError("the training set is empty; add defect-free images")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = min(batches.steps(), cfg.max_steps_per_epoch or batches.steps())
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps))
             if cfg.schedule == "cosine" else None)
    history: list[dict] = []
    start, best = 0, (math.inf, None)
    if resume and checkpoint_dir is not None and (checkpoint_dir.exists() or checkpoint_dir.with_name(checkpoint_dir.name + ".old").exists()):
        state = load_checkpoint(checkpoint_dir, model, opt, fingerprint)
        start, history = state["epoch"], state["history"]
        if is_main():
            log.info("resumed from %s at epoch %d", checkpoint_dir, start)
    after_step = getattr(objective, "after_step", None)
    step = _step(model, objective, device)
    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc="train",
               disable=not (progress and is_main()), unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        totals: dict[str, float] = {}
        n = 0
        for batch in itertools.islice(batches.epoch(epoch), steps):
            batch = _to(batch, device)
            loss, parts = step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if after_step is not None:
                after_step(model)
            size = _size(batch)
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                totals[k] = totals.get(k, 0.0) + v * size
            n += size
        n, *sums = all_sum([n, *totals.values()])
        stats = {k: v / n for k, v in zip(totals, sums)}
        if validate is not None:
            stats["validation"] = float(validate(model))
            if stats["validation"] < best[0]:
                best = (stats["validation"], copy.deepcopy(model.state_dict()))
        history.append({"epoch": epoch + 1, **stats, "seconds": round(time.perf_counter() - t0, 3)})
        if is_main():
            log.info("epoch %d: %s", epoch + 1, history[-1])
        bar.set_postfix(loss=f"{stats['loss']:.5f}")
        due = cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0
        if checkpoint_dir is not None and (due or epoch + 1 == cfg.epochs):
            on_rank0(save_checkpoint, checkpoint_dir, model, opt, {"epoch": epoch + 1, "history": history,
                                                                   "fingerprint": fingerprint})
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    return history
