"""SASRec conformance: finite loss with gradients everywhere, score shape and PAD, causality,
left truncation, save -> load. The planted pattern is learned in tests/training/test_trainer.py."""

import math

import pytest
import torch

from genrec.data.batches import SeqBatch
from genrec.models.sasrec import SASRec, SASRecConfig

N_ITEMS, MAX_LEN = 30, 6


def model(**kw) -> SASRec:
    torch.manual_seed(0)
    cfg = dict(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, n_layers=2, n_heads=2, dropout=0.0)
    return SASRec(SASRecConfig(**{**cfg, **kw}))


def batch() -> SeqBatch:
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 9], [0, 0, 0, 0, 0, 10]])
    targets = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 8, 9, 11], [0, 0, 0, 0, 0, 12]])
    return SeqBatch(torch.arange(3), items, targets, None)


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce", "infonce"])
def test_finite_loss_with_gradients_on_every_parameter(loss):
    m = model(loss=loss, n_negatives=8, dropout=0.2).train()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert m.item_emb.weight.grad[0].abs().sum() == 0  # PAD's embedding never learns


@pytest.mark.parametrize("loss", ["ce", "infonce"])
def test_score_shape_pad_column_and_no_nan_for_empty_histories(loss):
    m = model(loss=loss, temperature=0.5).eval()
    b = SeqBatch(torch.arange(4), torch.tensor([[0, 0, 0, 0, 1, 2], [0] * 6, [3] * 6, [0, 0, 0, 0, 0, 4]]))
    with torch.no_grad():
        s = m.score(b)
    assert s.shape == (4, N_ITEMS + 1)
    assert (s[:, 0] == -math.inf).all() and torch.isfinite(s[:, 1:]).all()
    with torch.no_grad():
        empty = m.score(SeqBatch(torch.arange(2), torch.zeros(2, 0, dtype=torch.int64)))
    assert torch.equal(empty, s[1:2].expand(2, -1))  # no history = an all-PAD row
    if loss == "infonce":  # cosine / temperature
        assert s[:, 1:].abs().max() <= 1 / 0.5 + 1e-5


def test_attention_is_causal_and_ignores_pad():
    m = model().eval()
    a = torch.tensor([[0, 0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 0, 1, 2, 3, 9]])  # differs only in the last position
    with torch.no_grad():
        ha, hb = m.encode(a), m.encode(b)
        m.item_emb.weight[0] = 5.0  # what PAD's row holds must not matter
        hc = m.encode(a)
    assert torch.allclose(ha[:, :-1], hb[:, :-1]) and not torch.allclose(ha[:, -1], hb[:, -1])
    assert torch.allclose(ha, hc)


def test_extra_left_padding_changes_nothing():
    # batches are only as wide as their longest row: positions count from the right, so the
    # same sequence scores the same at any width
    m = model().eval()
    with torch.no_grad():
        narrow = m.score(SeqBatch(torch.arange(1), torch.tensor([[4, 5]])))
        wide = m.score(SeqBatch(torch.arange(1), torch.tensor([[0, 0, 0, 0, 4, 5]])))
    assert torch.allclose(narrow, wide, atol=1e-6)


def test_left_truncation_keeps_the_most_recent_items():
    # two users share their last MAX_LEN items and differ before them: eval_batch keeps the last
    # MAX_LEN items (tests/data/test_batches.py), so both are scored identically
    m = model().eval()
    with torch.no_grad():
        s = m.score(SeqBatch(torch.arange(2), torch.tensor([[5, 6, 7, 8, 9, 10]] * 2)))
    assert torch.equal(s[0], s[1])
    with pytest.raises(ValueError, match="max_len"):
        m.encode(torch.ones(1, MAX_LEN + 1, dtype=torch.int64))


def test_save_load_gives_identical_scores(tmp_path):
    m = model(dropout=0.3)
    m.loss(batch()).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * p.grad)  # not the initial weights
    torch.save(m.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(123)
    other = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, n_layers=2, n_heads=2,
                                dropout=0.3))
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(m.eval().score(batch()), other.eval().score(batch()))


@pytest.mark.parametrize("bad,match", [({"loss": "hinge"}, "loss"), ({"dim": 10, "n_heads": 3}, "divisible"),
                                       ({"item_repr": "bert"}, "item_repr 'bert' is not one of"),
                                       ({"item_repr": "gated"}, "content_dim >= 1"),
                                       ({"dropout": 1.0}, "dropout")])
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        SASRec(SASRecConfig(**{"n_items": 5, **bad}))
