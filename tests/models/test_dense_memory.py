"""Dense item-item fits (EASE, GF-CF with linear = "ease") refuse, before any work, a catalogue
whose N x N matrix would not fit in the memory available now; and EDLAE's dropout is EASE at 0."""

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.models import _sparse
from genrec.models.ease import EASE, EASEConfig
from genrec.models.gfcf import GFCF, GFCFConfig


def _train(n_users: int = 30, n_items: int = 12, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items + 1)) < 0.3).astype(np.float32)
    x[:, 0] = 0  # PAD
    return sp.csr_matrix(x)


@pytest.mark.parametrize("make", [
    lambda: EASE(EASEConfig(l2=10.0)),
    lambda: GFCF(GFCFConfig(linear="ease", l2=10.0, k=3)),
])
def test_dense_fit_refused_when_memory_is_short(monkeypatch, make):
    monkeypatch.setattr(_sparse, "_available_bytes", lambda: 100)  # 100 bytes free
    with pytest.raises(ValueError, match=r"dense 12 x 12 item-item fit needs about .* GB"):
        make().fit(_train())


def test_dense_fit_runs_when_memory_is_unknown(monkeypatch):
    monkeypatch.setattr(_sparse, "_available_bytes", lambda: None)
    assert EASE(EASEConfig(l2=10.0)).fit(_train()).weights.shape == (12, 12)


def test_edlae_dropout_zero_is_ease_and_dropout_changes_weights():
    x = _train()
    plain = EASE(EASEConfig(l2=10.0)).fit(x).weights
    assert np.array_equal(EASE(EASEConfig(l2=10.0, dropout=0.0)).fit(x).weights, plain)
    dropped = EASE(EASEConfig(l2=10.0, dropout=0.25)).fit(x).weights
    assert not np.allclose(dropped, plain) and np.allclose(np.diag(dropped), 0)
    with pytest.raises(ValueError, match="dropout must be in"):
        EASEConfig(dropout=1.0).validate()


def test_gfcf_ease_linear_filter_is_ease_plus_ideal_filter():
    x = _train()
    users = np.arange(5)
    ease = EASE(EASEConfig(l2=10.0)).fit(x).score(users, x)
    alone = GFCF(GFCFConfig(linear="ease", l2=10.0, k=3, alpha=0.0, dtype="float64")).fit(x)
    np.testing.assert_allclose(alone.score(users, x), ease, rtol=1e-5, atol=1e-6)
    both = GFCF(GFCFConfig(linear="ease", l2=10.0, k=3, alpha=0.5, dtype="float64")).fit(x)
    assert not np.allclose(both.score(users, x)[:, 1:], ease[:, 1:])
    again = GFCF(GFCFConfig(n_items=12, linear="ease", l2=10.0, k=3, alpha=0.5, dtype="float64"))
    again.load_state_dict(both.state_dict())
    np.testing.assert_array_equal(again.score(users, x), both.score(users, x))


def test_dlae_without_the_zero_diagonal_is_i_minus_p_lambda():
    x = _train()
    dense = x.toarray()[:, 1:].astype(np.float64)
    g = dense.T @ dense
    lam = 0.25 / 0.75 * np.diag(g) + 10.0
    expected = np.eye(len(g)) - np.linalg.inv(g + np.diag(lam)) * lam[None, :]
    got = EASE(EASEConfig(l2=10.0, dropout=0.25, zero_diagonal=False)).fit(x).weights
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
