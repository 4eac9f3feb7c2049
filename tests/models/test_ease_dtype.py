"""EASE's float32 inversion (Cholesky, in place) against the float64 path and a direct inverse."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.models.ease import EASE, EASEConfig, _inverse_in_place


def _matrix(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    """users x (n_items+1) binary CSR, column 0 (PAD) empty."""
    dense = (np.random.default_rng(seed).random((n_users, n_items)) < density).astype(np.float32)
    return sp.csr_matrix(np.hstack([np.zeros((n_users, 1), np.float32), dense]))


def test_inverse_in_place_mirrors_every_block() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((23, 23))
    g = np.asfortranarray(a @ a.T + 23 * np.eye(23))
    want = np.linalg.inv(g)
    got = _inverse_in_place(g.copy(order="F"), block=5)  # 5 does not divide 23: a ragged block
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("l2", [1.0, 50.0])
def test_float32_matches_float64(l2: float) -> None:
    train, history = _matrix(300, 120, 0.08, seed=1), _matrix(40, 120, 0.1, seed=2)
    m64 = EASE(EASEConfig(n_items=120, l2=l2, dtype="float64")).fit(train)
    m32 = EASE(EASEConfig(n_items=120, l2=l2, dtype="float32")).fit(train)
    assert m32.weights.dtype == np.float32 and m32.weights.flags.c_contiguous
    assert np.all(np.diag(m32.weights) == 0)
    scale = np.abs(m64.weights).max()
    np.testing.assert_allclose(m32.weights, m64.weights, rtol=1e-4, atol=1e-4 * scale)
    users = np.arange(40)
    s64, s32 = m64.score(users, history), m32.score(users, history)
    np.testing.assert_allclose(s32[:, 1:], s64[:, 1:], rtol=1e-4, atol=1e-4 * scale)
    # the same top-10 for (nearly) every user: float32 changes scores, not the model
    top = lambda s: np.argsort(-s[:, 1:], axis=1, kind="stable")[:, :10]  # noqa: E731
    assert (top(s32) == top(s64)).all(axis=1).mean() >= 0.9


def test_dtype_is_checked() -> None:
    with pytest.raises(ValueError, match=r"dtype must be one of \['float64', 'float32'\]"):
        EASE(EASEConfig(dtype="float16"))
    with pytest.raises(ValueError, match=r"60,000 items.*about 14 GB"):
        EASE(EASEConfig(n_items=60_000, dtype="float32"))



def test_large_matrices_are_factorised_on_one_blas_thread(monkeypatch) -> None:
    # past _MULTI_THREAD_MAX_ROWS the Cholesky runs under a 1-thread BLAS limit (the shipped
    # OpenBLAS crashes in multi-threaded dpotrf on ~16k rows); the inverse is the same
    import scipy.linalg.lapack
    from threadpoolctl import threadpool_info

    from genrec.models import ease

    rng = np.random.default_rng(0)
    a = rng.random((40, 8))
    g = a @ a.T + 40 * np.eye(40)
    threads: list[int] = []
    real = scipy.linalg.lapack.get_lapack_funcs

    def spying(names, arrays):
        potrf, potri = real(names, arrays)

        def spy(*args, **kw):
            threads.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return potrf(*args, **kw)

        return spy, potri

    monkeypatch.setattr(scipy.linalg.lapack, "get_lapack_funcs", spying)
    monkeypatch.setattr(ease, "_MULTI_THREAD_MAX_ROWS", 10)
    inv = _inverse_in_place(np.asfortranarray(g.copy()))
    np.testing.assert_allclose(inv, np.linalg.inv(g), atol=1e-10)
    assert threads and set(threads) == {1}
