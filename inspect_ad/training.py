"""Training loop for the reconstruction models, with atomic checkpoints and resume.

A checkpoint is a folder (``model.safetensors``, ``optimizer.safetensors``, ``state.json``);
it is written beside the live one and swapped in by renames, so an interruption at any moment
leaves either the previous or the new checkpoint intact — never pickle, never half a file.
"""
from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .atomic import atomic_write_json, finish_file, fsync_dir
from .errors import InspectError
from .losses import memae_loss

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4             # MMAE §4.1: Adam, initial learning rate 1e-4
    weight_decay: float = 1e-5   # MMAE §4.1: weight decay 1e-5
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10   # epochs between checkpoints (0 = only at the end)

    def to_dict(self) -> dict:
        return asdict(self)


DEVICE_HELP = "auto (a CUDA GPU when there is one), cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InspectError(f"--device {name} asked for, but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InspectError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, cuda:N")


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo, else what platform knows), for result tables."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """For result tables: the GPU's name, or the CPU's model, the vector instructions torch uses
    and its thread count. The CPU matters: the same seed gives bit-identical results on one
    machine, but other kernels round differently and training drifts (recipes/results/mnist.md)."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return (f"CPU ({cpu_name()}, {platform.machine()} {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- checkpoints -------------------------------------------------------------------------

def _save_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        opt_sd = opt.state_dict()
        tensors = {f"{pid}/{k}": v.detach().cpu().contiguous()
                   for pid, st in opt_sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        for f in ("model.safetensors", "optimizer.safetensors"):
            finish_file(tmp / f)
        atomic_write_json(tmp / "state.json", {**state, "param_groups": opt_sd["param_groups"]})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. disk full: leave the previous checkpoint, no debris
        raise
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(folder.parent)


def _load_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     fingerprint: dict | None = None) -> dict:
    if not (folder / "state.json").is_file() and folder.with_name(folder.name + ".old").is_dir():
        folder = folder.with_name(folder.name + ".old")  # interrupted between the two renames
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise InspectError(f"cannot resume from {folder} ({e.__class__.__name__}); delete it to start over")
    _check_fingerprint(folder, state.get("fingerprint"), fingerprint)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except (OSError, ValueError, RuntimeError) as e:
        raise InspectError(f"cannot resume from {folder} ({e.__class__.__name__}); delete it to start over")
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split("/", 1)
        opt_state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    return state


def _check_fingerprint(folder: Path, saved: dict | None, wanted: dict | None) -> None:
    """Refuse to resume a checkpoint made with other data or settings: it would silently give
    weights trained on something else under this run's name."""
    if wanted is None:
        return
    wanted = json.loads(json.dumps(wanted))  # as it reads back from state.json (tuples -> lists)
    if saved == wanted:
        return
    if saved is None:
        raise InspectError(f"{folder} does not record what it was trained on, so it cannot be checked against "
                           f"this run; fit without --resume (and with --overwrite) to start over")
    differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    raise InspectError(f"cannot resume from {folder}: it was trained with other {', '.join(differ)}; "
                       f"use the same data and settings, or fit with --overwrite to start over")


# --- loop --------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict]]


def memae_objective(entropy_weight: float, ssim_weight: float = 0.0, gms_weight: float = 0.0,
                    corrupt: Callable[[torch.Tensor], torch.Tensor] | None = None) -> LossFn:
    """``corrupt`` (e.g. :class:`~inspect_ad.corruption.SyntheticDefects`) alters the input only:
    the target stays the clean image, so the model learns to repair what it changed."""
    def loss(model: nn.Module, x: torch.Tensor):
        return memae_loss(model(corrupt(x) if corrupt else x), x, entropy_weight, ssim_weight, gms_weight)
    return loss


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, loss_fn: LossFn,
          checkpoint_dir: Path | None = None, resume: bool = False, progress: bool = True,
          on_epoch: Callable[[int], None] | None = None, fingerprint: dict | None = None) -> list[dict]:
    """Adam on ``loss_fn`` for ``cfg.epochs``; returns the per-epoch history (mean losses).
    ``fingerprint`` (JSON: settings, training list) is stored in checkpoints, and a resume from a
    checkpoint with another one is refused."""
    if len(data) == 0:
        raise InspectError("the training set is empty; add defect-free images")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    start = 0
    if resume and checkpoint_dir is not None and (checkpoint_dir.exists() or checkpoint_dir.with_name(checkpoint_dir.name + ".old").exists()):
        state = _load_checkpoint(checkpoint_dir, model, opt, fingerprint)
        start, history = state["epoch"], state["history"]
        log.info("resumed from %s at epoch %d", checkpoint_dir, start)
    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc="train",
               disable=not progress, unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        stats = _run_epoch(model, data, cfg, loss_fn, opt, device, epoch)
        history.append({"epoch": epoch + 1, **stats, "seconds": round(time.perf_counter() - t0, 3)})
        bar.set_postfix(loss=f"{stats['loss']:.5f}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
        due = cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0
        if checkpoint_dir is not None and (due or epoch + 1 == cfg.epochs):
            _save_checkpoint(checkpoint_dir, model, opt, {"epoch": epoch + 1, "history": history,
                                                          "fingerprint": fingerprint})
    model.eval()
    return history


def _run_epoch(model, data, cfg, loss_fn, opt, device, epoch) -> dict:
    # A per-epoch generator makes the data order a function of (seed, epoch), so a resumed run
    # sees the same batches as an uninterrupted one.
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    augment = getattr(data, "augment", None)
    if augment is not None and hasattr(augment, "set_random_seed"):
        augment.set_random_seed(cfg.seed * 100_003 + epoch)
    loader = DataLoader(data, batch_size=min(cfg.batch_size, len(data)), shuffle=True, generator=gen,
                        drop_last=len(data) > cfg.batch_size)
    totals: dict[str, float] = {}
    n = 0
    for x in loader:
        # a batch is a tensor, or a list of per-scale tensors (cached backbone features)
        x = [t.to(device, non_blocking=True) for t in x] if isinstance(x, list) else x.to(device, non_blocking=True)
        loss, parts = loss_fn(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        size = len(x[0]) if isinstance(x, list) else len(x)
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            totals[k] = totals.get(k, 0.0) + v * size
        n += size
    return {k: v / n for k, v in totals.items()}
