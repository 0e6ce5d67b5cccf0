"""The coreset memory bank of patchcore (inspect_ad/memory/coreset.py)."""
import pytest
import torch

from inspect_ad.memory import CoresetMemory, greedy_coreset, nearest
from inspect_ad.memory.coreset import _greedy_rounds


def test_greedy_coreset_picks_one_point_per_far_cluster():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres])
    chosen = greedy_coreset(points, 3)
    assert sorted(int(i) // 50 for i in chosen) == [0, 1, 2]


def _plain_greedy(x: torch.Tensor, first: int, n: int) -> list[int]:
    """PatchCore Alg. 1 as written: every step updates every candidate's distance to the chosen."""
    chosen, min_dist = [first], torch.full((len(x),), float("inf"), dtype=x.dtype)
    for _ in range(n - 1):
        min_dist = torch.minimum(min_dist, (x - x[chosen[-1]]).pow(2).sum(1))
        chosen.append(int(min_dist.argmax()))
    return chosen


@pytest.mark.parametrize("shape, n, shrink", [((3000, 8), 300, 0.8), ((2000, 80), 150, 0.8), ((1500, 3), 400, 0.5),
                                              ((500, 5), 500, 0.95)])
def test_greedy_coreset_in_rounds_chooses_as_the_plain_loop(shape, n, shrink):
    # clustered points (rounds then hold few candidates, and stale ones come back in), in float64
    # so that no two distances are within rounding of each other
    gen = torch.Generator().manual_seed(n)
    centres = 10 * torch.randn(20, shape[1], generator=gen, dtype=torch.float64)
    points = centres[torch.randint(20, (shape[0],), generator=gen)] + torch.randn(*shape, generator=gen,
                                                                                 dtype=torch.float64)
    chosen = greedy_coreset(points, n, seed=3, shrink=shrink)
    gen = torch.Generator().manual_seed(3)   # greedy_coreset's own draws: the projection, then the first point
    x = points
    if shape[1] > 64:
        x = points @ (torch.randn(shape[1], 64, generator=gen) / 8).to(points)
    first = int(torch.randint(len(x), (1,), generator=gen))
    assert chosen.tolist() == _plain_greedy(x, first, n)


def test_greedy_rounds_with_small_blocks_and_repeated_points():
    # blocks of 7 rows and 5 centres: a stale row is brought up to date over several products.
    # Every point three times: copies' distances may round apart by which product computed them, so
    # either copy may be chosen, but the same points are (the bank holds the same features)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64).repeat(3, 1)
    chosen = torch.empty(120, dtype=torch.long)
    chosen[0] = 17
    _greedy_rounds(x, chosen, shrink=0.7, block=7, centres=5)
    assert (chosen % 200).tolist() == [i % 200 for i in _plain_greedy(x, 17, 120)]


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
