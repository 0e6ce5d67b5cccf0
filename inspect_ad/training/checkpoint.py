"""Training checkpoints, atomic and without pickle.

A checkpoint is a folder (``model.safetensors``, ``optimizer.safetensors``, ``state.json``);
it is written beside the live one and swapped in by renames, so an interruption at any moment
leaves either the previous or the new checkpoint intact — never pickle, never half a file.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inspect_ad.atomic import atomic_write_json, finish_file, fsync_dir
from inspect_ad.errors import InspectError


def save_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
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


def load_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     fingerprint: dict | None = None) -> dict:
    if not (folder / "state.json").is_file() and folder.with_name(folder.name + ".old").is_dir():
        folder = folder.with_name(folder.name + ".old")  # interrupted between the two renames
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise InspectError(f"cannot resume from {folder} ({e.__class__.__name__}); delete it to start over")
    check_fingerprint(folder, state.get("fingerprint"), fingerprint)
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


def check_fingerprint(folder: Path, saved: dict | None, wanted: dict | None) -> None:
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
