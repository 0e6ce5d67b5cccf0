"""Training checkpoints (inspect_ad/training/checkpoint.py)."""
import pytest
import torch

from inspect_ad.training import checkpoint


def test_disk_full_checkpoint_leaves_no_debris(qa, tmp_path, monkeypatch):
    _, det = qa

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", full)
    opt = torch.optim.Adam(det.model_.parameters())
    with pytest.raises(OSError):
        checkpoint.save_checkpoint(tmp_path / "checkpoint", det.model_, opt, {"epoch": 1})
    assert list(tmp_path.iterdir()) == []
