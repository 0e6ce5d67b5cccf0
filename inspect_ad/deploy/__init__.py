"""Deployment: the model and its map post-processing as one graph, exported to ONNX, OpenVINO or
TorchScript, and the runtimes that execute it (see :mod:`inspect_ad.deploy.runtime`)."""
