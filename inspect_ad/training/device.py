"""Where training and scoring run, and what makes a run repeatable: the device, the seed, the
thread count."""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inspect_ad.errors import InspectError

DEVICE_HELP = "auto (a CUDA GPU when there is one), cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``name`` as a device; under torchrun "auto" and "cuda" are the GPU of the process's LOCAL_RANK."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InspectError(f"--device {name} asked for, but no CUDA GPU is available; use --device cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return local_gpu(int(os.environ["LOCAL_RANK"]))
    try:
        return torch.device(name)
    except RuntimeError:
        raise InspectError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, cuda:N")


def local_gpu(local_rank: int) -> torch.device:
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise InspectError(f"process LOCAL_RANK {local_rank} has no GPU of its own: this machine shows {count}; "
                           f"start at most {count} processes per machine, or use --device cpu")
    return torch.device("cuda", local_rank)


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


def torch_threads_from_env() -> None:
    """Honour OMP_NUM_THREADS for torch's intra-op pool (shared machines)."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))


def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel
    (process-wide; the command line calls it). A backbone's activations for a batch of 16 exceed
    malloc's 32 MB mmap limit (lite0's stem at 320×288: 47 MB), so each one was mapped and unmapped
    every batch and faulted in again page by page: 6 batches of 16 MTD inputs took 1.4-1.5 million
    page faults and 2.5 s of kernel time besides 3.7-4.0 s of compute, 0.2-0.3 s with this (the
    default MTD fit's feature pass: 24 s of kernel time besides 36 s). The results are the same
    bits: only where the memory comes from changes. The cost: the
    process keeps its peak memory mapped until it ends. Returns whether it applied (glibc only)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4   # malloc.h
    # no mmap for large blocks (they come from the heap, and are reused), and no trimming of the heap below 1 GiB free
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """Reading processes beyond twice the CPUs only cost memory (each holds a copy of the
    preprocessing and its images in flight: 200 took 2.7 GB); refuse them in one line."""
    most = 2 * usable_cpus()
    if not 0 <= workers <= most:
        raise InspectError(f"--workers {workers}: this machine has {usable_cpus()} CPUs for this run, so pass "
                           f"0 to {most}")
