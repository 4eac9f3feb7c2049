"""The top-k fast path (``evaluate(..., auc=False)``) against the full-rank path and the slow
reference: ties (also at the k-th score), masked history and masked targets, users with 0, 1 or
many targets, K beyond the catalogue, model -inf / +inf scores, both counting paths for AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.evaluation import evaluate, reference_evaluate
from genrec.evaluation import evaluator as E
from genrec.evaluation import metrics as M


def tied_case(seed: int, n_users=80, n_items=30, max_targets=25, decimals=1):
    """Scores rounded to ``decimals`` (many ties), ~25% history (overlapping the targets),
    target counts spread over 0, 1 and many."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((n_users, n_items + 1)), decimals).astype(np.float32)
    hist = (rng.random((n_users, n_items + 1)) < 0.25).astype(np.float32)
    tgt = np.zeros_like(hist)
    for u in range(n_users):
        n = [0, 1, 1, 2, rng.integers(0, max_targets + 1)][u % 5]
        tgt[u, rng.choice(np.arange(1, n_items + 1), n, replace=False)] = 1
    return scores, sp.csr_matrix(hist), sp.csr_matrix(tgt)


def assert_same_without_auc(fast, full):
    assert "AUC" not in fast.metrics and "AUC" not in fast.per_user
    assert list(fast.metrics) == [k for k in full.metrics if k != "AUC"]
    for key, val in fast.metrics.items():  # bit-for-bit: the ranks are the same integers
        assert val == full.metrics[key] or (math.isnan(val) and math.isnan(full.metrics[key])), key
    for key, val in fast.per_user.items():
        np.testing.assert_array_equal(val, full.per_user[key], err_msg=key)
    np.testing.assert_array_equal(fast.users, full.users)
    np.testing.assert_array_equal(fast.topk, full.topk)
    assert (fast.n_users, fast.n_skipped) == (full.n_users, full.n_skipped)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ks", [(1, 3, 10), (5, 50)])  # 50 > 30 items: lists shorter than K
@pytest.mark.parametrize("decimals", [1, 6])
def test_fast_path_equals_full_ranks(seed, ks, decimals):
    scores, hist, tgt = tied_case(seed, decimals=decimals)
    pop = np.random.default_rng(seed).integers(0, 20, scores.shape[1])
    kw = dict(ks=ks, batch_users=13, item_popularity=pop, keep_topk=True)
    full = evaluate(lambda u: scores[u], hist, tgt, **kw)
    fast = evaluate(lambda u: scores[u], hist, tgt, auc=False, **kw)
    assert "AUC" in full.metrics
    assert_same_without_auc(fast, full)
    ref = reference_evaluate(lambda u: scores[u], hist, tgt, ks=ks, item_popularity=pop)
    for key, val in fast.per_user.items():
        np.testing.assert_allclose(val, ref.per_user[key], rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("few_relevant", [0, 1000])  # AUC's ranks by sorting / by comparisons
def test_full_path_matches_reference_with_heavy_ties(few_relevant, monkeypatch):
    monkeypatch.setattr(E, "_FEW_RELEVANT", few_relevant)
    scores, hist, tgt = tied_case(10, decimals=1)
    ks = (2, 10, 40)
    fast = evaluate(lambda u: scores[u], hist, tgt, ks=ks, batch_users=9)
    ref = reference_evaluate(lambda u: scores[u], hist, tgt, ks=ks)
    assert fast.per_user.keys() == ref.per_user.keys()
    for key in ref.per_user:
        np.testing.assert_allclose(fast.per_user[key], ref.per_user[key], rtol=1e-12, atol=1e-12,
                                   err_msg=key)


def _ranks(scores, hist, tgt, k_max, full):
    return E._rank_chunk(torch.tensor(scores), hist, tgt, k_max, full=full)[0]


@pytest.mark.parametrize("few_relevant", [0, 1000])
@pytest.mark.parametrize("k_max", [1, 4, 12, 100])
def test_fast_ranks_are_the_exact_ranks_up_to_k(k_max, few_relevant, monkeypatch):
    """Ranks <= k_max agree exactly; every other slot is NO_RANK in the fast path."""
    monkeypatch.setattr(E, "_FEW_RELEVANT", few_relevant)
    scores, hist, tgt = tied_case(3, n_users=50, decimals=1)
    full = _ranks(scores, hist, tgt, k_max, True)
    fast = _ranks(scores, hist, tgt, k_max, False)
    hit = full <= k_max
    np.testing.assert_array_equal(fast[hit], full[hit])
    # between k_max and NO_RANK only targets tied with the k-th score get an exact rank
    assert np.all((fast[~hit] == M.NO_RANK) | (fast[~hit] == full[~hit]))


def test_tie_at_the_kth_score_is_pessimistic():
    # candidates 1..6; items 2, 3, 4, 5 all score 1 (the 2nd..5th best), k_max = 2.
    # Target 5 is tied with the 2nd-best score but goes after the non-relevant 2, 3, 4: rank 5.
    s = [[-1.0, 2, 1, 1, 1, 1, 0]]
    hist, tgt = sp.csr_matrix((1, 7), dtype=np.float32), sp.csr_matrix(([1.0], ([0], [5])), (1, 7))
    assert _ranks(np.array(s), hist, tgt, 2, True).tolist() == [[5]]
    assert _ranks(np.array(s), hist, tgt, 2, False).tolist() == [[5]]
    res = evaluate(lambda u: np.array(s)[u], hist, tgt, ks=(2, 5), auc=False)
    assert res.metrics["HR@2"] == 0.0 and res.metrics["MRR@5"] == pytest.approx(1 / 5)
    # items 1, 2, 3 tied at the top, 1 and 3 relevant: the non-relevant 2 goes first, then the
    # relevant ones by item index -> ranks 2, 3 (beyond k_max = 1, but tied with the k-th score)
    s2 = [[-1.0, 1, 1, 1, 0, 0, 0]]
    tgt2 = sp.csr_matrix(([1.0, 1.0], ([0, 0], [1, 3])), (1, 7))
    assert _ranks(np.array(s2), hist, tgt2, 1, False).tolist() == [[2, 3]]
    assert _ranks(np.array(s2), hist, tgt2, 1, True).tolist() == [[2, 3]]


def test_masked_targets_and_infinite_scores():
    # model -inf is a (lowest) score, +inf a (highest) one; item 2 is a masked target
    s = np.array([[0, np.inf, 5, -np.inf, 1, np.inf, -np.inf],
                  [0, 1, 1, 1, 1, 1, 1]], dtype=np.float64)
    hist = sp.csr_matrix(([1.0, 1.0], ([0, 1], [2, 2])), (2, 7))
    tgt = sp.csr_matrix((np.ones(5), ([0, 0, 0, 1, 1], [2, 3, 5, 2, 6])), (2, 7))
    for ks in [(1, 2), (3,), (10,)]:
        full = evaluate(lambda u: s[u], hist, tgt, ks=ks, batch_users=1, keep_topk=True)
        fast = evaluate(lambda u: s[u], hist, tgt, ks=ks, batch_users=1, keep_topk=True, auc=False)
        assert_same_without_auc(fast, full)
        # the model scored 3 and 5 candidates above -inf: the leading slots of their lists
        assert full.topk_scored.tolist() == fast.topk_scored.tolist() == [min(3, ks[-1]),
                                                                          min(5, ks[-1])]
        ref = reference_evaluate(lambda u: s[u], hist, tgt, ks=ks)
        for key, val in fast.per_user.items():
            np.testing.assert_allclose(val, ref.per_user[key], rtol=1e-12, err_msg=key)


def test_integer_scores_and_many_targets_per_user():
    # int scores (compared as float64), every user with ~all items as targets
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 3, (20, 41))
    dense = (rng.random((20, 41)) < 0.8).astype(np.float32)
    dense[:, 0] = 0
    tgt = sp.csr_matrix(dense)
    hist = sp.csr_matrix((20, 41), dtype=np.float32)
    full = evaluate(lambda u: scores[u], hist, tgt, ks=(1, 5, 20), keep_topk=True)
    fast = evaluate(lambda u: scores[u], hist, tgt, ks=(1, 5, 20), keep_topk=True, auc=False)
    assert_same_without_auc(fast, full)
