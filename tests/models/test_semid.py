"""SemID: finite loss with gradients, score shape and PAD, exact scores against a slow per-item
loop, the constrained beam against exact scoring and brute force, padding invariance,
save -> load, a planted next-group pattern that popularity cannot learn, and clear errors.
The run path (semantic IDs from the dataset folder) is tests/models/test_conformance.py's."""

import math

import numpy as np
import pytest
import torch

from genrec.data.batches import SeqBatch
from genrec.models.semid import SemID, SemIDConfig
from genrec.semantic_ids.trie import brute_force_topk

N_ITEMS = 12
SIZES = (3, 2, 2, 2)
# 12 items, 3 levels + a dedup level: items 11 and 12 share their first three tokens
CODES = torch.tensor([[-1, -1, -1, -1],
                      [0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0],
                      [1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0], [2, 0, 0, 0], [2, 0, 1, 0],
                      [2, 1, 1, 0], [2, 1, 1, 1]])
INPUTS = ["codes", "id", "both"]


def model(codes=CODES, sizes=SIZES, **kw) -> SemID:
    torch.manual_seed(0)
    cfg = dict(n_items=len(codes) - 1, id_sizes=sizes, max_len=6, dim=16, n_layers=2, n_heads=2,
               dropout=0.0)
    m = SemID(SemIDConfig(**{**cfg, **kw}))
    m.set_semantic_ids(codes)
    return m


def batch() -> SeqBatch:
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 9], [0, 0, 0, 0, 0, 10]])
    targets = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 8, 9, 11], [0, 0, 0, 0, 0, 12]])
    return SeqBatch(torch.arange(3), items, targets)


def trained(**kw) -> SemID:
    """A few steps away from the initial weights, so that comparisons are not trivial."""
    m = model(**kw)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        m.loss(batch()).backward()
        opt.step()
    return m.eval()


@pytest.mark.parametrize("item_input", INPUTS)
def test_finite_loss_with_gradients_on_every_parameter(item_input):
    m = model(item_input=item_input, dropout=0.1).train()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    # untrained: about uniform per level, so the sum over levels of log K_c
    assert abs(value.item() - np.log(SIZES).sum()) < 0.3
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if m.item_emb is not None:
        assert m.item_emb.weight.grad[0].abs().sum() == 0  # PAD's embedding never learns


@pytest.mark.parametrize("decode", ["exact", "beam"])
@pytest.mark.parametrize("item_input", INPUTS)
def test_score_shape_pad_never_recommended_and_empty_histories(item_input, decode):
    m = trained(item_input=item_input, decode=decode, beam_size=5)
    items = torch.tensor([[0, 0, 0, 0, 1, 2], [0] * 6, [3] * 6, [0, 0, 0, 0, 0, 4]])
    b = SeqBatch(torch.arange(4), items)
    with torch.no_grad():
        s = m.score(b)
        empty = m.score(SeqBatch(torch.arange(2), torch.zeros(2, 0, dtype=torch.int64)))
    assert s.shape == (4, N_ITEMS + 1) and not s.isnan().any()
    assert (s[:, 0] == -math.inf).all() and (s.argmax(1) > 0).all()
    assert torch.equal(empty, s[1:2].expand(2, -1))  # no history = an all-PAD row
    if decode == "exact":
        assert torch.isfinite(s[:, 1:]).all()
    else:  # the beam's items only, never the input window's
        assert torch.isfinite(s).sum(1).tolist() == [5, 5, 5, 5]
        assert (s[0, [1, 2]] == -math.inf).all() and s[2, 3] == -math.inf


def slow_scores(m: SemID, b: SeqBatch) -> torch.Tensor:
    """Reference: one item at a time, one level at a time, softmax written out."""
    with torch.no_grad():
        h = m.encode(b.items)[:, -1].double()  # (B, D)
        logits = h @ m.heads.weight.double().T + m.heads.bias.double()  # (B, sum K_c)
    out = torch.full((len(b), N_ITEMS + 1), -math.inf, dtype=torch.float64)
    for row in range(len(b)):
        for i in range(1, N_ITEMS + 1):
            total, lo = 0.0, 0
            for c, size in enumerate(SIZES):
                z = logits[row, lo:lo + size]
                total += float(z[CODES[i, c]] - torch.log(torch.exp(z).sum()))
                lo += size
            out[row, i] = total
    return out


@pytest.mark.parametrize("item_input", INPUTS)
def test_exact_scores_equal_a_slow_per_item_loop(item_input):
    m = trained(item_input=item_input)
    b = batch()
    with torch.no_grad():
        fast = m.score(b)
    torch.testing.assert_close(fast.double(), slow_scores(m, b), atol=1e-5, rtol=0)
    # every item's probability under the factorised model: they sum to at most 1
    assert (fast[:, 1:].exp().sum(1) <= 1 + 1e-5).all()


def test_beam_with_every_item_agrees_with_exact_scoring_and_brute_force():
    m = trained()
    b = batch()
    with torch.no_grad():
        exact = m.score(b)  # (B, N + 1): every item, history included
        ids, scores = m.generate(b, k=N_ITEMS - 6, beam_size=N_ITEMS)
        levels = m.level_logp(m.last_state(b))
    # exact ranking with the input window masked (the beam never returns it), ties to lower id
    masked = exact.scatter(1, b.items, -math.inf)
    for row in range(len(b)):
        order = sorted(range(1, N_ITEMS + 1), key=lambda i: (-masked[row, i].item(), i))
        n = int(torch.isfinite(scores[row]).sum())
        assert ids[row, :n].tolist() == order[:n]
        torch.testing.assert_close(scores[row, :n], masked[row, ids[row, :n]], atol=1e-5, rtol=0)
    assert int(torch.isfinite(scores[0]).sum()) == N_ITEMS - 6  # row 0 excludes 6 items

    def step(tokens, parents):  # stateless: the same per-level log-probs whatever the prefix
        return levels[tokens.shape[2]][:, None, :].expand(-1, tokens.shape[1], -1)

    ref_ids, ref_scores = brute_force_topk(step, m.trie(), len(b), N_ITEMS - 6, exclude=b.items)
    assert torch.equal(ids, ref_ids.clamp(min=0))
    finite = torch.isfinite(ref_scores)
    torch.testing.assert_close(scores[finite].double(), ref_scores[finite], atol=1e-5, rtol=0)


def test_beam_mode_scores_are_the_exact_scores_of_the_beam_items():
    exact_model = trained()
    beam_model = trained(decode="beam", beam_size=4)
    b = batch()
    with torch.no_grad():
        exact, beam = exact_model.score(b), beam_model.score(b)
    kept = torch.isfinite(beam)
    assert kept.sum(1).tolist() == [4, 4, 4]
    torch.testing.assert_close(beam[kept], exact[kept], atol=1e-5, rtol=0)


def test_extra_left_padding_changes_nothing_and_attention_is_causal():
    m = trained()
    with torch.no_grad():
        narrow = m.score(SeqBatch(torch.tensor([3]), torch.tensor([[4, 5]])))
        wide = m.score(SeqBatch(torch.tensor([3]), torch.tensor([[0, 0, 0, 0, 4, 5]])))
        ha = m.encode(torch.tensor([[0, 1, 2, 3, 4, 5]]))
        hb = m.encode(torch.tensor([[0, 1, 2, 3, 4, 9]]))
    torch.testing.assert_close(narrow, wide, atol=1e-5, rtol=0)
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("decode", ["exact", "beam"])
def test_save_load_gives_identical_scores(tmp_path, decode):
    m = trained(item_input="both", decode=decode, beam_size=5)
    torch.save(m.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(123)
    other = SemID(SemIDConfig(**{**m.config.__dict__}))  # codes come from the weights
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(m.score(batch()), other.eval().score(batch()))


def two_groups() -> tuple[torch.Tensor, tuple[int, ...]]:
    """16 items whose first code is their group (items 1..8: 0, 9..16: 1), second its number."""
    codes = torch.tensor([[-1, -1]] + [[(i - 1) // 8, (i - 1) % 8] for i in range(1, 17)])
    return codes, (2, 8)


@pytest.mark.parametrize("item_input,loss", [(i, "levels") for i in INPUTS]
                         + [("codes", "catalogue")])
def test_planted_next_group_pattern_is_learned_and_beats_popularity(item_input, loss):
    # users alternate between the groups, items drawn at random within a group: the next item's
    # group is known from the last one, its number is not (best HR@4: 4 of 8 items)
    codes, sizes = two_groups()
    m = model(codes, sizes, item_input=item_input, loss=loss, dim=32, n_heads=2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)

    def walks(n: int) -> np.ndarray:
        first = rng.integers(0, 2, size=(n, 1))
        group = (first + np.arange(7)) % 2  # (n, 7)
        return 1 + 8 * group + rng.integers(0, 8, size=(n, 7))

    counts = np.zeros(17)
    for _ in range(60):
        seq = walks(32)
        np.add.at(counts, seq, 1)
        b = SeqBatch(torch.arange(32), torch.from_numpy(seq[:, :-1]), torch.from_numpy(seq[:, 1:]))
        opt.zero_grad()
        m.loss(b).backward()
        opt.step()
    m.eval()
    test = walks(200)
    with torch.no_grad():
        s = m.score(SeqBatch(torch.arange(200), torch.from_numpy(test[:, :-2])))
    target, last = torch.from_numpy(test[:, -2]), torch.from_numpy(test[:, -3])
    top = s.topk(8, dim=1).indices
    right_group = ((top - 1) // 8 != (last[:, None] - 1) // 8).float().mean()
    assert right_group >= 0.95
    counts[0] = -1
    popular = torch.from_numpy(np.argsort(-counts, kind="stable")[:4])
    hr_model = (s.topk(4, dim=1).indices == target[:, None]).any(1).float().mean()
    hr_popular = (popular[None] == target[:, None]).any(1).float().mean()
    assert hr_model > hr_popular + 0.1, (hr_model, hr_popular)


def test_catalogue_loss_is_cross_entropy_over_the_items_exact_scores():
    # the catalogue loss renormalises the exact scores over the real items: CE of score()'s
    # columns 1..N (summed per-level log-probs) at every position with a target
    m = trained(loss="catalogue")
    b = batch()
    with torch.no_grad():
        h = m.encode(b.items)
        mask = b.targets > 0
        want = torch.nn.functional.cross_entropy(m.exact_scores(h[mask]), b.targets[mask] - 1)
        torch.testing.assert_close(m.loss(b), want, atol=1e-5, rtol=0)
        # an item without training interactions (1: no target of the batch) sits out the softmax
        counts = torch.ones(N_ITEMS + 1, dtype=torch.long)
        counts[1] = 0
        m.set_item_counts(counts)
        scores = m.exact_scores(h[mask])
        scores[:, 0] = -math.inf
        want = torch.nn.functional.cross_entropy(scores, b.targets[mask] - 1)
        torch.testing.assert_close(m.loss(b), want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="counts must have shape"):
        m.set_item_counts(torch.ones(3))


def test_output_id_vectors_train_seen_items_and_leave_unseen_ones_on_their_codes():
    # item_output = "both": starts as the codes-only model; after training, an item that sits
    # out the softmax (no training interaction) still has a zero ID vector, the others moved
    base, both = trained(loss="catalogue"), model(loss="catalogue", item_output="both")
    both.load_state_dict({**base.state_dict(), "out_emb": both.out_emb.detach()})
    b = batch()
    with torch.no_grad():
        h = both.encode(b.items)[:, -1]
        torch.testing.assert_close(both.exact_scores(h).softmax(-1),
                                   base.exact_scores(h).softmax(-1), atol=1e-5, rtol=0)
    counts = torch.ones(N_ITEMS + 1, dtype=torch.long)
    counts[1] = 0
    both.set_item_counts(counts)
    opt = torch.optim.AdamW(both.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad()
        both.loss(b).backward()
        opt.step()
    assert (both.out_emb[0] == 0).all() and both.out_emb[1:].abs().sum() > 0
    with pytest.raises(ValueError, match="needs loss = \"catalogue\" and decode = \"exact\""):
        SemIDConfig(n_items=5, id_sizes=(2,), item_output="both").validate()


def test_scoring_reuses_item_vectors_until_a_weight_changes():
    # item_output = "both" scores with (N, D) item vectors; without gradients they are kept
    # between calls, and an optimiser step or a weight load must rebuild them
    m = model(loss="catalogue", item_output="both").eval()
    h = m.encode(batch().items)[:, -1].detach()

    def fresh() -> torch.Tensor:
        weight, bias = m.item_vectors()
        return h @ weight.T + bias

    with torch.no_grad():
        first = m.exact_scores(h)
        kept = m._scoring[1][0]
        m.exact_scores(h)
        assert m._scoring[1][0] is kept  # the same vectors, not rebuilt
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    opt.zero_grad()
    m.loss(batch()).backward()
    opt.step()
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.exact_scores(h), fresh())
        assert not torch.allclose(m.exact_scores(h), first)
        other = model(loss="catalogue", item_output="both")
        other.out_emb.normal_()
        other.heads.weight.normal_()
        m.load_state_dict(other.state_dict())
        torch.testing.assert_close(m.exact_scores(h), fresh())


def test_missing_semantic_ids_and_bad_options_name_the_fix():
    with pytest.raises(ValueError, match="genrec semantic-ids build"):
        SemID(SemIDConfig(n_items=5))
    with pytest.raises(ValueError, match="n_items \\+ 1, levels"):
        model().set_semantic_ids(CODES[:5])
    with pytest.raises(ValueError, match="item_input 'text' is not one of codes, id, both"):
        SemIDConfig(n_items=5, id_sizes=(2,), item_input="text").validate()
    with pytest.raises(ValueError, match="decode 'greedy' is not one of exact, beam"):
        SemIDConfig(n_items=5, id_sizes=(2,), decode="greedy").validate()
    with pytest.raises(ValueError, match="loss 'bpr' is not one of levels, catalogue"):
        SemIDConfig(n_items=5, id_sizes=(2,), loss="bpr").validate()
    with pytest.raises(ValueError, match="targets"):
        model().loss(SeqBatch(torch.arange(1), torch.tensor([[1, 2]])))
