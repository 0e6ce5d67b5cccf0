"""The MemAE memory: addressing, hard shrinkage, entropy (inspect_ad/memory/memae.py)."""
import math

import pytest
import torch

from inspect_ad.memory import MemAEMemory, addressing_entropy, hard_shrink


@pytest.mark.parametrize("shape", [(4, 16), (2, 16, 5, 3), (2, 16, 3, 4, 5)])
def test_weights_nonnegative_and_sum_to_one(shape):
    torch.manual_seed(0)
    mem = MemAEMemory(num_slots=12, dim=16)
    out = mem(torch.randn(shape))
    q = shape[0] * math.prod(shape[2:])
    assert out.weights.shape == (q, 12)
    assert (out.weights >= 0).all()
    assert torch.allclose(out.weights.sum(-1), torch.ones(q), atol=1e-6)
    assert out.features.shape == shape


def test_shrinkage_zeroes_weights_below_threshold():
    w = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    shrunk = hard_shrink(w, threshold=0.1)
    assert shrunk[0, 3] == 0
    assert (shrunk[0, :3] > 0).all()
    # survivors are re-normalised in L1 and keep their order
    assert torch.isclose(shrunk.sum(), torch.tensor(1.0))
    assert shrunk[0, 0] > shrunk[0, 1] > shrunk[0, 2]


def test_shrinkage_matches_eq7_by_hand():
    w = torch.tensor([[0.6, 0.4]])
    lam, eps = 0.45, 1e-12
    expected = torch.tensor([[0.15 * 0.6 / (0.15 + eps), 0.0]])
    assert torch.allclose(hard_shrink(w, lam), expected / expected.sum())


def test_gradients_flow_through_shrinkage():
    mem = MemAEMemory(num_slots=8, dim=4, shrink_threshold=0.1)
    z = torch.randn(5, 4, requires_grad=True)
    mem(z).features.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert mem.slots.grad.abs().sum() > 0


def test_entropy_known_values():
    one_hot = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    uniform = torch.full((1, 4), 0.25)
    assert addressing_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    assert addressing_entropy(uniform).item() == pytest.approx(math.log(4), rel=1e-6)
    both = torch.cat([one_hot, uniform])
    assert addressing_entropy(both).item() == pytest.approx(math.log(4) / 2, rel=1e-6)


def test_default_threshold_inside_paper_interval():
    mem = MemAEMemory(num_slots=60, dim=8)
    assert 1 / 60 <= mem.shrink_threshold <= 3 / 60


def test_dot_and_cosine_similarity_differ_and_unknown_rejected():
    torch.manual_seed(0)
    cos, dot = MemAEMemory(6, 4, similarity="cosine"), MemAEMemory(6, 4, similarity="dot")
    dot.load_state_dict(cos.state_dict())
    z = 10 * torch.randn(3, 4)
    assert not torch.allclose(cos(z).weights, dot(z).weights)
    with pytest.raises(ValueError, match="choose one of: cosine, dot"):
        MemAEMemory(6, 4, similarity="l2")


def test_slot_init_scale_sets_read_size_not_cosine_weights():
    torch.manual_seed(0)
    small = MemAEMemory(60, 32)
    torch.manual_seed(0)
    unit = MemAEMemory(60, 32, init_std=1.0)
    assert small.slots.abs().max() <= 1 / math.sqrt(32)
    assert unit.slots.std().item() == pytest.approx(1.0, rel=0.1)
    scaled = MemAEMemory(60, 32, init_std=1.0)
    scaled.slots.data = 5 * unit.slots.data
    z = torch.randn(7, 32)
    # cosine addressing is blind to slot norms: same weights, read-out scaled with the slots
    assert torch.allclose(unit(z).weights, scaled(z).weights, atol=1e-6)
    assert torch.allclose(5 * unit(z).features, scaled(z).features, atol=1e-5)


def test_top_k_read_keeps_k_slots_per_query_with_gradient():
    torch.manual_seed(0)
    mem = MemAEMemory(num_slots=16, dim=4, logit_scale=5.0, shrink_threshold=0.0, top_k=3)   # λ could drop more
    z = torch.randn(2, 4, 5, 3, requires_grad=True)
    out = mem(z)
    assert out.features.shape == z.shape and out.weights.shape == (30, 16)
    assert ((out.weights > 0).sum(dim=-1) == 3).all()
    assert torch.allclose(out.weights.sum(dim=-1), torch.ones(30))
    full = MemAEMemory(num_slots=16, dim=4, logit_scale=5.0, shrink_threshold=0.0)
    full.slots.data.copy_(mem.slots.data)   # the same slots: the kept slots are the full read's largest
    assert torch.equal(full(z).weights.topk(3).indices.sort().values, out.weights.topk(3).indices.sort().values)
    out.features.sum().backward()
    read = (out.weights > 0).any(dim=0)
    assert z.grad.abs().sum() > 0 and torch.equal(mem.slots.grad.abs().sum(dim=1) > 0, read)   # unread slots: none
