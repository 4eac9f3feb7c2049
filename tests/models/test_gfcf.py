"""GF-CF against a slow dense numpy reference of the paper's formula (STYLE #13), by hand on a
tiny case, and its edges: isolated users and items, bad settings, save -> load, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import genrec.models.gfcf as gfcf
from genrec.models.gfcf import GFCF, GFCFConfig


def reference_scores(train: np.ndarray, history: np.ndarray, alpha: float, k: int) -> np.ndarray:
    """Dense float64 GF-CF, straight from the paper: (B, N) scores over items 1..N.

    ``train`` and ``history`` are users x (N + 1) with column 0 = PAD; zero degrees give 0."""
    r = (train[:, 1:] > 0).astype(np.float64)  # (U, N)
    h = (history[:, 1:] > 0).astype(np.float64)  # (B, N)
    d_user, d_item = r.sum(axis=1), r.sum(axis=0)
    inv_u = np.array([1 / np.sqrt(d) if d > 0 else 0.0 for d in d_user])
    inv_i = np.array([1 / np.sqrt(d) if d > 0 else 0.0 for d in d_item])
    r_norm = np.diag(inv_u) @ r @ np.diag(inv_i)  # R~
    vt = np.linalg.svd(r_norm)[2][:k]  # (k, N): rows by singular value, largest first
    linear = r_norm.T @ r_norm  # P~
    ideal = np.diag(inv_i) @ vt.T @ vt @ np.diag(np.sqrt(d_item))
    return h @ linear + alpha * h @ ideal


def planted(seed: int, n_users: int = 30, n_items: int = 12, density: float = 0.3) -> np.ndarray:
    """A random users x (n_items + 1) binary matrix, PAD column empty, with user 0 and item 1
    isolated (no interaction)."""
    x = (np.random.default_rng(seed).random((n_users, n_items + 1)) < density).astype(np.float32)
    x[:, 0] = 0.0
    x[0, :] = 0.0  # isolated user
    x[:, 1] = 0.0  # isolated item
    return x


def fitted(x: np.ndarray, **params) -> GFCF:
    return GFCF(GFCFConfig(n_items=x.shape[1] - 1, **params)).fit(sp.csr_matrix(x))


def test_a_hand_computed_case():
    # users: {1, 2}, {1, 3}, {1}, {2, 3}; item degrees 3, 2, 2 (sum 7), user degrees 2, 2, 1, 2.
    # P~[i, j] = sum_u x_ui x_uj / (d_u sqrt(d_i d_j)); user 0's row sums rows 1 and 2 of P~:
    #   item 1: 2/3 + 1/(2 sqrt 6), item 2: 1/(2 sqrt 6) + 1/2, item 3: 1/(2 sqrt 6) + 1/4.
    # k = 1: V is sqrt(d_i / 7), so the ideal filter gives |r_u| d_j / 7 = 2 d_j / 7.
    x = np.array([[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32)
    c = 1 / (2 * np.sqrt(6))
    expected = np.array([2 / 3 + c, c + 1 / 2, c + 1 / 4]) + 0.3 * 2 * np.array([3, 2, 2]) / 7
    got = fitted(x, k=1, alpha=0.3).score(np.array([0]), sp.csr_matrix(x))
    assert got[0, 0] == -np.inf
    np.testing.assert_allclose(got[0, 1:], expected, rtol=1e-5)
    np.testing.assert_allclose(reference_scores(x, x[:1], 0.3, 1)[0], expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("alpha,k", [(0.0, 3), (0.3, 1), (0.3, 5), (1.0, 8)])
def test_scores_agree_with_the_dense_reference(alpha, k, dtype):
    x = planted(seed=k)
    # the top-k subspace is unique only when s_k > s_k+1: check the test case has that gap
    r = x[:, 1:]
    du, di = r.sum(1), r.sum(0)
    norm = r / np.sqrt(np.where(du > 0, du, 1))[:, None] / np.sqrt(np.where(di > 0, di, 1))
    sv = np.linalg.svd(norm, compute_uv=False)
    assert sv[k - 1] - sv[k] > 1e-3
    users = np.arange(x.shape[0])
    got = fitted(x, k=k, alpha=alpha, dtype=dtype).score(users, sp.csr_matrix(x))
    want = reference_scores(x, x, alpha, k)
    tol = 1e-4 if dtype == "float32" else 1e-6  # scores are float32 either way
    np.testing.assert_allclose(got[:, 1:], want, rtol=tol, atol=tol)
    assert (got[:, 0] == -np.inf).all()


def test_isolated_users_and_items_get_finite_zero_scores():
    x = planted(seed=3)
    m = fitted(x, k=4)
    history = x.copy()
    history[2, 1] = 1.0  # an explicit history may hold the isolated item: it adds nothing
    scores = m.score(np.arange(x.shape[0]), sp.csr_matrix(history))
    assert np.isfinite(scores[:, 1:]).all()
    np.testing.assert_array_equal(scores[0, 1:], 0.0)  # user 0: empty history
    np.testing.assert_array_equal(scores[:, 1], 0.0)  # item 1: nobody trained on it
    np.testing.assert_allclose(scores[2], m.score(np.array([2]), sp.csr_matrix(x))[0], rtol=1e-6)


@pytest.mark.parametrize("params,match", [
    ({"k": 0}, r"params.k must be >= 1"),
    ({"alpha": -0.1}, r"params.alpha must be a finite number >= 0"),
    ({"alpha": float("nan")}, r"params.alpha must be a finite number >= 0"),
    ({"dtype": "float16"}, r"dtype must be one of"),
])
def test_bad_settings_fail_at_construction(params, match):
    with pytest.raises(ValueError, match=match):
        GFCF(GFCFConfig(n_items=12, **params))


def test_a_k_above_what_the_matrix_allows_fails_before_any_work():
    x = planted(seed=0)  # 30 users x 12 items: k <= 11
    with pytest.raises(ValueError, match=r"params.k 5000 is more than the matrix allows "
                                         r"\(min\(n_users, n_items\) - 1 = min\(30, 12\) - 1 = "
                                         r"11\); lower params.k"):
        fitted(x, k=5000)
    fitted(x, k=11 - 1)  # within the bound and the rank (item 1 is isolated: rank <= 11)


def test_a_k_above_the_rank_fails_clearly():
    x = planted(seed=0)
    x[:, 2] = 0.0  # items 1 and 2 are isolated: R~ has rank <= 10 of 12 items, so s_11 = 0
    with pytest.raises(ValueError, match=r"params.k 11 is more than the rank"):
        fitted(x, k=11)


def test_save_then_load_gives_identical_scores(tmp_path):
    x = planted(seed=5)
    m = fitted(x, k=4)
    np.savez(tmp_path / "model.npz", **m.state_dict())
    again = GFCF(GFCFConfig(n_items=x.shape[1] - 1, k=4))
    with np.load(tmp_path / "model.npz", allow_pickle=False) as z:
        again.load_state_dict({k: z[k] for k in z.files})
    users, history = np.arange(x.shape[0]), sp.csr_matrix(x)
    np.testing.assert_array_equal(again.score(users, history), m.score(users, history))


def test_loading_filters_of_another_shape_fails_clearly():
    state = fitted(planted(seed=5), k=4).state_dict()
    with pytest.raises(ValueError, match="another dataset or with another params.k"):
        GFCF(GFCFConfig(n_items=12, k=3)).load_state_dict(state)
    with pytest.raises(ValueError, match="another dataset"):
        GFCF(GFCFConfig(n_items=13, k=4)).load_state_dict(state)


def test_fitting_twice_gives_identical_filters():
    x = sp.csr_matrix(planted(seed=6))
    a, b = fitted(x.toarray(), k=5), fitted(x.toarray(), k=5)
    np.testing.assert_array_equal(a.v, b.v)
    np.testing.assert_array_equal(a.score(np.arange(30), x), b.score(np.arange(30), x))


def test_scoring_in_small_chunks_gives_the_same_scores(monkeypatch):
    x = planted(seed=7)
    m = fitted(x, k=4)
    users, history = np.arange(x.shape[0]), sp.csr_matrix(x)
    whole = m.score(users, history)
    monkeypatch.setattr(gfcf, "_CHUNK_CELLS", 25)  # two users (12 items) per chunk
    np.testing.assert_allclose(m.score(users, history), whole, rtol=1e-6)
    np.testing.assert_allclose(m.score(users[::-1], history), whole[::-1], rtol=1e-6)


def reference_sharpened(train, history, alpha, k, t_s, steps):
    """BSPM's sharpening literally: RK4 steps of ds/dt = -s P~ from the GF-CF score."""
    r = (train[:, 1:] > 0).astype(np.float64)
    d_user, d_item = r.sum(axis=1), r.sum(axis=0)
    inv_u = np.array([1 / np.sqrt(d) if d > 0 else 0.0 for d in d_user])
    inv_i = np.array([1 / np.sqrt(d) if d > 0 else 0.0 for d in d_item])
    r_norm = np.diag(inv_u) @ r @ np.diag(inv_i)
    p = r_norm.T @ r_norm
    f = lambda y: -y @ p  # noqa: E731
    s, h = reference_scores(train, history, alpha, k), t_s / steps
    for _ in range(steps):
        k1 = f(s)
        k2 = f(s + h / 2 * k1)
        k3 = f(s + h / 2 * k2)
        k4 = f(s + h * k3)
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return s


@pytest.mark.parametrize("t_s,steps", [(2.5, 1), (1.0, 3)])
def test_bspm_sharpening_matches_literal_rk4(t_s, steps):
    x = planted(3)
    model = fitted(x, alpha=0.2, k=4, sharpen=t_s, sharpen_steps=steps, dtype="float64")
    got = model.score(np.arange(x.shape[0]), sp.csr_matrix(x))[:, 1:]
    np.testing.assert_allclose(got, reference_sharpened(x, x, 0.2, 4, t_s, steps), rtol=1e-6,
                               atol=1e-8)


def test_bspm_settings_are_checked():
    with pytest.raises(ValueError, match="sharpen"):
        GFCFConfig(sharpen=-1.0).validate()
    with pytest.raises(ValueError, match="sharpen_steps"):
        GFCFConfig(sharpen=1.0, sharpen_steps=0).validate()


# ---- text term (params.text_weight) -------------------------------------------------------------
def text_vectors(n_items: int, dim: int = 6, absent: tuple[int, ...] = (5,), seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Random (n_items + 1, dim) vectors, row 0 (PAD) and the ``absent`` items zero; present."""
    v = np.random.default_rng(seed).normal(size=(n_items + 1, dim)).astype(np.float32)
    present = np.ones(n_items + 1, dtype=bool)
    present[[0, *absent]] = False
    v[~present] = 0.0
    return v, present


def with_text(x: np.ndarray, vectors: np.ndarray, present: np.ndarray, **params) -> GFCF:
    m = GFCF(GFCFConfig(n_items=x.shape[1] - 1, content="test", **params))
    m.set_content(vectors, present)
    return m.fit(sp.csr_matrix(x))


def reference_text(history: np.ndarray, vectors: np.ndarray, present: np.ndarray, side: str
                   ) -> np.ndarray:
    """The text term (B, N) straight from its definition, user by user, item by item."""
    z = [v / np.linalg.norm(v) if p else None for v, p in zip(vectors[1:], present[1:])]
    out = np.zeros((history.shape[0], len(z)))
    for b, row in enumerate(history[:, 1:] > 0):
        hist = [i for i in np.flatnonzero(row) if z[i] is not None]
        for j, zj in enumerate(z):
            if zj is None or not hist:
                continue
            if side in ("item", "both"):  # mean cosine to the other history items
                out[b, j] += sum(float(z[i] @ zj) for i in hist if i != j) / len(hist)
            if side in ("user", "both"):  # cosine to the mean history vector
                mean = np.mean([z[i] for i in hist], axis=0)
                out[b, j] += float(mean @ zj) / np.linalg.norm(mean)
    return out


@pytest.mark.parametrize("side", ["item", "user", "both"])
def test_the_text_term_agrees_with_its_definition(side, monkeypatch):
    x = planted(seed=8)
    vectors, present = text_vectors(x.shape[1] - 1)
    plain = fitted(x, k=4, alpha=0.3)
    m = with_text(x, vectors, present, k=4, alpha=0.3, text_weight=0.5, text_side=side)
    monkeypatch.setattr(gfcf, "_CHUNK_CELLS", 40)  # three users (12 items) per chunk
    users, history = np.arange(x.shape[0]), sp.csr_matrix(x)
    got = m.score(users, history)[:, 1:] - plain.score(users, history)[:, 1:]
    np.testing.assert_allclose(got, 0.5 * reference_text(x, vectors, present, side), atol=1e-5)
    np.testing.assert_array_equal(got[0], 0.0)  # user 0 has no history: no text term
    np.testing.assert_array_equal(got[:, 4], 0.0)  # item 5 has no vector (column 4)


@pytest.mark.parametrize("side", ["item", "user", "both"])
def test_beta_zero_gives_exactly_the_scores_without_text(side):
    x = planted(seed=9)
    vectors, present = text_vectors(x.shape[1] - 1)
    m = with_text(x, vectors, present, k=4, text_weight=0.0, text_side=side)
    users, history = np.arange(x.shape[0]), sp.csr_matrix(x)
    np.testing.assert_array_equal(m.score(users, history), fitted(x, k=4).score(users, history))


@pytest.mark.parametrize("side", ["item", "user", "both"])
@pytest.mark.parametrize("linear", ["normalized", "ease"])
def test_a_cold_item_like_the_history_ranks_above_unrelated_cold_items(side, linear):
    # items 1, 2, 3 have no training interaction; text = one-hot genre. User 1's history is all
    # of genre 0, cold item 1 too; cold items 2 and 3 are of genres the user never had.
    x = planted(seed=10)
    x[:, 1:4] = 0.0
    genre = np.array([0, 0, 1, 2] + [1 + i % 3 for i in range(4, x.shape[1])])
    x[1, 1:] = 0.0
    x[1, [4, 7, 10]] = 1.0
    genre[[4, 7, 10]] = 0
    vectors = np.eye(4, dtype=np.float32)[genre]
    vectors[0] = 0.0
    present = np.arange(x.shape[1]) > 0
    m = with_text(x, vectors, present, k=3, text_weight=0.1, text_side=side, linear=linear)
    scores = m.score(np.array([1]), sp.csr_matrix(x))[0]
    plain = fitted(x, k=3, linear=linear).score(np.array([1]), sp.csr_matrix(x))[0]
    np.testing.assert_array_equal(plain[1:4], 0.0)  # without text, cold items get nothing
    assert scores[1] > 0 and scores[1] > scores[2] and scores[1] > scores[3]


def test_save_then_load_keeps_the_text_vectors(tmp_path):
    x = planted(seed=11)
    vectors, present = text_vectors(x.shape[1] - 1)
    m = with_text(x, vectors, present, k=4, text_weight=0.3, text_side="both")
    np.savez(tmp_path / "model.npz", **m.state_dict())
    again = GFCF(GFCFConfig(n_items=x.shape[1] - 1, k=4, text_weight=0.3, text_side="both",
                            content="test", content_dim=vectors.shape[1]))  # no set_content
    with np.load(tmp_path / "model.npz", allow_pickle=False) as z:
        again.load_state_dict({k: z[k] for k in z.files})
    users, history = np.arange(x.shape[0]), sp.csr_matrix(x)
    np.testing.assert_array_equal(again.score(users, history), m.score(users, history))
    no_text = fitted(x, k=4).state_dict()
    with pytest.raises(ValueError, match="no text vectors but params.text_weight > 0"):
        GFCF(GFCFConfig(n_items=x.shape[1] - 1, k=4, text_weight=0.3,
                        content="test")).load_state_dict(no_text)


@pytest.mark.parametrize("params,match", [
    ({"text_side": "items"}, r"params.text_side must be one of \['item', 'user', 'both'\], "
                             r"got 'items'"),
    ({"text_weight": -1.0}, r"params.text_weight must be a finite number >= 0"),
    ({"text_weight": 0.1}, r"params.text_weight > 0 needs params.content"),
])
def test_bad_text_settings_fail_with_one_line(params, match):
    with pytest.raises(ValueError, match=match) as err:
        GFCF(GFCFConfig(n_items=12, **params))
    assert "\n" not in str(err.value)


def test_text_without_vectors_or_with_the_wrong_shape_fails_clearly():
    x = planted(seed=12)
    m = GFCF(GFCFConfig(n_items=12, k=3, text_weight=0.1, content="test")).fit(sp.csr_matrix(x))
    with pytest.raises(RuntimeError, match="no text vectors: call set_content"):
        m.score(np.array([1]), sp.csr_matrix(x))
    with pytest.raises(ValueError, match=r"text vectors have shape \(12, 6\); this config "
                                         r"expects \(13, C\)"):
        m.set_content(np.ones((12, 6)))


def test_runs_reads_the_vectors_counts_the_missing_and_reloads_without_the_file(tmp_path):
    from genrec.features.store import save_vectors
    from genrec.runs import evaluate_run, load_run, make_config, train
    from tests.models.test_bpr import block_dataset

    ds = block_dataset(n_blocks=3, users_per_block=8)
    ds.save(tmp_path / "blocks")
    ids = [str(i) for i in ds.item_ids[1:]]
    save_vectors(ds, "enc", ids[4:], np.random.default_rng(0).normal(size=(len(ids) - 4, 5)), {})
    sets = [f"data.name={tmp_path / 'blocks'}", "data.split=ratio", "params.k=4",
            "params.content=enc", "params.text_weight=0.2", "params.text_side=both",
            "eval.ks=[10]"]
    run = train(make_config("gfcf", sets), tmp_path / "run")
    assert run.info["content"]["n_without_vector"] == 4 and run.info["content"]["dim"] == 5
    assert "no text term" in run.info["content"]["fallback"]
    (tmp_path / "blocks" / "item_vectors" / "enc.parquet").unlink()
    again = load_run(tmp_path / "run")
    assert evaluate_run(again, "test").metrics["NDCG@10"] == pytest.approx(
        run.info["metrics"]["test"]["NDCG@10"])
