"""HSTU: fast attention vs the loop reference, time buckets by hand, the model conformance checks
(finite loss with gradients per loss, score shape, PAD never recommended, padding invariance,
causality, save -> load) and a planted "i is followed by i + 1" pattern learned in a short loop.
"""

from __future__ import annotations

import pytest
import torch

from genrec.data.batches import SeqBatch
from genrec.models.hstu import (HSTU, HSTUConfig, hstu_attention, hstu_attention_reference,
                                time_buckets)
from genrec.training import TrainConfig, fit

N_ITEMS = 20


def random_batch(gen: torch.Generator, B: int = 4, L: int = 8, n_items: int = N_ITEMS,
                 targets: bool = True) -> SeqBatch:
    """Left-padded random sequences with lengths 2..L, timestamps growing by varied gaps."""
    lengths = torch.randint(2, L + 1, (B,), generator=gen)
    lengths[0] = L  # one full row
    valid = torch.arange(L)[None, :] >= (L - lengths)[:, None]  # (B, L)
    items = torch.randint(1, n_items + 1, (B, L), generator=gen) * valid
    gaps = torch.tensor([0, 1, 7, 300, 86_400, 10**7])[torch.randint(0, 6, (B, L), generator=gen)]
    times = (1_000_000_000 + gaps.cumsum(1)) * valid
    tgt = torch.randint(1, n_items + 1, (B, L), generator=gen) * valid if targets else None
    return SeqBatch(torch.arange(B), items, tgt, times)


def model(**kw) -> HSTU:
    torch.manual_seed(kw.pop("seed", 0))
    kw = {"n_items": N_ITEMS, "max_len": 12, "dim": 16, "n_heads": 2, "dropout": 0.1,
          "n_negatives": 8, "n_time_buckets": 16} | kw
    return HSTU(HSTUConfig(**kw))


# ---- attention and time buckets ------------------------------------------------------------
def test_time_buckets_hand_computed():
    # gap -> floor(ln(max(gap, 1)) / 0.301): 0, 1 -> 0; 2 -> 2.30 -> 2; 10 -> 7.65 -> 7;
    # 1000 -> 22.9 -> 22; 1e9 -> 68.8, clipped to 50
    t = torch.tensor([[0, 0, 1, 2, 10, 1000, 10**9]])
    got = time_buckets(t, n_buckets=50)[0, :, 0]  # gaps to the first event
    assert got.tolist() == [0, 0, 0, 2, 7, 22, 50]
    assert torch.equal(time_buckets(t, 50), time_buckets(t, 50).transpose(1, 2))  # |t_i - t_j|


@pytest.mark.parametrize("with_time", [True, False])
def test_fast_attention_matches_reference(with_time):
    gen = torch.Generator().manual_seed(1)
    B, H, L, Dh, n_buckets = 3, 2, 7, 4, 40  # a 10^7 s gap (bucket 53) clips
    batch = random_batch(gen, B, L)
    valid = batch.items > 0
    assert (~valid).any() and valid.sum(1).min() < L  # padding is really exercised
    q, k, v = (torch.randn(B, H, L, Dh, generator=gen) for _ in range(3))
    pos_bias = torch.randn(10, generator=gen)
    time_bias = torch.randn(n_buckets + 1, generator=gen) if with_time else None
    buckets = time_buckets(batch.timestamps, n_buckets) if with_time else None
    if with_time:  # small gaps, mid gaps and clipped ones all occur among valid pairs
        seen = buckets[valid[:, :, None] & valid[:, None, :]]
        assert seen.min() == 0 and seen.max() == n_buckets and len(seen.unique()) > 5
    fast = hstu_attention(q, k, v, valid, pos_bias, time_bias, buckets, n=12)
    slow = hstu_attention_reference(q, k, v, valid, pos_bias, time_bias, batch.timestamps, n=12)
    assert fast.shape == (B, L, H * Dh)
    assert slow.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    assert (fast[~valid] == 0).all()  # PAD queries stay empty


# ---- conformance ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {"loss": "ce"}, {"loss": "ce", "l2_norm": False}, {"loss": "sampled"},
    {"loss": "sampled", "negatives": "in_batch", "logq": True}, {"loss": "bce"},
    {"loss": "bce", "l2_norm": False}, {"loss": "infonce", "l2_norm": False, "n_negatives": 0},
], ids=str)
def test_loss_finite_with_gradient_on_every_parameter(kw):
    m = model(**kw).train()
    value = m.loss(random_batch(torch.Generator().manual_seed(2)))
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_score_shape_and_pad_column():
    m = model().eval()
    batch = random_batch(torch.Generator().manual_seed(3), B=5, targets=False)
    with torch.no_grad():
        s = m.score(batch)
    assert s.shape == (5, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()
    assert (s.argmax(1) > 0).all()


def test_extra_left_padding_and_truncation_do_not_change_scores():
    m = model().eval()
    batch = random_batch(torch.Generator().manual_seed(4), B=4, L=6, targets=False)
    pad = lambda t, w: torch.cat([torch.zeros(len(t), w, dtype=t.dtype), t], 1)  # noqa: E731
    wider = SeqBatch(batch.users, pad(batch.items, 5), None, pad(batch.timestamps, 5))  # L = 11
    # L = 26 > max_len = 12: the newest 12 columns are kept, which still hold every item
    widest = SeqBatch(batch.users, pad(batch.items, 20), None, pad(batch.timestamps, 20))
    with torch.no_grad():
        base = m.score(batch)
        torch.testing.assert_close(m.score(wider), base, atol=1e-5, rtol=0)
        torch.testing.assert_close(m.score(widest), base, atol=1e-5, rtol=0)


def test_later_items_do_not_change_earlier_outputs():
    m = model().eval()
    batch = random_batch(torch.Generator().manual_seed(5), B=3, L=8, targets=False)
    items, times = batch.items.clone(), batch.timestamps.clone()
    items[:, -1] = items[:, -1] % N_ITEMS + 1  # another last item, 2 days later
    times[:, -1] += 2 * 86_400
    with torch.no_grad():
        before = m.encode(batch.items, batch.timestamps)
        after = m.encode(items, times)
    torch.testing.assert_close(after[:, :-1], before[:, :-1], atol=1e-6, rtol=0)
    assert (after[:, -1] - before[:, -1]).abs().max() > 1e-3  # the changed position does move


def test_save_load_gives_identical_scores(tmp_path):
    m = model(seed=0)
    m.loss(random_batch(torch.Generator().manual_seed(6))).backward()
    torch.save(m.state_dict(), tmp_path / "hstu.pt")
    other = model(seed=1)
    other.load_state_dict(torch.load(tmp_path / "hstu.pt"))
    batch = random_batch(torch.Generator().manual_seed(7), targets=False)
    with torch.no_grad():
        assert torch.equal(m.eval().score(batch), other.eval().score(batch))


def test_bad_config_and_missing_timestamps_fail_loudly():
    with pytest.raises(ValueError, match="item_repr 'bert' is not one of"):
        HSTUConfig(item_repr="bert").validate()
    with pytest.raises(ValueError, match="content_dim >= 1"):  # the builder fills content_dim
        HSTU(HSTUConfig(n_items=5, item_repr="content"))
    with pytest.raises(ValueError, match="n_heads"):
        HSTUConfig(dim=50, n_heads=3).validate()
    batch = random_batch(torch.Generator().manual_seed(8), targets=False)
    with pytest.raises(ValueError, match="timestamps"):
        model().score(SeqBatch(batch.users, batch.items, None, None))
    assert model(n_time_buckets=0).eval().score(SeqBatch(batch.users, batch.items)).shape[0] == 4


# ---- known answer --------------------------------------------------------------------------
def planted(gen: torch.Generator, B: int, L: int = 8) -> SeqBatch:
    """Runs i, i+1, i+2, ... (wrapping past N_ITEMS), random start and length, one per minute."""
    start = torch.randint(1, N_ITEMS + 1, (B, 1), generator=gen)
    seq = (start - 1 + torch.arange(L + 1)) % N_ITEMS + 1  # (B, L + 1)
    lengths = torch.randint(2, L + 1, (B,), generator=gen)
    valid = torch.arange(L)[None, :] >= (L - lengths)[:, None]
    return SeqBatch(torch.arange(B), seq[:, :-1] * valid, seq[:, 1:] * valid,
                    (60 * torch.arange(L) + 10**9) * valid)


def test_planted_successor_pattern_is_learned():
    m = model(dropout=0.0)
    gen = torch.Generator().manual_seed(9)
    result = fit(m, TrainConfig(epochs=5, lr=5e-3, seed=0),
                 lambda epoch: [planted(gen, 32) for _ in range(30)])
    assert result.epochs_run == 5 and result.history[-1]["loss"] < result.history[0]["loss"]
    test = planted(gen, 200)
    with torch.no_grad():
        top1 = m.eval().score(SeqBatch(test.users, test.items, None, test.timestamps)).argmax(1)
    hr1 = (top1 == test.targets[:, -1]).float().mean().item()
    assert hr1 > 0.8, f"HR@1 {hr1:.2f}"
