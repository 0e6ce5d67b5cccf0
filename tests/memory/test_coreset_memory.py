"""The coreset memory bank of patchcore (inspect_ad/memory/coreset.py)."""
import pytest
import torch

from inspect_ad.memory import CoresetMemory, greedy_coreset, nearest


def test_greedy_coreset_picks_one_point_per_far_cluster():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres])
    chosen = greedy_coreset(points, 3)
    assert sorted(int(i) // 50 for i in chosen) == [0, 1, 2]


def test_nearest_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(300, 16, generator=gen), torch.randn(1000, 16, generator=gen)
    d, i = nearest(queries, bank, k=3, chunk=128)
    brute = torch.cdist(queries, bank).pow(2)
    torch.testing.assert_close(d, brute.topk(3, largest=False).values, atol=1e-4, rtol=1e-4)
    assert torch.equal(i[:, 0], brute.argmin(1))


@pytest.mark.parametrize("k", [1, 3])
def test_nearest_in_an_exported_graph_searches_bank_blocks_with_the_same_result(monkeypatch, k):
    gen = torch.Generator().manual_seed(2)
    bank, queries = torch.randn(300, 16, generator=gen), torch.randn(500, 16, generator=gen)
    expected = nearest(queries, bank, k=k, chunk=128)
    monkeypatch.setattr("inspect_ad.memory.coreset._exporting", lambda: True)   # blocks of 64 slots
    d, i = nearest(queries, bank, k=k, chunk=128)
    torch.testing.assert_close(d, expected[0])
    assert torch.equal(i, expected[1])


def test_coreset_memory_reads_the_nearest_slot_with_sparse_weights():
    memory = CoresetMemory(1, 4)
    memory.fill(torch.eye(4).repeat(10, 1), ratio=0.1, max_slots=4)
    out = memory(torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.2, 1.1]]))
    torch.testing.assert_close(out.features, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
    assert out.weights.is_sparse and torch.equal(out.weights.to_dense().sum(1), torch.ones(2))


def test_coreset_bank_is_bounded_by_max_slots():
    memory = CoresetMemory(1, 8)
    assert memory.fill(torch.randn(5000, 8), ratio=0.5, max_slots=100) == 100
    assert memory.slots.shape == (100, 8) and memory.num_slots == 100
