"""genrec.topk: the fast top-k agrees with a full stable sort on inputs full of ties (STYLE #13)."""

import math

import numpy as np
import pytest
import torch

from genrec.topk import reference_top_k, top_k, top_k_counted


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_k_matches_the_stable_sort_reference_on_many_ties(dtype):
    rng = np.random.default_rng(0)
    for trial in range(200):
        B, N = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        levels = int(rng.integers(1, 5))  # few distinct values: ties everywhere, also at the k-th
        scores = torch.from_numpy(rng.integers(0, levels, (B, N)).astype(np.float64)).to(dtype)
        scores[torch.from_numpy(rng.random((B, N)) < rng.random())] = -math.inf  # masked
        k = int(rng.integers(1, N + 3))  # also k > N
        idx, values = top_k(scores, k)
        ref_idx, ref_values = reference_top_k(scores, k)
        assert torch.equal(idx, ref_idx), (trial, scores, k)
        assert torch.equal(values, ref_values)
        _, _, n_at_least = top_k_counted(scores, k)
        kth = values[:, -1:]
        assert torch.equal(n_at_least[:, 0].long(), (scores >= kth).sum(1))


def test_top_k_edge_cases():
    inf = math.inf
    idx, values = top_k(torch.tensor([[-inf, 0.5, 0.9, 0.5, 0.5]]), 3)
    assert idx.tolist() == [[2, 1, 3]] and values[0].tolist() == pytest.approx([0.9, 0.5, 0.5])
    idx, values = top_k(torch.tensor([[-inf, 1.0, -inf]]), 3)  # fewer candidates than k
    assert idx.tolist() == [[1, -1, -1]] and values[0, 0] == 1.0
    assert top_k(torch.tensor([[1.0, 2.0]]), 0)[0].shape == (1, 0)
    assert top_k(torch.zeros(2, 0), 5)[0].shape == (2, 0)
    idx, _ = top_k(torch.zeros(3, 10), 4)  # all tied: the lowest indices, in order
    assert idx.tolist() == [[0, 1, 2, 3]] * 3
