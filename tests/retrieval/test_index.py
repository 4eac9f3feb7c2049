"""faiss item index: flat equals the brute-force reference, HNSW/IVF recall against it,
history exclusion never costs a slot, save -> load, hand-computed answers and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data.dataset import DataError
from genrec.retrieval import IndexConfig, ItemIndex, exact_search, recall_at_k


@pytest.fixture(autouse=True)
def _one_thread():
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # 2 shared cores: small searches only wait on each other
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int = 2000, d: int = 16, n_queries: int = 200, seed: int = 0):
    """Unit vectors around 20 centres (like trained item embeddings) and queries near them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    x = centres[rng.integers(20, size=n)] + 0.5 * rng.normal(size=(n, d))
    q = centres[rng.integers(20, size=n_queries)] + 0.5 * rng.normal(size=(n_queries, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def history(n_queries: int, n_cols: int, per_row: int = 30, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_queries), per_row)
    cols = np.concatenate([rng.choice(np.arange(1, n_cols), per_row, replace=False)
                           for _ in range(n_queries)])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_queries, n_cols))


def test_a_hand_computed_search():
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    index = ItemIndex.build(vectors, np.array([10, 11, 12, 13]))
    scores, ids = index.search(np.array([[1.0, 1.0], [-1.0, 0.0]], dtype=np.float32), k=3)
    assert ids.tolist() == [[12, 10, 11], [13, 11, 12]]
    assert np.allclose(scores, [[1.4, 1.0, 1.0], [1.0, 0.0, -0.6]])
    # excluding 12 for the first query moves everything up; k past the catalogue pads with -1
    ex = sp.csr_matrix(([1.0], ([0], [12])), shape=(2, 14))
    _, ids = index.search(np.array([[1.0, 1.0], [-1.0, 0.0]], dtype=np.float32), 4, ex)
    assert ids.tolist() == [[10, 11, 13, -1], [13, 11, 12, 10]]


def test_flat_equals_the_brute_force_reference_with_history_excluded():
    x, q = clustered()
    ids = np.arange(1, len(x) + 1)  # item_idx: PAD (0) is never indexed
    h = history(len(q), len(x) + 1)
    exact_s, exact_i = exact_search(q, x, 100, ids, h)
    scores, found = ItemIndex.build(x, ids).search(q, 100, h)
    assert np.array_equal(found, exact_i) and np.allclose(scores, exact_s, atol=1e-5)
    assert recall_at_k(found, exact_i) == 1.0
    hit = np.asarray(h[np.repeat(np.arange(len(q)), 100), found.ravel()]).ravel()
    assert not hit.any() and (found > 0).all()  # history never returned, every slot filled
    # the reference itself: scores descending, and each row is the best 100 of the unexcluded
    assert (np.diff(exact_s, axis=1) <= 0).all()
    full = q @ x.T
    full[np.nonzero(h[:, 1:].toarray())] = -np.inf
    assert np.allclose(np.sort(full, axis=1)[:, ::-1][:, :100], exact_s, atol=1e-5)


@pytest.mark.parametrize("cfg,floor", [(IndexConfig(kind="hnsw", hnsw_m=16, ef_search=64), 0.95),
                                       (IndexConfig(kind="ivf", nprobe=8), 0.8)])
def test_approximate_indexes_recall_most_of_the_exact_top_100(cfg, floor):
    x, q = clustered()
    exact = exact_search(q, x, 100)[1]
    found = ItemIndex.build(x, config=cfg).search(q, 100)[1]
    assert floor <= recall_at_k(found, exact) <= 1.0
    if cfg.kind == "ivf":  # probing every cell is exhaustive: exact again
        every = ItemIndex.build(x, config=IndexConfig(kind="ivf", nprobe=10_000))
        assert recall_at_k(every.search(q, 100)[1], exact) == 1.0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_gives_identical_answers(kind, tmp_path):
    x, q = clustered(n=600, n_queries=20)
    h = history(len(q), len(x) + 1, per_row=5)
    index = ItemIndex.build(x, np.arange(1, len(x) + 1), IndexConfig(kind=kind, nprobe=4))
    before = index.search(q, 50, h)
    again = ItemIndex.load(index.save(tmp_path / kind))
    after = again.search(q, 50, h)
    assert again.config == index.config and len(again) == 600 and again.dim == 16
    assert np.array_equal(before[1], after[1]) and np.array_equal(before[0], after[0])


def test_exact_ties_go_to_the_smaller_id_and_recall_is_a_set_overlap():
    x = np.ones((5, 2), dtype=np.float32)
    _, ids = exact_search(np.ones((1, 2), np.float32), x, 3, np.array([9, 4, 7, 1, 3]))
    assert ids.tolist() == [[1, 3, 4]]
    found = np.array([[1, 2, 3, -1], [5, 6, 7, 8]])
    exact = np.array([[3, 2, 9, 10], [5, 6, -1, -1]])
    assert recall_at_k(found, exact) == pytest.approx((2 / 4 + 2 / 2) / 2)


def test_bad_input_names_the_problem(tmp_path):
    x = np.eye(3, dtype=np.float32)
    index = ItemIndex.build(x)
    with pytest.raises(ValueError, match=r"query vectors must be a 2-d \(rows, 3\) array"):
        index.search(np.ones((2, 4), np.float32), 1)
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 queries"):
        index.search(np.ones((2, 3), np.float32), 1, sp.csr_matrix((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ItemIndex.build(np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="index kind 'lsh' is not one of flat, hnsw, ivf"):
        ItemIndex.build(x, config=IndexConfig(kind="lsh"))
    with pytest.raises(ValueError, match=r"ids must be one per vector, shape \(3,\)"):
        ItemIndex.build(x, np.arange(2))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ids.npy").write_bytes(b"")
    with pytest.raises(DataError, match="missing index.faiss, index.json; found: ids.npy"):
        ItemIndex.load(tmp_path / "half")
