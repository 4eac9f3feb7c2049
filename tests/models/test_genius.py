"""GENIUS: the leakage test (for every expert combination and both mixes, a decoder position's
logits depend only on the history and on the items fed at that position and before it; it fails
without the causal mask), experts dropped when absent, gate usage, config errors, decoding rules
(no history item, no repeat, greedy = beam of width 1) and a planted pattern learned."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genrec.data.batches import SeqBatch
from genrec.data.sessions import SessionBatch
from genrec.models.genius import ENCODERS, EXPERTS, Genius, GeniusConfig

N_ITEMS, S, C_DIM, I_DIM = 30, 6, 5, 3
COMBOS = [list(c) for r in range(len(EXPERTS) + 1) for c in itertools.combinations(EXPERTS, r)]


def model(experts=EXPERTS, mix="gate", seed=0, **kw) -> Genius:
    torch.manual_seed(seed)
    dims = {"content_dim": C_DIM if "content" in experts else 0,
            "image_dim": I_DIM if "image" in experts else 0}
    cfg = GeniusConfig(n_items=N_ITEMS, max_len=8, session_len=S, dim=16, n_heads=2,
                       n_layers=1, n_decoder_layers=2, dropout=0.0, n_time_buckets=8,
                       experts=tuple(experts), mix=mix, **(dims | kw))
    m = Genius(cfg)
    gen = torch.Generator().manual_seed(1)
    if "content" in m.experts:
        vectors = torch.randn(N_ITEMS + 1, C_DIM, generator=gen)
        vectors[[0, 7]] = 0.0  # PAD and item 7 have no text vector
        m.set_content(vectors)
    if "image" in m.experts:
        m.set_image(torch.randn(N_ITEMS + 1, I_DIM, generator=gen))
    return m.eval()


def batch(seed: int = 0, B: int = 3) -> SessionBatch:
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, 8), generator=gen)
    items[1, :3] = 0  # a shorter, left-padded history
    targets = torch.randint(1, N_ITEMS + 1, (B, S), generator=gen)
    targets[2, 4:] = 0  # a shorter session
    times = torch.arange(8).expand(B, 8) * 1000 * (items > 0)
    return SessionBatch(torch.arange(B), items, targets, times)


def changed_from(b: SessionBatch, t: int, seed: int) -> SessionBatch:
    """``b`` with every target at position >= t replaced (inputs at positions > t change)."""
    gen = torch.Generator().manual_seed(seed)
    targets = b.targets.clone()
    targets[:, t:] = (targets[:, t:] % N_ITEMS) + 1  # a different item everywhere
    targets[:, t:] = torch.where(torch.rand(targets[:, t:].shape, generator=gen) < 0.5,
                                 targets[:, t:], torch.randint(1, N_ITEMS + 1, (1,), generator=gen))
    targets[b.targets == 0] = 0
    return SessionBatch(b.users, b.items, targets, b.timestamps)


def leaks(m: Genius, b: SessionBatch) -> list[int]:
    """Positions t whose change of targets[:, t:] moved a logit at a position <= t."""
    with torch.no_grad():
        base = m(b).logits
        return [t for t in range(S) for seed in (1, 2)
                if not torch.equal(base[:, :t + 1], m(changed_from(b, t, seed)).logits[:, :t + 1])]


@pytest.mark.parametrize("mix", ["gate", "sum"])
@pytest.mark.parametrize("experts", COMBOS, ids=lambda e: "+".join(e) or "none")
def test_no_position_sees_its_own_or_a_later_target(experts, mix):
    m, b = model(experts, mix), batch()
    assert leaks(m, b) == []
    if not m.experts:
        return  # no expert: the decoder reads positions only, no item can leak
    with torch.no_grad():  # the change does reach the next position: the test can see a leak
        assert not torch.equal(m(b).logits[:, 3], m(changed_from(b, 2, 1)).logits[:, 3])
    m.causal = False  # negative control: without the mask the same check catches the leak
    assert leaks(m, b) != []


@pytest.mark.parametrize(("encoder", "start"), [("hstu", "learned"), ("sasrec", "learned"),
                                                ("sasrec", "state")])
def test_the_encoder_sees_the_history_only(encoder, start):
    m, b = model(encoder=encoder, start=start), batch()
    assert leaks(m, b) == []
    with torch.no_grad():
        mem, _ = m.encode(b.items, b.timestamps)
        mem2, _ = m.encode(changed_from(b, 0, 1).items, b.timestamps)
        assert torch.equal(mem, mem2)  # targets are not an input of the encoder
        other = SessionBatch(b.users, b.items.flip(1), b.targets, b.timestamps)
        assert not torch.equal(m(b).logits[:, 0], m(other).logits[:, 0])


def test_start_state_feeds_position_0_the_encoders_newest_state():
    m, b = model(encoder="sasrec", start="state"), batch()
    with torch.no_grad():
        memory, ignore = m.encode(b.items, b.timestamps)
        x, _ = m._inputs(Genius._shifted(b.targets), memory[:, -1])
        torch.testing.assert_close(x[:, 0], memory[:, -1] + m.pos_emb.weight[0])
        older = b.items.clone()
        older[:, 0] = (older[:, 0] % N_ITEMS) + 1  # the oldest item changes: so does the state
        other = SessionBatch(b.users, older, b.targets, b.timestamps)
        assert not torch.equal(m(b).logits[:, 0], m(other).logits[:, 0])


def test_absent_experts_are_dropped_not_zero_filled():
    m = model(["behaviour", "content", "image"], image_dim=0)  # no image vectors in this data
    assert m.experts == ["behaviour", "content"] and "image" not in m.modalities
    gate = m(batch()).gate                               # (B, S, E)
    prev = Genius._shifted(batch().targets)
    assert gate.shape == (3, S, 2)
    real = prev[:, 1:] > 0
    torch.testing.assert_close(gate[:, 1:].sum(-1)[real], torch.ones(int(real.sum())))
    no_text = prev == 7                                  # item 7 has no text vector
    if no_text.any():
        assert (gate[..., 1][no_text] == 0).all() and (gate[..., 0][no_text] == 1).all()
    assert (gate[:, 0] == 0).all()                       # BOS: no item, no expert
    m.set_content(torch.zeros(N_ITEMS + 1, C_DIM))       # no item has text: content never used
    assert (m(batch()).gate[..., 1] == 0).all()
    with pytest.raises(ValueError, match="image expert is off"):
        m.set_image(torch.zeros(N_ITEMS + 1, I_DIM))


def test_bad_configs_fail_loudly():
    for bad in ({"experts": ("behaviour", "audio")}, {"mix": "max"}, {"decode": "sample"},
                {"top_p": 0.0}, {"session_len": 0}, {"dim": 15}, {"encoder": "gru"},
                {"start": "eos"}):
        with pytest.raises(ValueError, match="genius"):
            Genius(GeniusConfig(n_items=5, **bad))


@pytest.mark.parametrize("method", ["greedy", "beam", "top_p"])
def test_generation_skips_history_and_repeats(method):
    m, b = model(), batch()
    hist = SeqBatch(b.users, b.items, None, b.timestamps)
    out = m.generate(hist, S, method)
    assert out.shape == (3, S)
    for row, items in zip(out.tolist(), b.items.tolist()):
        assert len(set(row)) == S and not set(row) & set(items) and min(row) >= 1
    m.config.allow_history = m.config.allow_repeats = True
    assert m.generate(hist, S, method).shape == (3, S)  # allowed, not required


def test_greedy_is_beam_of_width_one_and_the_first_item_is_the_top_score():
    m, b = model(beam_size=1), batch()
    hist = SeqBatch(b.users, b.items, None, b.timestamps)
    greedy = m.generate(hist, 4, "greedy")
    assert torch.equal(greedy, m.generate(hist, 4, "beam"))
    scores = m.score(hist).scatter(1, b.items, -torch.inf)
    assert torch.equal(greedy[:, 0], scores.argmax(1))


def test_a_catalogue_smaller_than_the_session_leaves_empty_slots():
    m, b = model(), batch()
    hist = SeqBatch(b.users, b.items, None, b.timestamps)
    exclude = torch.ones(3, N_ITEMS + 1, dtype=torch.bool)
    exclude[:, [3, 5]] = False  # only two items allowed
    for method in ("greedy", "beam", "top_p"):
        out = m.generate(hist, 4, method, exclude=exclude)
        assert (out[:, :2].sort(1).values == torch.tensor([3, 5])).all(), method
        assert (out[:, 2:] == -1).all(), method


def test_a_planted_session_pattern_is_learned():
    """Sessions continue the history by +1 steps (mod N): the decoder must learn to count on."""
    torch.manual_seed(0)
    m = Genius(GeniusConfig(n_items=N_ITEMS, max_len=4, session_len=3, dim=32, n_heads=2,
                            n_layers=1, n_decoder_layers=1, dropout=0.0, n_time_buckets=0,
                            experts=("behaviour",)))
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    start = torch.arange(N_ITEMS)
    seq = (start[:, None] + torch.arange(7)) % N_ITEMS + 1  # (N, 7)
    b = SessionBatch(start, seq[:, :4], seq[:, 4:])
    first = m.loss(b).item()
    for _ in range(150):
        opt.zero_grad()
        m.loss(b).backward()
        opt.step()
    assert m.loss(b).item() < first / 5
    out = m.eval().generate(SeqBatch(start, seq[:, :4]), 3)
    assert (out == seq[:, 4:]).float().mean() > 0.9


@pytest.mark.parametrize(("loss", "encoder"), [("ce", "hstu"), ("sampled", "hstu"),
                                               ("ce", "sasrec")])
def test_losses_are_finite_and_a_frozen_encoder_gets_no_gradient(loss, encoder):
    m = model(loss=loss, n_negatives=8, freeze_encoder=True, encoder=encoder).train()
    m.loss(batch()).backward()
    assert all(p.grad is None for p in m.encoder.blocks.parameters())
    assert m.encoder.item_emb.weight.grad.abs().sum() > 0  # the tied output table still learns
    m.zero_grad()
    hist = batch()
    pre = m.loss(SeqBatch(hist.users, hist.items, hist.items.roll(-1, 1), hist.timestamps))
    pre.backward()  # pre-training: the encoder's own next-item loss
    assert torch.isfinite(pre) and any(p.grad is not None for p in m.encoder.blocks.parameters())


def test_dpo_loss_is_log2_at_the_reference_and_prefers_the_chosen_session():
    from genrec.models.genius import dpo_loss

    ref_c, ref_r = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    c, r = ref_c.clone().requires_grad_(), ref_r.clone().requires_grad_()
    loss = dpo_loss(c, r, ref_c, ref_r, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (c.grad < 0).all() and (r.grad > 0).all()  # descent raises chosen, lowers rejected
    want = -torch.nn.functional.logsigmoid(torch.tensor(0.5 * (1.0 - (-1.0))))
    assert dpo_loss(ref_c + 1, ref_r - 1, ref_c, ref_r, 0.5).item() == pytest.approx(want.item())


def test_beam_search_finds_the_brute_force_best_pair():
    """With a beam as wide as the first step's candidates, beam search is exact: its 2-item
    session has the highest log-probability of all allowed pairs (distinct, not in history)."""
    m, b = model(beam_size=N_ITEMS), batch()
    hist = SeqBatch(b.users, b.items, None, b.timestamps)
    got = m.generate(hist, 2, "beam")
    for row in range(len(b)):
        allowed = [i for i in range(1, N_ITEMS + 1) if i not in b.items[row].tolist()]
        pairs = torch.tensor([(i, j) for i in allowed for j in allowed if i != j])
        n = len(pairs)
        one = SessionBatch(b.users[row].repeat(n), b.items[row].repeat(n, 1),
                           torch.cat([pairs, torch.zeros(n, S - 2, dtype=torch.long)], 1),
                           b.timestamps[row].repeat(n, 1))
        with torch.no_grad():
            best = pairs[m.session_logp(one).argmax()]
        assert got[row].tolist() == best.tolist()
