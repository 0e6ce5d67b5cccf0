"""The MNAD memory and its losses (inspect_ad/memory/mnad.py)."""
import math

import pytest
import torch

from inspect_ad.memory import MNADMemory, compactness_loss, separateness_loss

E = math.e


def _mnad(items):
    mem = MNADMemory(len(items), len(items[0]))
    mem.items.copy_(torch.tensor(items))
    return mem


def test_mnad_items_are_buffers_not_parameters():
    mem = MNADMemory(10, 8)
    assert list(mem.parameters()) == [] and "items" in mem.state_dict()


def test_mnad_read_concatenates_query_and_softmax_read():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    out = mem(torch.tensor([[1.0, 0.6], [0.0, 0.8]]).reshape(1, 2, 1, 2))   # queries [1, 0], [0.6, 0.8]
    assert out.features.shape == (1, 4, 1, 2)                       # 2C channels
    w1 = torch.tensor([E, 1.0]) / (E + 1)                           # softmax(qᵀp) for q = [1, 0]
    assert torch.allclose(out.weights[0], w1)
    assert torch.allclose(out.features[0, :, 0, 0], torch.cat([torch.tensor([1.0, 0.0]), w1]))


def test_mnad_update_uses_nearest_queries_with_max_normalised_weights():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])          # q1, q2 -> p1; q3 -> p2
    mem.update(q)
    # column 1 of softmax over queries: e^1, e^0.8, e^0; over U_1 = {q1, q2} max-normalised: 1, e^-0.2
    p1 = torch.tensor([1 + 1 + 0.8 * E ** -0.2, 0.6 * E ** -0.2])
    assert torch.allclose(mem.items[0], p1 / p1.norm(), atol=1e-6)
    assert torch.allclose(mem.items[1], torch.tensor([0.0, 1.0]))  # p2 + q3, renormalised


def test_mnad_item_chosen_by_no_query_is_unchanged():
    mem = _mnad([[1.0, 0.0], [0.0, 1.0]])
    mem.update(torch.tensor([[1.0, 0.0], [0.9, 0.1]]))
    assert torch.equal(mem.items[1], torch.tensor([0.0, 1.0]))


def test_compactness_zero_when_queries_are_their_nearest_items():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(compactness_loss(items.clone(), items)) == 0.0
    # q = [0.6, 0.8] -> nearest p2, ‖q − p2‖² = 0.36 + 0.04, mean over C = 2
    assert float(compactness_loss(torch.tensor([[0.6, 0.8]]), items)) == pytest.approx(0.2)


def test_separateness_is_a_hinge_on_nearest_minus_second_nearest():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0]])                                  # d_pos = 0, d_neg = √2
    assert float(separateness_loss(q, items, margin=1.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(separateness_loss(q, items, margin=2.0)) == pytest.approx(2 - math.sqrt(2), abs=1e-4)
