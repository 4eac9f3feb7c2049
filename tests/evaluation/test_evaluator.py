"""Full-ranking evaluator: hand-computed cases, sklearn cross-checks, agreement with the slow
reference (with and without ties), chunking invariance and scale."""

from __future__ import annotations

import math
import resource
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import ndcg_score, roc_auc_score

from genrec.evaluation import EvalResult, evaluate, reference_evaluate
from genrec.evaluation import evaluator as E

L3, L4, L6 = math.log2(3), math.log2(4), math.log2(6)
NEG = -1.0  # a PAD score; PAD is masked whatever the model says


def csr(rows: list[list[int]], n_cols: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=(len(rows), n_cols))


def run(scores, targets, history=None, ks=(1, 2, 3, 5), **kw) -> EvalResult:
    """Evaluate a fixed score matrix (users x n_items+1)."""
    scores = np.asarray(scores, dtype=np.float32)
    n_users, n_cols = scores.shape
    hist = csr(history or [[] for _ in range(n_users)], n_cols)
    return evaluate(lambda u: scores[u], hist, csr(targets, n_cols), ks=ks, **kw)


# ---- hand-computed cases -----------------------------------------------------------------------
def test_perfect_ranking():
    res = run([[NEG, 5, 4, 3, 2, 1]], [[1]], ks=(1, 5))
    m = res.metrics
    for name in ("HR", "Recall", "NDCG", "MRR", "MAP"):
        assert m[f"{name}@1"] == 1.0 and m[f"{name}@5"] == 1.0
    assert m["Precision@5"] == pytest.approx(1 / 5)
    assert m["AUC"] == 1.0
    assert res.n_users == 1 and res.n_skipped == 0


def test_target_at_rank_3():
    res = run([[NEG, 5, 4, 3, 2, 1]], [[3]])
    m = res.metrics
    assert m["HR@2"] == 0.0 and m["HR@3"] == 1.0
    assert m["NDCG@5"] == pytest.approx(1 / L4)  # 0.5
    assert m["MRR@5"] == pytest.approx(1 / 3)
    assert m["MAP@5"] == pytest.approx(1 / 3)
    assert m["Precision@5"] == pytest.approx(1 / 5)
    assert m["AUC"] == pytest.approx(2 / 4)      # 2 of 4 negatives above


def test_list_shorter_than_k():
    # 3 items, K = 10: target at rank 2; Precision still divides by K
    res = run([[NEG, 3, 2, 1]], [[2]], ks=(10,), keep_topk=True)
    assert res.metrics["HR@10"] == 1.0
    assert res.metrics["NDCG@10"] == pytest.approx(1 / L3)
    assert res.metrics["Precision@10"] == pytest.approx(1 / 10)
    assert res.metrics["coverage@10"] == 1.0
    assert res.topk.tolist() == [[1, 2, 3] + [-1] * 7]


def test_no_hits():
    res = run([[NEG, 5, 4, 3, 2, 1]], [[5]], ks=(3,))
    for name in ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP"):
        assert res.metrics[f"{name}@3"] == 0.0
    assert res.metrics["AUC"] == 0.0


def test_all_items_tied_is_pessimistic():
    # every score equal: the target goes after all 4 non-relevant items -> rank 5
    res = run([[0, 0, 0, 0, 0, 0]], [[2]])
    assert res.metrics["HR@3"] == 0.0
    assert res.metrics["NDCG@5"] == pytest.approx(1 / L6)
    assert res.metrics["MRR@5"] == pytest.approx(1 / 5)
    assert res.metrics["AUC"] == 0.0


def test_two_relevant_tied_with_each_other():
    # items 1, 2 relevant and tied at the top: ranks 1 and 2 (smaller index first), nothing lost
    res = run([[NEG, 1, 1, 0, 0, 0]], [[1, 2]])
    assert res.metrics["NDCG@2"] == pytest.approx(1.0)
    assert res.metrics["MAP@2"] == pytest.approx(1.0)
    assert res.metrics["AUC"] == 1.0


def test_relevant_tied_with_non_relevant():
    # items 1, 2, 3 score 1, items 4, 5 score 0; relevant {2, 3}. Pessimistic order:
    # 1 (non-relevant wins the tie), 2, 3, 4, 5 -> ranks 2 and 3
    res = run([[NEG, 1, 1, 1, 0, 0]], [[2, 3]])
    m = res.metrics
    assert m["HR@1"] == 0.0 and m["HR@2"] == 1.0
    assert m["Recall@2"] == pytest.approx(1 / 2)
    assert m["Precision@2"] == pytest.approx(1 / 2)
    assert m["Recall@3"] == 1.0
    assert m["MRR@3"] == pytest.approx(1 / 2)
    # AP@3: precision@2 = 1/2, precision@3 = 2/3 -> (1/2 + 2/3) / min(3, 2) = 7/12
    assert m["MAP@3"] == pytest.approx(7 / 12)
    assert m["NDCG@3"] == pytest.approx((1 / L3 + 1 / L4) / (1 + 1 / L3))
    # AUC: 3 negatives {1, 4, 5}; each relevant item has 1 negative above -> (2 + 2) / 6
    assert m["AUC"] == pytest.approx(2 / 3)


def test_auc_half():
    # order: 1 (rel), 3, 4, 2 (rel): first wins 2 of 2, second 0 of 2
    res = run([[NEG, 4, 1, 3, 2]], [[1, 2]])
    assert res.metrics["AUC"] == 0.5


def test_masked_history_target_is_a_miss():
    # item 1 scores highest but is in the history: masked, so the single target is a miss
    res = run([[NEG, 9, 5, 4, 3]], [[1]], history=[[1]])
    assert res.metrics["HR@5"] == 0.0 and res.metrics["NDCG@5"] == 0.0
    assert res.metrics["AUC"] == 0.0
    # with a second target (item 2, now first among candidates) Recall is 1/2, AUC 1/2
    res = run([[NEG, 9, 5, 4, 3]], [[1, 2]], history=[[1]])
    assert res.metrics["Recall@5"] == pytest.approx(1 / 2)
    assert res.metrics["NDCG@5"] == pytest.approx(1 / (1 + 1 / L3))
    assert res.metrics["AUC"] == pytest.approx(1 / 2)


def test_history_and_pad_never_recommended():
    scores = [[100, 9, 8, 7, 6, 5], [100, 1, 2, 3, 4, 5]]
    res = run(scores, [[5], [1]], history=[[1, 3], [5]], ks=(3,), keep_topk=True)
    assert res.topk.tolist() == [[2, 4, 5], [4, 3, 2]]
    assert res.metrics["HR@3"] == pytest.approx(1 / 2)


def test_users_without_targets_are_skipped():
    scores = np.tile([[NEG, 3, 2, 1]], (4, 1))
    res = run(scores, [[1], [], [3], []])
    assert res.n_users == 2 and res.n_skipped == 2
    assert res.users.tolist() == [0, 2]
    np.testing.assert_allclose(res.per_user["MRR@5"], [1.0, 1 / 3])
    sub = run(scores, [[1], [], [3], []], users=np.array([2, 1]))
    assert sub.n_users == 1 and sub.n_skipped == 1
    assert sub.metrics["MRR@5"] == pytest.approx(1 / 3)


def test_beyond_accuracy_values():
    # 3 users, 4 items, top-2 lists: [1, 2], [1, 3], [1, 2]
    scores = [[NEG, 4, 3, 2, 1], [NEG, 4, 1, 3, 2], [NEG, 4, 3, 1, 2]]
    pop = np.array([0, 3, 1, 0, 0])  # train counts, n_users = 3
    vec = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    res = run(scores, [[4]] * 3, ks=(2,), item_popularity=pop, item_vectors=vec)
    m = res.metrics
    assert m["coverage@2"] == pytest.approx(3 / 4)
    # counts over items 1..4 = [3, 2, 1, 0]: sum (2i - 5) x_i sorted = -3*0 - 1*1 + 1*2 + 3*3 = 10
    assert m["gini@2"] == pytest.approx(10 / (4 * 6))
    # item 1: -log2(3/3) = 0; items 2, 3: -log2(1/3) (item 3 unseen -> count 1)
    assert m["novelty@2"] == pytest.approx(math.log2(3) / 2)
    # [1, 2] orthogonal -> 1; [1, 3] parallel -> 0
    assert m["diversity@2"] == pytest.approx(2 / 3)


def test_metric_keys_and_optional_inputs():
    res = run([[NEG, 3, 2, 1]], [[1]], ks=(10, 5))
    keys = list(res.metrics)
    assert keys[:8] == ["HR@5", "Recall@5", "Precision@5", "NDCG@5", "MRR@5", "MAP@5",
                        "coverage@5", "gini@5"]
    assert keys[-1] == "AUC" and "NDCG@10" in keys
    assert not any(k.startswith(("novelty", "diversity")) for k in keys)
    assert res.topk is None


def test_torch_and_float64_scores():
    s = np.array([[NEG, 0.3, 0.1, 0.2]])
    hist, tgt = csr([[]], 4), csr([[3]], 4)
    a = evaluate(lambda u: torch.tensor(s[u], dtype=torch.float64), hist, tgt, ks=(2,))
    b = evaluate(lambda u: s[u].astype(np.float32), hist, tgt, ks=(2,))
    assert a.metrics == b.metrics and a.metrics["MRR@2"] == pytest.approx(1 / 2)
    # the caller's tensor is never written to (masking works on a copy)
    fixed = torch.tensor([[NEG, 0.3, 0.1, 0.2]])
    evaluate(lambda u: fixed, csr([[1]], 4), tgt, ks=(2,))
    assert fixed.tolist() == [[NEG, pytest.approx(0.3), pytest.approx(0.1), pytest.approx(0.2)]]
    # a model's own -inf is a (lowest) score, not a mask: the item stays a candidate
    c = evaluate(lambda u: np.array([[0, 1, -np.inf, 2]]), hist, csr([[2]], 4), ks=(3,))
    assert c.metrics["MRR@3"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad, message", [
    (lambda u: np.zeros((len(u), 3)), "expected"),
    (lambda u: np.full((len(u), 4), np.nan), "NaN"),
])
def test_bad_scores_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        evaluate(bad, csr([[]], 4), csr([[1]], 4))


def test_bad_inputs_are_named():
    ok = lambda u: np.zeros((len(u), 4))  # noqa: E731
    with pytest.raises(ValueError, match="PAD"):
        evaluate(ok, csr([[]], 4), csr([[0]], 4))
    with pytest.raises(ValueError, match="none of the"):
        evaluate(ok, csr([[]], 4), csr([[]], 4))
    with pytest.raises(ValueError, match="same split"):
        evaluate(ok, csr([[]], 5), csr([[1]], 4))
    with pytest.raises(ValueError, match="0..0"):
        evaluate(ok, csr([[]], 4), csr([[1]], 4), users=np.array([3]))
    with pytest.raises(ValueError, match="scipy.sparse"):
        evaluate(ok, np.zeros((1, 4)), csr([[1]], 4))
    with pytest.raises(ValueError, match="item_popularity"):
        evaluate(ok, csr([[]], 4), csr([[1]], 4), item_popularity=np.ones(3))
    with pytest.raises(ValueError, match="item_vectors"):
        evaluate(ok, csr([[]], 4), csr([[1]], 4), item_vectors=np.ones((3, 2)))


# ---- random data: sklearn, reference, chunking -------------------------------------------------
def random_case(seed: int, n_users=60, n_items=40, ties=False, max_targets=12, dense_hist=0.2):
    """Scores, history and targets that overlap (so some targets are masked)."""
    rng = np.random.default_rng(seed)
    if ties:
        scores = rng.integers(0, 4, (n_users, n_items + 1)).astype(np.float32)
    else:
        scores = rng.random((n_users, n_items + 1))
    hist = (rng.random((n_users, n_items + 1)) < dense_hist).astype(np.float32)
    tgt = np.zeros_like(hist)
    for u in range(n_users):
        n = rng.integers(0, max_targets + 1)
        tgt[u, rng.choice(np.arange(1, n_items + 1), n, replace=False)] = 1
    return scores, sp.csr_matrix(hist), sp.csr_matrix(tgt)


def test_ndcg_and_auc_match_sklearn():
    scores, hist, tgt = random_case(0, ties=False)
    # keep targets out of the history, so sklearn on the candidates sees every target
    tgt = sp.csr_matrix(tgt.toarray() * (hist.toarray() == 0))
    res = evaluate(lambda u: scores[u], hist, tgt, ks=(5, 10))
    want = {5: [], 10: []}
    aucs = []
    for u in res.users:
        cand = np.setdiff1d(np.arange(1, scores.shape[1]), hist[u].indices)
        y, s = tgt[u].toarray()[0, cand], scores[u, cand]
        for k in want:
            want[k].append(ndcg_score([y], [s], k=k))
        aucs.append(roc_auc_score(y, s))
    for k in want:
        assert res.metrics[f"NDCG@{k}"] == pytest.approx(np.mean(want[k]), rel=1e-12)
    np.testing.assert_allclose(res.per_user["AUC"], aucs, rtol=1e-12)


def test_auc_with_ties_is_below_sklearns_half_credit():
    scores, hist, tgt = random_case(1, ties=True)
    tgt = sp.csr_matrix(tgt.toarray() * (hist.toarray() == 0))
    res = evaluate(lambda u: scores[u], hist, tgt)
    for u, got in zip(res.users, res.per_user["AUC"]):
        cand = np.setdiff1d(np.arange(1, scores.shape[1]), hist[u].indices)
        y = tgt[u].toarray()[0, cand]
        if 0 < y.sum() < len(y):
            assert got <= roc_auc_score(y, scores[u, cand]) + 1e-12


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("max_targets", [1, 12])
@pytest.mark.parametrize("few_relevant", [0, 1000])  # force the bucketing / the comparison path
def test_fast_matches_reference(ties, max_targets, few_relevant, monkeypatch):
    monkeypatch.setattr(E, "_FEW_RELEVANT", few_relevant)
    scores, hist, tgt = random_case(7 + max_targets, ties=ties, max_targets=max_targets)
    rng = np.random.default_rng(3)
    pop = rng.integers(0, 30, scores.shape[1])
    vec = rng.normal(size=(scores.shape[1], 5))
    ks = (1, 3, 10, 50)  # 50 > n_items: lists shorter than K
    fast = evaluate(lambda u: scores[u], hist, tgt, ks=ks, batch_users=16,
                    item_popularity=pop, item_vectors=vec, keep_topk=True)
    ref = reference_evaluate(lambda u: scores[u], hist, tgt, ks=ks,
                             item_popularity=pop, item_vectors=vec)
    assert fast.n_users == ref.n_users and fast.n_skipped == ref.n_skipped
    np.testing.assert_array_equal(fast.users, ref.users)
    np.testing.assert_array_equal(fast.topk, ref.topk)
    assert fast.per_user.keys() == ref.per_user.keys()
    for key in ref.per_user:
        np.testing.assert_allclose(fast.per_user[key], ref.per_user[key], rtol=1e-12, atol=1e-12,
                                   err_msg=key)
    assert list(fast.metrics) == list(ref.metrics)
    for key, val in ref.metrics.items():
        assert fast.metrics[key] == pytest.approx(val, rel=1e-12, nan_ok=True), key


def test_chunking_invariance():
    scores, hist, tgt = random_case(11, n_users=45, ties=True)
    vec = np.random.default_rng(0).normal(size=(scores.shape[1], 3))
    results = [evaluate(lambda u: scores[u], hist, tgt, ks=(2, 10), batch_users=b,
                        item_popularity=np.arange(scores.shape[1]), item_vectors=vec,
                        keep_topk=True) for b in (1, 7, 1000)]
    first = results[0]
    for other in results[1:]:
        assert other.metrics == first.metrics
        np.testing.assert_array_equal(other.topk, first.topk)
        for key in first.per_user:
            np.testing.assert_array_equal(other.per_user[key], first.per_user[key])


def test_chunk_size_is_bounded_by_cells(monkeypatch):
    monkeypatch.setattr(E, "_MAX_CHUNK_CELLS", 100)
    scores, hist, tgt = random_case(2, n_users=30, n_items=40)
    seen = []
    res = evaluate(lambda u: seen.append(len(u)) or scores[u], hist, tgt, batch_users=1024)
    assert max(seen) == 100 // 41 and sum(seen) == res.n_users


def test_progress_bar(capsys):
    scores, hist, tgt = random_case(4, n_users=10)
    evaluate(lambda u: scores[u], hist, tgt, progress=True)
    assert "evaluate" in capsys.readouterr().err


# ---- scale -------------------------------------------------------------------------------------
def random_csr(n_users: int, n_items: int, low: int, high: int, rng) -> sp.csr_matrix:
    counts = rng.integers(low, high + 1, n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.integers(1, n_items + 1, counts.sum())
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items + 1))


def test_scale_20k_users_by_20k_items():
    rng = np.random.default_rng(0)
    n_users = n_items = 20_000
    hist = random_csr(n_users, n_items, 5, 100, rng)
    tgt = random_csr(n_users, n_items, 1, 1, rng)
    gen = torch.Generator().manual_seed(0)
    largest = []

    def score(u):
        largest.append(len(u))
        return torch.rand(len(u), n_items + 1, generator=gen)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    res = evaluate(score, hist, tgt, ks=(10, 20))
    seconds = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"\n20k x 20k evaluation: {seconds:.1f} s, peak RSS grew {grown_mb:.0f} MB")
    assert seconds < 30
    assert max(largest) * (n_items + 1) <= E._MAX_CHUNK_CELLS
    assert grown_mb < 1500
    assert res.n_users == n_users
    # random scores: AUC ~ 0.5, HR@10 ~ 10 / 20k
    assert abs(res.metrics["AUC"] - 0.5) < 0.01
    assert res.metrics["HR@10"] < 0.003


def test_ml1m_sized_timing():
    rng = np.random.default_rng(1)
    n_users, n_items = 6040, 3706
    hist = random_csr(n_users, n_items, 20, 300, rng)
    tgt = random_csr(n_users, n_items, 1, 1, rng)
    scores = rng.random((n_users, n_items + 1), dtype=np.float32)
    res = evaluate(lambda u: scores[u], hist, tgt, ks=(10, 50, 200))
    print(f"\nML-1M-sized 6,040 x 3,706 evaluation: {res.seconds:.2f} s")
    assert abs(res.metrics["AUC"] - 0.5) < 0.02
    assert res.metrics["coverage@200"] > 0.99
