"""Training on several processes with DistributedDataParallel: the process group, who writes,
and the local launcher behind ``fit --nproc``.

``torchrun --nproc_per_node N -m inspect_ad fit ...`` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set, and :func:`process_group` joins them:
gloo between CPU processes; between GPUs NCCL, each process on the GPU of its LOCAL_RANK
(:func:`~inspect_ad.training.device.resolve_device`), with gloo beside it for the few CPU tensors
exchanged (epoch statistics, PatchCore's coresets). Outside a process group every function here
sees one process, rank 0 of 1, and the single-process code paths stay as they were.

The global batch is ``--batch-size``: each of W processes takes batch / W images of every step
(:func:`per_rank_batch`) and DistributedDataParallel averages their gradients, so W processes
take the steps one process takes at the same batch size, up to float rounding, and a bundle's
recorded settings mean the same whatever W. Rank 0 alone writes checkpoints and the bundle
(:func:`on_rank0`); a resume reads the checkpoint on every rank, so across machines the output
folder must be on storage that every machine sees.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from inspect_ad.errors import InspectError

T = TypeVar("T")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process logs, shows progress and writes files (rank 0)."""
    return rank() == 0


def launched() -> bool:
    """Whether torchrun (or ``fit --nproc``) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the processes torchrun started, for the block; nothing when this process runs alone
    or its caller already joined them."""
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("cuda:nccl,cpu:gloo", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, world: int) -> int:
    """Each process's share of a global batch of ``batch_size``."""
    if batch_size % world:
        lower = max(world, batch_size // world * world)
        raise InspectError(f"--batch-size {batch_size} does not split evenly over {world} processes (each takes "
                           f"an equal share of every step); use a multiple of {world}, e.g. {lower} or {lower + world}")
    return batch_size // world


def check_shares(n_images: int, batch_size: int, world: int) -> None:
    """Refuse a split that leaves a process without images or the processes unequal shares."""
    if n_images < world:
        raise InspectError(f"the training set has {n_images} image{'s' * (n_images != 1)}, fewer than the {world} processes; "
                           f"start at most {n_images}")
    per_rank_batch(batch_size, world)


def on_rank0(write: Callable[..., T], *args) -> T | None:
    """``write(*args)`` on rank 0 alone (a checkpoint, a bundle: one writer per file); the other
    ranks wait until it is done, so that none goes on to read a file that is not there yet."""
    result = write(*args) if is_main() else None
    if world_size() > 1:
        dist.barrier()
    return result


def all_sum(values: Sequence[float]) -> list[float]:
    """The sums of ``values`` over the processes (the same values, alone)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def launch(nproc: int, args: Sequence[str], device: torch.device) -> int:
    """``python ARGS`` in ``nproc`` processes of this machine, joined as ``torchrun --standalone``
    joins them (a rendezvous on a free local port); returns the exit code of the first process
    that failed, 0 when all succeeded. Each process gets OMP_NUM_THREADS = cores / nproc unless
    it is set: nproc processes on every core would slow each other down."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise InspectError(f"--nproc {nproc} needs a GPU per process, and {torch.cuda.device_count()} are visible; "
                           f"use --nproc {torch.cuda.device_count()} or --device cpu")
    set_threads = "OMP_NUM_THREADS" not in os.environ
    if set_threads:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    logging.disable(logging.ERROR)   # the launcher's report of a failure: the failed process printed its own
    try:
        with tempfile.TemporaryDirectory() as logs:   # the launcher's folder of error files, not left behind
            config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                                  rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                  logs_specs=DefaultLogsSpecs(log_dir=logs))
            elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as e:
        return e.get_first_failure()[1].exitcode
    except SignalException:   # Ctrl-C: the launcher stopped the processes; end as one process ends
        raise KeyboardInterrupt from None
    finally:
        logging.disable(logging.NOTSET)
        if set_threads:
            os.environ.pop("OMP_NUM_THREADS")
    return 0
