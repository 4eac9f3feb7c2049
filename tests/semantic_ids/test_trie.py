"""Prefix trie and constrained beam search against brute-force enumeration on a tiny codebook."""

import itertools
import math

import numpy as np
import pytest
import torch

from genrec.semantic_ids.trie import PrefixTrie, beam_search, brute_force_topk

SIZES = [3, 4, 2]  # three levels: 24 possible sequences


def valid_codes(n: int = 13, seed: int = 0) -> np.ndarray:
    every = np.array(list(itertools.product(*map(range, SIZES))))
    return every[np.random.default_rng(seed).choice(len(every), n, replace=False)]


def table_step(batch: int, seed: int = 1):
    """A stateless model: log-probs of level d from a random table indexed by the whole prefix."""
    g = torch.Generator().manual_seed(seed)
    tables = [torch.randn(batch, int(np.prod(SIZES[:d], dtype=int)), SIZES[d], generator=g) * 2
              for d in range(len(SIZES))]

    def key(prefix: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(prefix.shape[:-1], dtype=torch.int64)
        for d in range(prefix.shape[-1]):
            out = out * SIZES[d] + prefix[..., d]
        return out

    def step(tokens: torch.Tensor, parents):
        d = tokens.shape[-1]
        logits = tables[d].gather(1, key(tokens)[..., None].expand(-1, -1, SIZES[d]))
        return logits.log_softmax(-1)  # (B, M, V_d)

    return step, key


def cached_step(batch: int, seed: int = 1):
    """The same model, but reading only the last token and keeping its prefixes by ``parents``:
    what a model with a key/value cache does."""
    stateless, _ = table_step(batch, seed)
    state = {}

    def step(tokens: torch.Tensor, parents):
        if parents is None:
            state["prefix"] = tokens.clone()
        else:
            prev = state["prefix"].gather(1, parents[..., None].expand(-1, -1, tokens.shape[-1] - 1))
            state["prefix"] = torch.cat([prev, tokens[..., -1:]], dim=2)  # only the new token read
        return stateless(state["prefix"], None)

    return step


def test_trie_structure_and_lookup():
    codes = np.array([[1, 0, 1], [0, 3, 0], [1, 0, 0], [0, 1, 1]])
    trie = PrefixTrie(codes, ids=np.array([10, 11, 12, 13]), sizes=SIZES)
    assert len(trie) == 4 and [trie.n_nodes(d) for d in range(4)] == [1, 2, 3, 4]
    child, allowed = trie.children(torch.tensor([0]), 0)
    assert allowed[0].tolist() == [True, True, False]
    # depth 1 nodes in sorted order: (0,), (1,); node (0,) continues with tokens 1 and 3
    child, allowed = trie.children(torch.tensor([0, 1, 2]), 1)  # node 2 = the padding node
    assert allowed.tolist() == [[False, True, False, True], [True, False, False, False], [False] * 4]
    assert trie.lookup(np.array([[1, 0, 0], [0, 3, 0], [0, 3, 1], [2, 0, 0], [0, 9, 0]])).tolist() \
        == [12, 11, -1, -1, -1]
    assert trie.prefixes(2).tolist() == [[0, 1], [0, 3], [1, 0]]


def test_repeated_ids_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="dedup"):
        PrefixTrie(np.array([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match="sizes"):
        PrefixTrie(np.array([[0, 5]]), sizes=[1, 3])


@pytest.mark.parametrize("k", [1, 5, 13])
def test_wide_beam_equals_brute_force_exactly(k):
    codes = valid_codes()
    trie = PrefixTrie(codes, ids=np.arange(1, 14), sizes=SIZES)
    B = 6
    step, _ = table_step(B)
    # a beam as wide as the widest depth keeps every prefix, so the search is exhaustive
    beam = max(trie.n_nodes(d) for d in range(3))
    ids, scores, tokens = beam_search(step, trie, B, beam_size=max(beam, k), k=k)
    ref_ids, ref_scores = brute_force_topk(step, trie, B, k)
    assert torch.equal(ids, ref_ids)
    assert torch.allclose(scores.double(), ref_scores, atol=1e-5)
    assert (trie.lookup(tokens) == ids.numpy()).all()  # the tokens spell the returned items


def test_cached_step_gives_the_same_search():
    trie = PrefixTrie(valid_codes(), sizes=SIZES)
    stateless, _ = table_step(4)
    a = beam_search(stateless, trie, 4, beam_size=5)
    b = beam_search(cached_step(4), trie, 4, beam_size=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_narrow_beam_returns_only_valid_items_with_their_true_scores():
    codes = valid_codes()
    trie = PrefixTrie(codes, sizes=SIZES)
    step, _ = table_step(8, seed=3)
    ids, scores, _ = beam_search(step, trie, 8, beam_size=3)
    _, every = brute_force_topk(step, trie, 8, len(trie))
    all_ids, _ = brute_force_topk(step, trie, 8, len(trie))
    assert ((ids >= 0) & (ids < len(trie))).all()
    for b in range(8):
        true = dict(zip(all_ids[b].tolist(), every[b].tolist()))
        assert [round(true[i], 5) for i in ids[b].tolist()] == [round(s, 5) for s in scores[b].tolist()]
        assert (scores[b, :-1] >= scores[b, 1:]).all()  # best first


def test_exclude_removes_items_and_the_next_best_moves_up():
    trie = PrefixTrie(valid_codes(), sizes=SIZES)
    step, _ = table_step(3)
    full, _ = brute_force_topk(step, trie, 3, 13)
    exclude = full[:, :2]  # each row's two best items are "history"
    ids, _, _ = beam_search(step, trie, 3, beam_size=13, k=4, exclude=exclude)
    ref, _ = brute_force_topk(step, trie, 3, 4, exclude=exclude)
    assert torch.equal(ids, ref) and torch.equal(ids, full[:, 2:6])


def test_fewer_valid_items_than_k_are_padded():
    trie = PrefixTrie(np.array([[0, 1, 0], [2, 3, 1]]), sizes=SIZES)
    step, _ = table_step(2)
    ids, scores, _ = beam_search(step, trie, 2, beam_size=5)
    assert (ids[:, 2:] == -1).all() and (scores[:, 2:] == -math.inf).all()
    assert sorted(ids[0, :2].tolist()) == [0, 1] and torch.isfinite(scores[:, :2]).all()


def test_unconstrained_search_finds_invalid_sequences_that_lookup_rejects():
    codes = valid_codes(n=5)
    trie = PrefixTrie(codes, sizes=SIZES)
    step, key = table_step(4)
    _, scores, tokens = beam_search(step, None, 4, beam_size=24, sizes=SIZES)
    # exhaustive over all 24 sequences: scores are the full table, sorted
    every = torch.tensor(list(itertools.product(*map(range, SIZES))))
    total = sum(step(every[None, :, :d].expand(4, -1, -1), None)
                .gather(2, every[None, :, d, None].expand(4, -1, 1)).squeeze(2) for d in range(3))
    assert torch.allclose(scores, total.sort(dim=1, descending=True).values, atol=1e-5)
    found = trie.lookup(tokens)
    assert (found >= 0).sum() == 4 * 5  # each valid ID exactly once per row, the rest invalid
    assert ((found >= 0) == np.isin(key(tokens).numpy(), key(torch.from_numpy(codes)).numpy())).all()


def test_excluded_subtrees_take_no_beam():
    # a narrow beam still returns k items when the best prefixes hold only excluded items:
    # fully excluded prefixes are pruned at every level, not just at the leaves
    codes = valid_codes()
    trie = PrefixTrie(codes, sizes=SIZES)
    step, _ = table_step(5, seed=4)
    full, _ = brute_force_topk(step, trie, 5, len(trie))
    top = torch.from_numpy(codes[np.argsort(trie._ids)])  # codes by id
    # exclude every item under each row's best first token, plus a repeated id and padding
    first = top[full[:, 0], 0]
    exclude = [torch.tensor([i for i in range(len(trie)) if top[i, 0] == f] + [-1]) for f in first]
    width = max(len(e) for e in exclude)
    exclude = torch.stack([torch.cat([e, e[:1].repeat(width - len(e) + 1)]) for e in exclude])
    ids, scores, _ = beam_search(step, trie, 5, beam_size=2, exclude=exclude)
    assert (ids >= 0).all() and torch.isfinite(scores).all()
    for row in range(5):
        assert not set(ids[row].tolist()) & set(exclude[row].tolist())
        assert (top[ids[row], 0] != first[row]).all()
