"""Training on several processes (inspect_ad/training/distributed.py): two gloo processes on this
machine take the steps one process takes on the same global batches, rank 0 alone writes, a
resume reads rank 0's checkpoint, PatchCore's per-rank coresets merge into one bank."""
import itertools
import json
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from conftest import fast_fit_args, noise, one_line_error, run_cli, write_png
from inspect_ad.detectors.bundle import read_bundle_config
from inspect_ad.detectors.image import Detector
from inspect_ad.training.batches import LoaderBatches
from inspect_ad.training.distributed import check_shares
from inspect_ad.errors import InspectError
from test_distributed_ranks import make, run_rank, trained


def write_images(root, n=8):
    rng = np.random.default_rng(0)
    return [write_png(root / "train" / f"{i}.png", noise(rng)) for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Two gloo processes fit every detector of ``make`` on 8 images (see ``run_rank``)."""
    root = tmp_path_factory.mktemp("ddp")
    write_images(root)
    for r in range(2):
        (root / "harness" / str(r)).mkdir(parents=True)
    mp.spawn(run_rank, args=(root, free_port()), nprocs=2)
    return root


def on_rank(root, rank: int, name: str) -> dict:
    return load_file(str(root / "harness" / str(rank) / f"{name}.safetensors"))


def one_process(root, name: str) -> Detector:
    return make(name).fit(sorted((root / "train").glob("*.png")), progress=False)


def assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k, **tolerance)


@pytest.mark.parametrize("n", [10, 11])
def test_the_ranks_shares_make_up_the_one_process_batches(n):
    data = torch.arange(n)
    one = LoaderBatches(data, 4, seed=3)
    shares = [LoaderBatches(data, 4, seed=3, rank=r, world=2) for r in range(2)]
    for epoch in range(2):
        single = list(itertools.islice(one.epoch(epoch), one.steps()))
        split = [list(itertools.islice(s.epoch(epoch), one.steps())) for s in shares]
        before = DataLoader(data, batch_size=4, shuffle=True, drop_last=True,     # the one process's order until now
                            generator=torch.Generator().manual_seed(3 * 100_003 + epoch))
        assert [b.tolist() for b in single] == [b.tolist() for b in before]
        assert [sorted(torch.cat(parts).tolist()) for parts in zip(*split)] == [sorted(b.tolist()) for b in single]


def test_an_uneven_split_is_refused_with_sizes_that_work():
    with pytest.raises(InspectError, match="multiple of 3, e.g. 15 or 18"):
        check_shares(40, 16, 3)
    with pytest.raises(InspectError, match="fewer than the 4 processes; start at most 3"):
        check_shares(3, 4, 4)


def test_ddp_takes_the_one_process_steps_on_the_global_batch(ddp):
    one = one_process(ddp, "pixel")
    assert_same_weights(on_rank(ddp, 0, "pixel"), trained(one), rtol=1e-4, atol=1e-6)
    assert_same_weights(on_rank(ddp, 0, "pixel"), on_rank(ddp, 1, "pixel"), rtol=0, atol=0)
    history = json.loads((ddp / "harness" / "0" / "pixel.json").read_text())
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in one.history_], rel=1e-5)


def test_the_feature_model_trains_on_each_ranks_cached_targets(ddp):
    assert_same_weights(on_rank(ddp, 0, "feature"), on_rank(ddp, 1, "feature"), rtol=0, atol=0)
    assert_same_weights(on_rank(ddp, 0, "feature"), trained(one_process(ddp, "feature")), rtol=1e-4, atol=1e-6)


def test_rank0_alone_writes_bundles_and_checkpoints(ddp):
    assert sorted(p.name for p in (ddp / "rank0").iterdir()) == \
        ["feature", "feature.checkpoint", "patchcore", "pixel", "pixel.checkpoint"]
    assert not (ddp / "rank1").exists()
    assert read_bundle_config(ddp / "rank0" / "pixel")["training"]["processes"] == 2


def test_a_resume_under_ddp_ends_where_the_uninterrupted_run_ends(ddp):
    for rank in range(2):
        assert_same_weights(on_rank(ddp, rank, "resumed"), on_rank(ddp, 0, "pixel"), rtol=1e-6, atol=1e-7)


def test_patchcore_ranks_merge_into_the_one_process_bank_size(ddp):
    banks = [on_rank(ddp, r, "patchcore")["memory.slots"] for r in range(2)]
    one = one_process(ddp, "patchcore").model_.memory.slots
    assert banks[0].shape == one.shape == (round(0.1 * 8 * 8 * 8), one.shape[1])   # 10% of 8 images' 8×8 patches
    assert torch.equal(banks[0], banks[1])


def test_fit_nproc_2_writes_one_loadable_bundle(tmp_path):
    write_images(tmp_path)
    r = run_cli("fit", "--train-dir", tmp_path / "train", "--out", tmp_path / "bundle", "--nproc", 2,
                *fast_fit_args(epochs=1), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle.checkpoint", "train"]
    det = Detector.load(tmp_path / "bundle", "cpu")
    assert det.training_info_["processes"] == 2 and "nproc" not in read_bundle_config(tmp_path / "bundle")["fit_options"]
    assert np.isfinite(det.score_samples(sorted((tmp_path / "train").glob("*.png"))[:2])).all()


def test_fit_nproc_refuses_a_batch_it_cannot_share_before_starting(tmp_path):
    write_images(tmp_path)
    r = run_cli("fit", "--train-dir", tmp_path / "train", "--out", tmp_path / "bundle", "--nproc", 3,
                *fast_fit_args())
    one_line_error(r, "--batch-size 4", "multiple of 3")
    assert not (tmp_path / "bundle").exists()
