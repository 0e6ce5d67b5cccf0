"""The prototype memory and its discriminative loss (inspect_ad/memory/prototype.py)."""
import math

import pytest
import torch

from inspect_ad.memory import PrototypeMemory, discriminative_loss

E = math.e


def test_prototype_update_is_softmax_over_queries_then_l2norm():
    mem = PrototypeMemory(2, 2)
    with torch.no_grad():
        mem.items.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    mem.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    m1 = torch.tensor([1.0, 0.0]) + E / (E + 1) * torch.tensor([2.0, 0.0]) + 1 / (E + 1) * torch.tensor([0.0, 1.0])
    assert torch.allclose(mem.items[0], m1 / m1.norm(), atol=1e-6)


def test_prototype_read_is_cosine_softmax_with_query_width():
    mem = PrototypeMemory(2, 2)
    with torch.no_grad():
        mem.items.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    out = mem(torch.tensor([[5.0, 0.0]]))                          # cosine ignores the norm
    assert torch.allclose(out.weights[0], torch.tensor([E, 1.0]) / (E + 1))
    assert out.features.shape == (1, 2)


def test_discriminative_loss_is_trace_ratio():
    items = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    z = torch.tensor([[3.0, 0.0], [-1.0, 1.0]])                     # one query per item, K = 2
    # Tr(S_B) = ½·1 + ½·1 = 1;  Tr(S_W) = ½·‖[2,0]‖² + ½·‖[0,1]‖² = 2.5
    assert float(discriminative_loss(z, items)) == pytest.approx(2.5)
