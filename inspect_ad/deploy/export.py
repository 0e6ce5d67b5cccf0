"""Export a :class:`~inspect_ad.deploy.graph.ScoringGraph` to ONNX, OpenVINO IR or TorchScript.

Every format takes a batch of preprocessed images, ``images`` (any batch size, C × S × S
float32 in the bundle's preprocessing), and returns ``maps`` (B × S × S) and ``scores`` (B):
smoothing, standardisation and pooling are in the graph. ONNX is written with the TorchScript-based
exporter at opset 17 (Gaussian smoothing is two constant matrix products, the coreset search a
fixed number of bank blocks, so nothing depends on the batch but the batch axis). OpenVINO IR is
converted from that ONNX file with its weights kept in float32 (OpenVINO's default would halve
them to float16). TorchScript is a trace.
"""
from __future__ import annotations

import importlib
import tempfile
import warnings
from pathlib import Path

import torch

from inspect_ad.checks import Options
from inspect_ad.deploy.graph import ScoringGraph
from inspect_ad.errors import InspectError

FORMATS = {"onnx": "model.onnx", "openvino": "model.xml", "torchscript": "model.torchscript"}
MODEL_FILES = (*FORMATS.values(), "model.bin")   # model.bin: the OpenVINO IR's weights
OPSET = 18
INPUT, OUTPUTS = "images", ("maps", "scores")
EXTRA = "deploy"


def require(module: str, what: str):
    """Import an optional runtime package, or say in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InspectError(f"{what} needs the package {module.split('.')[0]}, which is not installed; "
                           f"install it with: pip install 'inspect-ad[{EXTRA}]'") from None


def export_graph(graph: ScoringGraph, input_shape: tuple[int, int, int], fmt: str, folder: Path) -> dict:
    """Write ``graph`` into ``folder`` as ``FORMATS[fmt]``; returns the bundle's ``export`` section."""
    Options(*FORMATS).check("export format", fmt)
    # a batch of 2, not 1: a tracer may fold a batch dimension of size 1 into a constant
    example = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))
    graph = graph.cpu().eval()
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks that are constant for one model (its grid sizes) are what the tracer warns about
        warnings.simplefilter("ignore")
        {"onnx": _onnx, "openvino": _openvino, "torchscript": _torchscript}[fmt](graph, example, folder / FORMATS[fmt])
    return {"format": fmt, "file": FORMATS[fmt], "input": [INPUT, "batch", *input_shape],
            "outputs": list(OUTPUTS), "torch_version": torch.__version__,
            **({"opset": OPSET} if fmt != "torchscript" else {})}


def _onnx(graph: ScoringGraph, example: torch.Tensor, file: Path) -> None:
    require("onnxscript", "export to ONNX")
    torch.onnx.export(graph, (example,), str(file), input_names=[INPUT], output_names=list(OUTPUTS),
                      dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET, dynamo=True,
                      external_data=False, verbose=False)


def _openvino(graph: ScoringGraph, example: torch.Tensor, file: Path) -> None:
    ov = require("openvino", "export to OpenVINO")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / FORMATS["onnx"]
        _onnx(graph, example, onnx_file)
        ov.save_model(ov.convert_model(str(onnx_file)), str(file), compress_to_fp16=False)


def _torchscript(graph: ScoringGraph, example: torch.Tensor, file: Path) -> None:
    traced = torch.jit.trace(graph, example, check_trace=False)
    torch.jit.save(traced, str(file))
