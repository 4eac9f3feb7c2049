"""Losses on tiny tensors with hand-computed values (SimpleX's CCL included)."""

import math

import pytest
import torch
import torch.nn.functional as F

from genrec.config import ConfigError
from genrec.models._losses import (bce, ccl_loss, check_ccl, cosine_contrastive, cross_entropy,
                                    in_batch_negatives, infonce, sampled_logits, sampled_softmax,
                                    sequence_loss)

# item table: row 0 = PAD (must never count), items 1..3
ITEMS = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_cross_entropy_by_hand_excludes_pad():
    h, t = torch.tensor([[2.0, 0.0]]), torch.tensor([1])
    # logits of items 1, 2, 3 = 2, 0, 2 (PAD's 18 must not enter the softmax)
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(2)))
    assert cross_entropy(h, t, ITEMS).item() == pytest.approx(expected, rel=1e-6)
    assert cross_entropy(h, t, ITEMS, temperature=2.0).item() == pytest.approx(
        -math.log(math.e / (math.e + 1 + math.e)), rel=1e-6)


def test_cross_entropy_matches_torch_on_random_rows():
    g = torch.Generator().manual_seed(0)
    h, items = torch.randn(5, 4, generator=g), torch.randn(8, 4, generator=g)
    t = torch.tensor([1, 7, 3, 3, 5])
    assert torch.allclose(cross_entropy(h, t, items), F.cross_entropy(h @ items[1:].T, t - 1))


def test_sampled_softmax_with_every_item_as_negative_is_full_ce():
    g = torch.Generator().manual_seed(1)
    h, items = torch.randn(6, 3, generator=g), torch.randn(10, 3, generator=g)
    t = torch.tensor([1, 2, 9, 4, 4, 7])
    everything = torch.arange(1, 10)  # the target itself sits among them: an accidental hit
    assert torch.allclose(sampled_softmax(h, t, items, everything), cross_entropy(h, t, items))


def test_accidental_hits_are_masked_and_logq_subtracts_log_q():
    h, t = torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([1, 3])
    neg = torch.tensor([3, 2])
    plain = sampled_logits(h, t, ITEMS, neg)
    # row 0: target 1 -> 1; negatives 3 -> 3, 2 -> 2.  row 1: target 3 -> 3; negative 3 is the target
    assert plain.tolist() == [[1.0, 3.0, 2.0], [3.0, -math.inf, 0.0]]
    log_q = torch.log(torch.tensor([1.0, 0.5, 0.25, 0.125]))
    corrected = sampled_logits(h, t, ITEMS, neg, log_q=log_q)
    finite = torch.isfinite(plain)
    shift = torch.stack([log_q[torch.tensor([1, 3, 2])], log_q[torch.tensor([3, 3, 2])]])
    assert torch.allclose(corrected[finite], (plain - shift)[finite])
    assert torch.equal(torch.isfinite(corrected), finite)


def test_infonce_two_item_hand_example():
    # cosine of h with item 1 is 1, with item 2 is 0; temperature 0.5 -> logits 2 and 0
    items = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    h = torch.tensor([[2.0, 0.0]])
    right, wrong = math.log(1 + math.exp(-2)), math.log(1 + math.exp(2))
    assert infonce(h, torch.tensor([1]), items, 0.5).item() == pytest.approx(right, rel=1e-6)
    assert infonce(h, torch.tensor([2]), items, 0.5).item() == pytest.approx(wrong, rel=1e-6)
    # the same with item 2 as an explicit sampled negative
    assert infonce(h, torch.tensor([1]), items, 0.5, negatives=torch.tensor([2])).item() == \
        pytest.approx(right, rel=1e-6)


def test_bce_one_negative_by_hand():
    h = torch.tensor([[1.0, 0.0]])
    # positive item 1 scores 1, negative item 2 scores 0
    expected = math.log(1 + math.exp(-1)) + math.log(2)
    assert bce(h, torch.tensor([1]), ITEMS, torch.tensor([2])).item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_negatives_and_dispatch():
    t = torch.tensor([2, 2, 3, 1])
    neg, log_q = in_batch_negatives(t, n_items=3)
    assert torch.equal(neg, t)
    assert torch.allclose(log_q[1:], torch.log(torch.tensor([0.25, 0.5, 0.25])))
    h = torch.randn(4, 2)
    torch.manual_seed(0)
    for name in ("ce", "sampled", "bce", "infonce"):
        for negatives in ("uniform", "in_batch"):
            value = sequence_loss(name, h, t, ITEMS, n_negatives=5, negatives=negatives, logq=True)
            assert value.ndim == 0 and torch.isfinite(value)
    assert torch.allclose(sequence_loss("infonce", h, t, ITEMS, n_negatives=0, temperature=0.1),
                          infonce(h, t, ITEMS, 0.1))
    with pytest.raises(ValueError, match="unknown loss"):
        sequence_loss("hinge", h, t, ITEMS)
    with pytest.raises(ValueError, match="n_negatives >= 1"):
        sequence_loss("sampled", h, t, ITEMS, n_negatives=0)


# ---- logit adjustment: a prior added to every logit in training ---------------------------------
def test_prior_is_added_to_every_logit_and_a_constant_prior_changes_nothing():
    g = torch.Generator().manual_seed(2)
    h, items = torch.randn(5, 3, generator=g), torch.randn(9, 3, generator=g)
    t, prior = torch.tensor([1, 8, 3, 3, 5]), torch.randn(9, generator=g)
    assert torch.allclose(cross_entropy(h, t, items, prior=prior),
                          F.cross_entropy(h @ items[1:].T + prior[1:], t - 1))
    assert torch.allclose(cross_entropy(h, t, items, prior=torch.full((9,), 4.0)),
                          cross_entropy(h, t, items))  # softmax ignores a shift of all logits
    neg = torch.tensor([2, 3, 7])  # target 3 of rows 2 and 3 is an accidental hit: stays -inf
    plain = sampled_logits(h, t, items, neg)
    adjusted = sampled_logits(h, t, items, neg, prior=prior)
    shift = torch.cat([prior[t][:, None], prior[neg][None, :].expand(5, 3)], 1)
    finite = torch.isfinite(plain)
    assert torch.allclose(adjusted[finite], (plain + shift)[finite])
    assert torch.equal(torch.isfinite(adjusted), finite)
    unit = F.normalize(h, dim=-1), F.normalize(items, dim=-1)
    assert torch.allclose(infonce(h, t, items, 0.1, prior=prior),
                          cross_entropy(*unit[:1], t, unit[1], 0.1, prior))
    with pytest.raises(ValueError, match="softmax loss"):
        sequence_loss("bce", h, t, items, prior=prior)


def test_with_the_log_popularity_as_prior_the_learned_scores_no_longer_carry_popularity():
    # free logits z (one per item) fitted to targets drawn in proportion to the counts: plain CE
    # learns z = log(count) + c, the adjusted loss learns the same score for every item
    counts = torch.tensor([0.0, 1.0, 4.0, 16.0, 64.0])  # PAD, items 1..4
    targets = torch.repeat_interleave(torch.arange(5), counts.long())
    learned = {}
    for name, prior in (("plain", None), ("adjusted", torch.log(counts.clamp(min=1)))):
        z = torch.zeros(5, 1, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.1)
        for _ in range(500):
            opt.zero_grad()
            cross_entropy(torch.ones(len(targets), 1), targets, z, prior=prior).backward()
            opt.step()
        learned[name] = z.detach()[1:, 0]
    plain = learned["plain"] - learned["plain"].mean()
    assert torch.allclose(plain, torch.log(counts[1:]) - torch.log(counts[1:]).mean(), atol=0.05)
    assert learned["adjusted"].max() - learned["adjusted"].min() < 0.05


# ---- SimpleX's cosine contrastive loss -----------------------------------------------------------
# cosines with h = (1, 0): item 1 0.6, item 2 0.8, item 3 -1, item 4 0; with h = (0, 2): item 1
# 0.8, item 2 -0.6, item 3 0, item 4 1
CCL_ITEMS = torch.tensor([[0.0, 0.0], [3.0, 4.0], [8.0, -6.0], [-1.0, 0.0], [0.0, 2.0]])


def test_ccl_by_hand_with_an_accidental_hit_masked():
    h, t, neg = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 4]), torch.tensor([2, 3, 4])
    # row 0: (1 - 0.6) + 3 / 3 * (max(0, 0.8 - 0.5) + 0 + 0) = 0.7
    # row 1: (1 - 1) + 3 / 3 * (0 + 0 + [item 4 is the row's target: masked, not 1 - 0.5]) = 0
    value = cosine_contrastive(h, t, CCL_ITEMS, neg, margin=0.5, neg_weight=3.0)
    assert value.item() == pytest.approx((0.7 + 0.0) / 2, rel=1e-6)
    # the weight multiplies the MEAN hinge: one more negative below the margin dilutes it
    value = cosine_contrastive(h[:1], t[:1], CCL_ITEMS, torch.tensor([2, 3, 4, 3]), 0.5, 3.0)
    assert value.item() == pytest.approx(0.4 + 3 * 0.3 / 4, rel=1e-6)
    # only directions count: scaling h or the items changes nothing
    assert cosine_contrastive(5 * h, t, 0.1 * CCL_ITEMS, neg, 0.5, 3.0).item() == \
        pytest.approx(0.35, rel=1e-6)


def test_ccl_margin_clips_easy_negatives_and_gradients_are_finite():
    h = torch.tensor([[1.0, 0.0]])
    items = CCL_ITEMS.clone().requires_grad_(True)
    # margin 0.7: item 2 (cos 0.8) is pushed, items 3 (-1) and 4 (0) are clipped: no gradient
    cosine_contrastive(h, torch.tensor([1]), items, torch.tensor([2, 3, 4]), 0.7, 2.0).backward()
    g = items.grad
    assert g[2].abs().sum() > 0 and g[3].abs().sum() == 0 and g[4].abs().sum() == 0
    assert g[0].abs().sum() == 0 and torch.isfinite(g).all()
    # margin 0.9: nothing is above it, only the positive part is left
    assert cosine_contrastive(h, torch.tensor([1]), CCL_ITEMS, torch.tensor([2, 3, 4]), 0.9,
                              2.0).item() == pytest.approx(0.4, rel=1e-6)
    # margin -1: nothing is clipped, the negative part is linear: w * mean(cos + 1)
    assert cosine_contrastive(h, torch.tensor([1]), CCL_ITEMS, torch.tensor([2, 3, 4]), -1.0,
                              2.0).item() == pytest.approx(0.4 + 2 * (1.8 + 0 + 1) / 3, rel=1e-6)
    # random rows, a zero row among them: the gradients stay finite
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(5, 4, generator=g)
    hidden[2] = 0.0
    hidden.requires_grad_(True)
    table = torch.randn(9, 4, generator=g).requires_grad_(True)
    value = cosine_contrastive(hidden, torch.tensor([1, 2, 3, 8, 8]), table,
                               torch.tensor([1, 4, 5, 8]), 0.0, 150.0)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(hidden.grad).all()
    assert torch.isfinite(table.grad).all() and table.grad.abs().sum() > 0


def test_ccl_loss_draws_shared_uniform_negatives_and_checks_its_settings(monkeypatch):
    import genrec.models._losses as losses

    drawn = []

    def fake(n_items, k, device):
        drawn.append((n_items, k))
        return torch.tensor([2, 3, 4])

    monkeypatch.setattr(losses, "uniform_negatives", fake)
    h, t = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    assert ccl_loss(h, t, CCL_ITEMS, 3, 0.5, 3.0).item() == pytest.approx(0.7, rel=1e-6)
    assert drawn == [(4, 3)]  # items 1..4, three of them, once for the whole batch
    with pytest.raises(ValueError, match="n_negatives >= 1"):
        ccl_loss(h, t, CCL_ITEMS, 0)
    for bad in [(0, 0.9, 150.0), (10, 1.0, 150.0), (10, -1.5, 150.0), (10, 0.9, 0.0)]:
        with pytest.raises(ConfigError, match="loss 'ccl' needs n_negatives >= 1, -1 <= margin"):
            check_ccl("m", *bad)
    check_ccl("m", 10, -1.0, 0.5)  # the edges that make sense pass
