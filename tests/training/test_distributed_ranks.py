"""The two processes behind test_distributed.py's fits, in a module of their own: each process
imports it, and it imports far less than the tests' conftest (the processes start faster)."""
import json
import os

import torch
from safetensors.torch import save_file

from inspect_ad.detectors.image import Detector
from inspect_ad.training.distributed import process_group
from inspect_ad.training.loop import TrainConfig
from inspect_ad.models import TINY_FEATURE, get_spec

PIXEL = get_spec("mmae").tiny   # conftest's TINY_MODEL_OPTIONS, with its image size


def make(name: str, epochs: int = 2) -> Detector:
    """The detectors fitted on both sides: the pixel MMAE, the feature MMAE on cached targets, PatchCore."""
    cfg = TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, seed=0, device="cpu", checkpoint_every=1)
    if name == "pixel":
        return Detector("mmae", PIXEL["image_size"], train_config=cfg,
                        model_options={k: v for k, v in PIXEL.items() if k != "image_size"})
    if name == "feature":
        return Detector("mmae", 32, train_config=cfg,
                        model_options={k: v for k, v in TINY_FEATURE.items() if k != "image_size"})
    return Detector("patchcore", 32, train_config=cfg, model_options=dict(stages=(1, 2), coreset_ratio=0.1))


def trained(det: Detector) -> dict:
    """The weights a fit changed (not the frozen backbone's)."""
    return {k: v.detach().clone().contiguous() for k, v in det.model_.state_dict().items()
            if not k.startswith("backbone.")}


def run_rank(rank: int, root, port: int) -> None:
    """One of two processes, joined from the environment torchrun would set. Each fits every
    detector into root/rank<r>/ (rank 0's alone may fill), then resumes a fit in root/resumed
    (shared, as in real use); root/harness/<r>/ gets what the tests compare."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    paths = sorted((root / "train").glob("*.png"))
    harness = root / "harness" / str(rank)
    with process_group(torch.device("cpu")):
        for name in ("pixel", "feature", "patchcore"):
            det = make(name).fit(paths, out=root / f"rank{rank}" / name, progress=False)
            save_file(trained(det), str(harness / f"{name}.safetensors"))
            (harness / f"{name}.json").write_text(json.dumps(det.history_))
        make("pixel", epochs=1).fit(paths, out=root / "resumed", progress=False)   # "interrupted" after epoch 1
        det = make("pixel").fit(paths, out=root / "resumed", resume=True, progress=False)
        save_file(trained(det), str(harness / "resumed.safetensors"))
