"""Conformance suite and known answers for the non-gradient baselines (popularity, ItemCF, EASE).

Every model: score shape (B, n_items+1), PAD column -inf, save -> load gives identical scores,
deterministic, a planted block pattern is learned. Then per-model hand-computed answers, the
blockwise ItemCF neighbours against a dense reference, and a real-data check on ml-100k.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.models.ease import EASE, EASEConfig
from genrec.models.itemcf import ItemCF, ItemCFConfig
from genrec.models.popularity import Popularity, PopularityConfig

MODELS: dict[str, Callable[[int], object]] = {
    "popularity": lambda n: Popularity(PopularityConfig(n_items=n)),
    "itemcf": lambda n: ItemCF(ItemCFConfig(n_items=n, block_items=7)),  # several blocks
    "ease": lambda n: EASE(EASEConfig(n_items=n)),
}
model_names = pytest.mark.parametrize("name", list(MODELS))


def csr(dense: np.ndarray) -> sp.csr_matrix:
    """users x (n_items+1) CSR from a users x n_items 0/1 array (prepends the empty PAD column)."""
    dense = np.asarray(dense, dtype=np.float32)
    return sp.csr_matrix(np.hstack([np.zeros((len(dense), 1), np.float32), dense]))


def random_matrix(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    return csr(np.random.default_rng(seed).random((n_users, n_items)) < density)


def blocks() -> tuple[sp.csr_matrix, list[set[int]], np.ndarray]:
    """Group A (users 0-11) likes items 1-8, group B (users 12-19) likes items 9-16.

    Each user's row misses two own-block items (held out); item 1 is never held out, so it is
    the unique most popular item. Returns the partial matrix, held-out sets, group per user.
    """
    rows, held, group = [], [], []
    for u in range(20):
        a = u < 12
        first, size = (1, 8) if a else (9, 8)
        off = u if a else u - 12
        out = {first + 1 + off % 7, first + 1 + (off + 3) % 7}
        row = np.zeros(16)
        row[[i - 1 for i in range(first, first + size) if i not in out]] = 1
        rows.append(row)
        held.append(out)
        group.append(0 if a else 1)
    return csr(np.array(rows)), held, np.array(group)


# ---- conformance ----------------------------------------------------------------------------
@model_names
def test_score_shape_pad_and_finite(name: str) -> None:
    train = random_matrix(30, 25, 0.2, seed=0)
    history = random_matrix(30, 25, 0.3, seed=1)  # at test time history != fit matrix
    model = MODELS[name](25).fit(train)
    users = np.array([3, 0, 29, 3])
    s = model.score(users, history)
    assert s.shape == (4, 26) and s.dtype == np.float32
    assert np.all(s[:, 0] == -np.inf)
    assert np.isfinite(s[:, 1:]).all()
    np.testing.assert_array_equal(s[0], s[3])  # same user, same row


@model_names
def test_state_dict_round_trip_gives_identical_scores(name: str, tmp_path) -> None:
    train = random_matrix(30, 25, 0.2, seed=2)
    model = MODELS[name](25).fit(train)
    np.savez(tmp_path / "state.npz", **model.state_dict())  # through disk, as a run dir does
    fresh = MODELS[name](25)
    fresh.load_state_dict(dict(np.load(tmp_path / "state.npz")))
    users = np.arange(30)
    np.testing.assert_array_equal(fresh.score(users, train), model.score(users, train))


@model_names
def test_deterministic_and_input_untouched(name: str) -> None:
    train = random_matrix(30, 25, 0.2, seed=3)
    train.data[:] = 4.0  # ratings: models binarise a copy, never the caller's matrix
    a, b = MODELS[name](25).fit(train), MODELS[name](25).fit(train)
    users = np.arange(30)
    np.testing.assert_array_equal(a.score(users, train), b.score(users, train))
    assert np.all(train.data == 4.0)


@model_names
def test_bad_input_errors_name_the_fix(name: str) -> None:
    model = MODELS[name](25)
    with pytest.raises(RuntimeError, match="call fit"):
        model.score(np.array([0]), random_matrix(2, 25, 0.5, seed=0))
    with pytest.raises(ValueError, match=r"25 columns but n_items=25.*n_items \+ 1"):
        model.fit(sp.csr_matrix(np.ones((3, 25), np.float32)))
    pad = random_matrix(3, 25, 0.5, seed=0).tolil()
    pad[1, 0] = 1.0
    with pytest.raises(ValueError, match="column 0, which is PAD"):
        model.fit(pad.tocsr())
    model.fit(random_matrix(3, 25, 0.5, seed=0))
    with pytest.raises(ValueError, match="another dataset"):
        MODELS[name](30).load_state_dict(model.state_dict())


@model_names
def test_planted_block_pattern_is_learned(name: str) -> None:
    train, held, group = blocks()
    s = MODELS[name](16).fit(train).score(np.arange(20), train)
    if name == "popularity":
        assert np.all(s.argmax(axis=1) == 1)  # item 1: 12 users, every other item <= 11
        return
    for u in range(20):
        other = list(range(9, 17)) if group[u] == 0 else list(range(1, 9))
        own_held = sorted(held[u])
        assert s[u, own_held].min() > s[u, other].max(), (u, s[u])


# ---- known answers ---------------------------------------------------------------------------
# users x items 1..3:  u0 = {1, 2}, u1 = {1, 2, 3}, u2 = {1, 3}; counts 3, 2, 2;
# co-occurrence (1,2) = 2, (1,3) = 2, (2,3) = 1
HAND = csr([[1, 1, 0], [1, 1, 1], [1, 0, 1]])


def test_popularity_counts() -> None:
    x = HAND.copy()
    x.data[:] = 5.0  # a rating of 5 still counts once
    s = Popularity(PopularityConfig(n_items=3)).fit(x).score(np.array([0, 2]), x)
    np.testing.assert_array_equal(s, [[-np.inf, 3, 2, 2], [-np.inf, 3, 2, 2]])


def test_itemcf_cosine_by_hand() -> None:
    m = ItemCF(ItemCFConfig(n_items=3)).fit(HAND)
    c = 2 / np.sqrt(6)  # sim(1,2) = sim(1,3) = 2 / (sqrt3 sqrt2); sim(2,3) = 1 / (sqrt2 sqrt2)
    expected = np.array([[0, 0, 0, 0], [0, 0, c, c], [0, c, 0, 0.5], [0, c, 0.5, 0]])
    np.testing.assert_allclose(m.sim.toarray(), expected, rtol=1e-6)
    # history that is not the fit matrix: a user who only saw item 3 scores row 3 of S
    only3 = csr([[0, 0, 1]])
    np.testing.assert_allclose(m.score(np.array([0]), only3), [[-np.inf, c, 0.5, 0]], rtol=1e-6)
    np.testing.assert_allclose(m.score(np.array([0]), HAND), [[-np.inf, c, c, c + 0.5]], rtol=1e-6)
    shrunk = ItemCF(ItemCFConfig(n_items=3, shrink=1.0)).fit(HAND).sim.toarray()
    np.testing.assert_allclose(shrunk[2, 3], 1 / 3, rtol=1e-6)  # 1 / (2 + 1)
    np.testing.assert_allclose(shrunk[1, 2], 2 / (np.sqrt(6) + 1), rtol=1e-6)


def test_itemcf_k1_keeps_single_best_neighbour() -> None:
    s = ItemCF(ItemCFConfig(n_items=3, k=1)).fit(HAND).sim
    assert np.diff(s.indptr).tolist() == [0, 1, 1, 1]  # PAD row empty, one neighbour per item
    # row 1 ties between items 2 and 3 (both 2/sqrt6): the lower index wins
    assert s.indices.tolist() == [2, 1, 1]
    x = random_matrix(60, 40, 0.15, seed=4)
    s = ItemCF(ItemCFConfig(n_items=40, k=1, block_items=9)).fit(x).sim
    assert np.all(np.diff(s.indptr)[1:] == 1)
    dense = _dense_cosine(x, shrink=0.0, alpha=0.5)
    np.testing.assert_allclose(s.data, dense.max(axis=1)[1:], rtol=1e-6)


def _dense_cosine(x: sp.csr_matrix, shrink: float, alpha: float) -> np.ndarray:
    """Obviously-correct reference: the full items x items matrix, diagonal zeroed."""
    d = x.toarray().astype(np.float64)
    co = d.T @ d
    n = d.sum(axis=0)
    den = (n**alpha)[:, None] * (n ** (1.0 - alpha))[None, :] + shrink
    sim = np.divide(co, den, out=np.zeros_like(co), where=co > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize(("k", "shrink", "alpha"), [(20, 0.0, 0.5), (7, 3.0, 0.2)])
def test_itemcf_blockwise_equals_dense_reference(k: int, shrink: float, alpha: float) -> None:
    x = random_matrix(300, 500, 0.03, seed=5)
    got = ItemCF(ItemCFConfig(n_items=500, k=k, shrink=shrink, alpha=alpha, block_items=64))
    got = got.fit(x).sim.toarray()
    ref = _dense_cosine(x, shrink, alpha)
    want = np.zeros_like(ref)
    for i in range(ref.shape[0]):  # stable sort: ties go to the lower index, as in the model
        top = np.argsort(-ref[i], kind="stable")[:k]
        top = top[ref[i, top] > 0]
        want[i, top] = ref[i, top]
    np.testing.assert_array_equal(got != 0, want != 0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert ((got != 0).sum(axis=1) <= k).all() and (got != 0).sum() > 400 * k


def test_ease_matches_direct_numpy_inverse() -> None:
    rng = np.random.default_rng(6)
    d = (rng.random((40, 15)) < 0.3).astype(np.float64)
    lam = 5.0
    p = np.linalg.inv(d.T @ d + lam * np.eye(15))
    b = p / -np.diag(p)
    np.fill_diagonal(b, 0.0)
    model = EASE(EASEConfig(n_items=15, l2=lam)).fit(csr(d))
    np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-7)
    h = (rng.random((5, 15)) < 0.5).astype(np.float64)  # a different history matrix
    s = model.score(np.arange(5), csr(h))
    np.testing.assert_allclose(s[:, 1:], h @ b, rtol=1e-5, atol=1e-6)


def test_ease_refuses_huge_catalogues() -> None:
    with pytest.raises(ValueError, match=r"60,000 items.*about 43 GB.*use itemcf"):
        EASE(EASEConfig(n_items=60_000))
    with pytest.raises(ValueError, match="use itemcf"):  # n_items inferred from the matrix
        EASE(EASEConfig()).fit(sp.csr_matrix((2, 50_002), dtype=np.float32))


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        ItemCF(ItemCFConfig(k=0))
    with pytest.raises(ValueError, match="alpha must be in"):
        ItemCF(ItemCFConfig(alpha=1.5))
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASE(EASEConfig(l2=0.0))


# ---- real data -------------------------------------------------------------------------------
def _hr_at_10(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    """HR@10, training items masked, ties counted against the model (pessimistic rank)."""
    s = scores.copy()
    s[train.nonzero()] = -np.inf
    s_sorted = np.sort(s, axis=1)
    hits = []
    for u in range(s.shape[0]):
        targets = test.indices[test.indptr[u] : test.indptr[u + 1]]
        # items scoring >= the target, the target itself included, minus one
        rank = s.shape[1] - np.searchsorted(s_sorted[u], s[u, targets], side="left") - 1
        hits.append((rank < 10).any())
    return float(np.mean(hits))


@pytest.mark.integration
def test_ml100k_itemcf_and_ease_beat_popularity(shared_data) -> None:
    raw = np.loadtxt(shared_data("ml-100k") / "u.data", dtype=np.int64, delimiter="\t")
    users, items = raw[:, 0] - 1, raw[:, 1]  # users 1..943 -> 0..942; items 1..1682 stay
    assert len(raw) == 100_000 and users.max() == 942 and items.max() == 1682
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(len(users)), users))  # random order within each user
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.searchsorted(users[order], users[order])
    n_train = np.floor(0.8 * np.bincount(users))[users]
    is_train = rank < n_train

    def matrix(mask: np.ndarray) -> sp.csr_matrix:
        ones = np.ones(mask.sum(), dtype=np.float32)
        return sp.csr_matrix((ones, (users[mask], items[mask])), shape=(943, 1683))

    train, test = matrix(is_train), matrix(~is_train)
    hr, secs = {}, {}
    for name, make in MODELS.items():
        start = time.perf_counter()
        model = make(1682).fit(train)
        secs[name] = time.perf_counter() - start
        hr[name] = _hr_at_10(model.score(np.arange(943), train), train, test)
    print(f"ml-100k random 80/20 HR@10 {hr} fit seconds {secs}")
    assert 0.3 < hr["popularity"] < hr["itemcf"] and hr["popularity"] < hr["ease"]
    assert hr["ease"] > hr["popularity"] + 0.05


def test_itemcf_scores_a_candidate_by_its_own_neighbours():
    # users: {1,2} {1,2} {1,3} {3}; cosine: s(1,2)=2/sqrt(6), s(1,3)=1/sqrt(6), s(2,3)=0.
    # k=1 keeps 1->2, 2->1, 3->1. History {3}: candidate 1's only neighbour is 2, so 1 gets 0
    # (RecBole ItemKNN); letting item 3 vote for its own neighbour 1 would give 1/sqrt(6).
    x = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=np.float32))
    model = ItemCF(ItemCFConfig(n_items=3, k=1)).fit(x)
    hist = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32))
    scores = model.score(np.array([0, 1]), hist)
    assert scores[0, 1] == 0.0 and scores[0, 2] == 0.0
    assert scores[1, 1] == pytest.approx(2 / np.sqrt(6), rel=1e-5) and scores[1, 3] == 0.0
