"""Runtimes: what turns a batch of preprocessed images into (maps, scores).

``torch`` runs the bundle's model in this process; for GPUs it can use bf16 autocast, channels-last
inputs and ``torch.compile`` (all off by default; they run on the CPU too, where bf16 autocast is
slower: see recipes/results/speed.md). Under bf16 the nearest-neighbour search of patchcore's
memory stays float32 (:func:`inspect_ad.memory.coreset.nearest`).
``onnx`` (onnxruntime), ``openvino`` and ``torchscript`` run a graph written by
:func:`inspect_ad.deploy.export.export_graph` and need neither the model code nor the training
stack. Each returns float32 numpy arrays: maps (B, S, S) and scores (B,).

An ONNX or OpenVINO file is a graph of standard operators that the runtime interprets; a
TorchScript file is a program, so run only TorchScript exports you made or trust (the safetensors
bundle remains the format to exchange).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from inspect_ad.checks import Options
from inspect_ad.deploy.export import FORMATS, INPUT, require
from inspect_ad.deploy.graph import ScoringGraph
from inspect_ad.errors import InspectError

RUNTIMES = ("torch", "onnx", "openvino", "torchscript")
PRECISIONS = ("fp32", "bf16")

Outputs = tuple[np.ndarray, np.ndarray]


def _numpy(maps: torch.Tensor, scores: torch.Tensor) -> Outputs:
    return maps.float().cpu().numpy(), scores.float().cpu().numpy()


class TorchRuntime:
    """The scoring graph in torch on the model's device."""

    def __init__(self, graph: ScoringGraph, precision: str = "fp32", compile: bool = False,
                 channels_last: bool = False):
        Options(*PRECISIONS).check("precision", precision)
        self.device = next(graph.parameters(), next(graph.buffers(), torch.empty(0))).device
        self.precision, self.channels_last, self.map_config = precision, channels_last, graph.map_config
        self.fn: Callable = torch.compile(graph, dynamic=False) if compile else graph

    def __call__(self, x: torch.Tensor) -> Outputs:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return _numpy(*self.fn(x))


class OnnxRuntime:
    """Runs an exported ONNX scoring graph with ONNX Runtime (CUDA when asked and available)."""

    def __init__(self, file: Path, device: torch.device, threads: int):
        ort = require("onnxruntime", "--runtime onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = (["CUDAExecutionProvider"] if device.type == "cuda" else []) + ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        self.session = ort.InferenceSession(str(file), options, providers=[p for p in providers if p in available])

    def __call__(self, x: torch.Tensor) -> Outputs:
        maps, scores = self.session.run(None, {INPUT: x.numpy()})
        return maps, scores


class OpenVinoRuntime:
    """Runs an exported OpenVINO scoring graph, in fp32 (the default) or bf16."""

    def __init__(self, file: Path, device: torch.device, threads: int, precision: str):
        ov = require("openvino", "--runtime openvino")
        Options(*PRECISIONS).check("precision", precision)
        # OpenVINO's CPU plugin infers in bf16 where the CPU has it unless told otherwise: the maps
        # then differ from the torch path by about 1% of their range
        config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
                  "INFERENCE_NUM_THREADS": threads,
                  **({"EXECUTION_MODE_HINT": "ACCURACY"} if precision == "fp32" else {})}
        target = "GPU" if device.type == "cuda" else "CPU"
        self.model = ov.Core().compile_model(str(file), target, config if target == "CPU" else {})

    def __call__(self, x: torch.Tensor) -> Outputs:
        out = self.model(x.numpy())
        return np.asarray(out[0]), np.asarray(out[1])


class TorchScriptRuntime:
    """Runs an exported TorchScript scoring graph."""

    def __init__(self, file: Path, device: torch.device):
        self.device = device
        with warnings.catch_warnings():   # torch 2.14 deprecates torch.jit for torch.export; the format still loads
            warnings.simplefilter("ignore", FutureWarning)
            self.module = torch.jit.load(str(file), map_location=device).eval()

    def __call__(self, x: torch.Tensor) -> Outputs:
        with torch.inference_mode():
            return _numpy(*self.module(x.to(self.device)))


def exported_file(folder: Path, runtime: str) -> Path:
    """The file ``runtime`` runs in an export folder; OpenVINO also reads an ONNX export."""
    Options(*RUNTIMES[1:]).check("runtime", runtime)
    names = [FORMATS[runtime]] + ([FORMATS["onnx"]] if runtime == "openvino" else [])
    for name in names:
        if (folder / name).is_file():
            return folder / name
    fmt = "onnx or openvino" if runtime == "openvino" else runtime
    raise InspectError(f"{folder} holds no {' or '.join(names)} for --runtime {runtime}; make one with "
                       f"'inspect-ad export --bundle BUNDLE --format {fmt.split()[0]} --out {folder}'")


def open_runtime(folder: Path, runtime: str, device: torch.device, precision: str = "fp32"):
    """The runtime for an exported graph in ``folder``."""
    file = exported_file(folder, runtime)
    threads = torch.get_num_threads()
    if runtime == "onnx":
        return OnnxRuntime(file, device, threads)
    if runtime == "openvino":
        return OpenVinoRuntime(file, device, threads, precision)
    return TorchScriptRuntime(file, device)
