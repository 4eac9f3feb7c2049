"""Prefix trie over valid semantic IDs, and beam search that can only emit existing items.

A semantic ID is a fixed-length token sequence, one token per level (``codes[i]`` for item i).
``PrefixTrie`` stores every valid sequence level by level: the nodes of depth d are the distinct
length-d prefixes (depth 0 is the root), and a node's children are kept as one contiguous,
token-sorted range of the next depth (CSR), so looking up the children of a whole beam is a few
vectorised gathers, whatever the catalogue size.

``beam_search`` is generic over a step function: ``step(tokens, parents) -> log_probs``, where
``tokens`` (B, M, d) holds the M beams' prefixes of the B queries, ``parents`` (B, M) says which
beam of the previous call each one extends (None on the first call: no history), and the result
(B, M, V_d) holds the log-probabilities of level d's V_d tokens. A model with a key/value cache
reorders it by ``parents`` and reads only the last token; a stateless one reads the whole prefix.
A beam's score is the sum of its tokens' log-probabilities under the model (not renormalised
over the valid tokens), so items come out ranked by the model's own sequence probability.

``SemanticIdItems`` is the part a generator model shares (TIGER, text2items): the items' IDs in a
``codes`` buffer, set with checks, and their trie, cached until the codes change.

``brute_force_topk`` is the slow, obviously correct reference: it scores every valid sequence in
full and sorts. With a beam at least as wide as the number of prefixes of any depth, beam search
must return exactly its list (tests/semantic_ids/test_trie.py).

Example:
    >>> trie = PrefixTrie(np.array([[0, 1], [0, 2], [1, 0]]))         # items 0, 1, 2
    >>> ids, scores = beam_search(step, trie, batch_size=4, beam_size=3)  # doctest: +SKIP
    >>> ids.shape, scores.shape                                         # doctest: +SKIP
    (torch.Size([4, 3]), torch.Size([4, 3]))
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

__all__ = ["PrefixTrie", "StepFn", "SemanticIdItems", "beam_search", "brute_force_topk"]

StepFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class PrefixTrie:
    """Every valid code sequence, as a trie with one CSR child table per depth.

    ``codes`` (n, T) non-negative ints, one row per valid sequence (rows must be distinct);
    ``ids`` (n,) the id each row stands for (default: the row number). ``sizes[d]`` is the
    vocabulary size of level d (default: its largest code + 1).
    """

    def __init__(self, codes: np.ndarray, ids: np.ndarray | None = None,
                 sizes: list[int] | None = None) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty (n, T) integer array, got {codes.shape}")
        if codes.min() < 0:
            raise ValueError("codes must be >= 0; the trie has no place for negative tokens")
        n, T = codes.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError(f"ids must have one entry per row of codes ({n}), got {ids.shape}")
        self.sizes = [int(codes[:, d].max()) + 1 for d in range(T)] if sizes is None else list(sizes)
        if len(self.sizes) != T or any(int(codes[:, d].max()) >= self.sizes[d] for d in range(T)):
            raise ValueError(f"sizes {self.sizes} must give one vocabulary size per level, each "
                             f"larger than that level's codes")
        order = np.lexsort(codes.T[::-1])  # rows sorted lexicographically (first column major)
        codes, ids = codes[order], ids[order]
        if n > 1 and not (np.diff(codes, axis=0) != 0).any(axis=1).all():
            raise ValueError("codes has repeated rows: a semantic ID must name one item (add the "
                             "dedup token, genrec.semantic_ids.dedup)")
        self.depth = T
        # new[d][r]: row r starts a new length-(d + 1) prefix (it differs from row r - 1 within it)
        differs = np.ones((n, T), dtype=bool)
        differs[1:] = np.cumsum(np.diff(codes, axis=0) != 0, axis=1) > 0
        self.tokens: list[torch.Tensor] = []  # [d]: token of each depth-(d + 1) node
        self.ptr: list[torch.Tensor] = []     # [d]: children of depth-d node p = ptr[p]:ptr[p + 1]
        prev_start = np.array([0])            # first row of each depth-d node (the root: row 0)
        for d in range(T):
            start = np.flatnonzero(differs[:, d])  # first row of each depth-(d + 1) node
            self.tokens.append(torch.from_numpy(codes[start, d]))
            # children of node p are the depth-(d + 1) nodes whose first row lies in p's rows;
            # one extra node without children stands for "no beam" (padding beams point to it)
            ptr = np.append(np.searchsorted(start, prev_start), [len(start), len(start)])
            self.ptr.append(torch.from_numpy(ptr.astype(np.int64)))
            prev_start = start
        self.leaf_ids = torch.from_numpy(ids)  # depth-T nodes are the rows themselves
        self._codes, self._ids = codes, ids
        # for exclusion: the node of every row at each depth, and how many rows each node holds
        self._node_at = [torch.from_numpy(self.node_of_rows(d)) for d in range(T + 1)]
        self._leaf_count = [torch.bincount(a) for a in self._node_at]
        self._by_id = np.argsort(ids, kind="stable")  # rows in id order, to find an id's row
        self._radix = np.cumprod([1] + self.sizes[::-1][:-1])[::-1].astype(np.int64)
        self._keys = codes @ self._radix  # mixed-radix key of each row, sorted like the rows

    def __len__(self) -> int:
        return len(self._ids)

    def n_nodes(self, depth: int) -> int:
        """Distinct prefixes of length ``depth`` (1 for the root, ``len(self)`` for full IDs)."""
        return len(self) if depth == self.depth else len(self.ptr[depth]) - 2

    def children(self, nodes: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(child (N, V_d) int64, allowed (N, V_d) bool)`` for depth-``depth`` node ids ``nodes``
        (N,): child[r, t] is the node reached by token t, -1 where t is not a valid next token.
        A node id of ``n_nodes(depth)`` (the padding node) has no children."""
        ptr = self.ptr[depth].to(nodes.device)
        lo, counts = ptr[nodes], ptr[nodes + 1] - ptr[nodes]
        rows = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        kids = torch.repeat_interleave(lo, counts) + torch.arange(len(rows), device=nodes.device) - first
        child = torch.full((len(nodes), self.sizes[depth]), -1, dtype=torch.int64, device=nodes.device)
        child[rows, self.tokens[depth].to(nodes.device)[kids]] = kids
        return child, child >= 0

    def lookup(self, seqs: np.ndarray | torch.Tensor) -> np.ndarray:
        """The id of each full sequence (..., T), or -1 where it is not a valid ID."""
        seqs = np.asarray(seqs.cpu() if isinstance(seqs, torch.Tensor) else seqs, dtype=np.int64)
        in_range = ((seqs >= 0) & (seqs < np.array(self.sizes))).all(axis=-1)
        keys = np.where(seqs >= 0, seqs, 0) @ self._radix
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = in_range & (self._keys[pos] == keys)
        return np.where(found, self._ids[pos], -1)

    def ancestors(self, ids: torch.Tensor, depth: int) -> torch.Tensor:
        """The depth-``depth`` node holding each id (any shape), -1 for ids not in the trie."""
        flat = ids.reshape(-1).cpu().numpy()
        pos = np.minimum(np.searchsorted(self._ids[self._by_id], flat), len(self._ids) - 1)
        row = self._by_id[pos]
        found = torch.from_numpy(self._ids[row] == flat)
        node = self._node_at[depth][torch.from_numpy(row)]
        return torch.where(found, node, -1).view(ids.shape).to(ids.device)

    def prefixes(self, depth: int) -> np.ndarray:
        """(n_nodes(depth), depth) the distinct prefixes of that length, in node order."""
        codes = self._codes[:, :depth]
        if depth == 0:
            return codes[:1]
        keep = np.ones(len(codes), dtype=bool)
        keep[1:] = (np.diff(codes, axis=0) != 0).any(axis=1)
        return codes[keep]

    def node_of_rows(self, depth: int) -> np.ndarray:
        """(n,) the depth-``depth`` node of each valid sequence, in sorted-row order."""
        if depth == 0:
            return np.zeros(len(self._codes), dtype=np.int64)
        codes = self._codes[:, :depth]
        new = np.ones(len(codes), dtype=bool)
        new[1:] = (np.diff(codes, axis=0) != 0).any(axis=1)
        return np.cumsum(new) - 1


def _exclude_mask(ids: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    """(B, X) bool: ``ids`` (B, X) that appear in the same row of ``exclude`` (B, E)."""
    if exclude is None or exclude.numel() == 0:
        return torch.zeros_like(ids, dtype=torch.bool)
    return (ids[:, :, None] == exclude[:, None, :]).any(-1)


def _distinct(exclude: torch.Tensor) -> torch.Tensor:
    """(B, E) with each row's repeated ids replaced by -1 (a history may repeat an item)."""
    ex = exclude.sort(dim=1).values
    repeated = torch.zeros_like(ex, dtype=torch.bool)
    repeated[:, 1:] = ex[:, 1:] == ex[:, :-1]
    return ex.masked_fill(repeated, -1)


def _fully_excluded(trie: PrefixTrie, child: torch.Tensor, exclude: torch.Tensor, depth: int
                    ) -> torch.Tensor:
    """(B, X) True where depth-``depth`` node ``child`` (B, X) (-1 = none) holds only excluded
    ids: such a prefix can lead to no returnable item, so it must not take a beam."""
    anc = trie.ancestors(exclude, depth)  # (B, E): the node of each excluded id, -1 if none
    anc = anc.masked_fill(exclude < 0, -1)
    hits = (child[:, :, None] == anc[:, None, :]).sum(-1)  # (B, X) excluded ids below each child
    leaves = trie._leaf_count[depth].to(child.device)[child.clamp(min=0)]
    return (child >= 0) & (hits >= leaves)


def beam_search(step: StepFn, trie: PrefixTrie | None, batch_size: int, beam_size: int,
                k: int | None = None, exclude: torch.Tensor | None = None,
                sizes: list[int] | None = None, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` (default ``beam_size``) sequences per query by summed log-probability.

    With a ``trie`` only valid sequences are expanded, and ids (B, k) are theirs. With
    ``trie=None`` every token is allowed (``sizes`` gives the vocabulary per level): the
    unconstrained search that invalid-ID rates are measured on; ids are then -1 throughout and
    the caller maps ``tokens`` with ``PrefixTrie.lookup``. ``exclude`` (B, E) ids that must not
    be returned (e.g. the user's history; ids not in the trie, such as PAD, are ignored): a
    prefix whose every item is excluded gets no beam, so the beams are spent on returnable
    items only. Rows with fewer valid sequences than ``k`` are padded with id -1, score -inf.

    Returns ``(ids (B, k) int64, scores (B, k) float, tokens (B, k, T) int64)``, best first.
    """
    k = beam_size if k is None else k
    exclude = _distinct(exclude) if exclude is not None and exclude.numel() else None
    if not 1 <= k <= beam_size:
        raise ValueError(f"need 1 <= k <= beam_size, got k={k}, beam_size={beam_size}")
    sizes = trie.sizes if trie is not None else sizes
    if not sizes:
        raise ValueError("an unconstrained beam search needs sizes (vocabulary size per level)")
    B, T = batch_size, len(sizes)
    nodes = torch.zeros(B, 1, dtype=torch.int64, device=device)  # (B, M): every query at the root
    scores = torch.zeros(B, 1, device=device)
    tokens = torch.zeros(B, 1, 0, dtype=torch.int64, device=device)
    parents = None
    for d in range(T):
        logp = step(tokens, parents)  # (B, M, V_d)
        M, V = logp.shape[1], logp.shape[2]
        if V != sizes[d]:
            raise ValueError(f"step returned {V} log-probs at level {d}, the trie has {sizes[d]}")
        cand = scores[..., None] + logp.float()  # (B, M, V)
        if trie is not None:
            child, allowed = trie.children(nodes.reshape(-1), d)
            child, allowed = child.view(B, M, V), allowed.view(B, M, V)
            cand = cand.masked_fill(~allowed, -math.inf)
        if exclude is not None and trie is not None:
            gone = _fully_excluded(trie, child.view(B, -1), exclude, d + 1).view(B, M, V)
            cand = cand.masked_fill(gone, -math.inf)
        width = min(k if d == T - 1 else beam_size, M * V)
        scores, flat = cand.view(B, -1).topk(width, dim=1)  # (B, M'), best first
        parents, tok = flat // V, flat % V  # (B, M')
        tokens = torch.cat([tokens.gather(1, parents[..., None].expand(-1, -1, d)),
                            tok[..., None]], dim=2)  # (B, M', d + 1)
        if trie is not None:
            nxt = child.view(B, -1).gather(1, flat)
            # dead beams (fewer valid continuations than the width) go to the childless node
            nodes = torch.where(torch.isfinite(scores), nxt, trie.n_nodes(d + 1))
    if trie is None:
        ids = torch.full_like(scores, -1, dtype=torch.int64)
    else:
        ids = torch.where(torch.isfinite(scores), trie.leaf_ids.to(device)[nodes.clamp(
            max=len(trie) - 1)], -1)
    if scores.shape[1] < k:  # fewer candidates than k in the whole search space
        pad = k - scores.shape[1]
        ids = torch.cat([ids, ids.new_full((B, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((B, pad), -math.inf)], 1)
        tokens = torch.cat([tokens, tokens.new_zeros(B, pad, T)], 1)
    return ids, scores, tokens


def brute_force_topk(step: StepFn, trie: PrefixTrie, batch_size: int, k: int,
                     exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: score every valid sequence in full, return the top ``k`` ``(ids, scores)``.

    Calls ``step`` once per depth with every distinct prefix of that depth as a beam
    (``parents=None``), so it needs a step function that reads whole prefixes. Ties are broken
    by the smaller id.
    """
    B, n = batch_size, len(trie)
    total = torch.zeros(B, n, dtype=torch.float64)
    codes = torch.from_numpy(trie._codes)
    for d in range(trie.depth):
        prefixes = torch.from_numpy(trie.prefixes(d)).expand(B, -1, -1)  # (B, n_d, d)
        logp = step(prefixes, None).double()  # (B, n_d, V_d)
        node = torch.from_numpy(trie.node_of_rows(d))
        total += logp[:, node, codes[:, d]]  # (B, n): the d-th token of every valid sequence
    ids = torch.from_numpy(trie._ids).expand(B, -1)
    total = total.masked_fill(_exclude_mask(ids, exclude), -math.inf)
    order = np.lexsort((trie._ids[None].repeat(B, 0), -total.numpy()), axis=1)[:, :k]
    order = torch.from_numpy(order)
    return ids.gather(1, order), total.gather(1, order)


class SemanticIdItems:
    """Mixin for an ``nn.Module`` that registered ``codes``, a (n_items + 1, T) int64 buffer (row
    0 = PAD = -1, saved with the weights), and has ``config.id_sizes``: the T tokens' ranges."""

    codes: torch.Tensor
    _trie: "tuple[tuple[int, int], PrefixTrie] | None" = None

    def set_semantic_ids(self, codes: "torch.Tensor | np.ndarray") -> None:
        """Item semantic IDs (n_items + 1, T) aligned to item_idx (row 0 ignored)."""
        name = type(self).__name__.lower()
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if tuple(codes.shape) != tuple(self.codes.shape):
            raise ValueError(f"{name}: semantic IDs of shape {tuple(codes.shape)}, expected "
                             f"{tuple(self.codes.shape)} = (n_items + 1, levels)")
        real, sizes = codes[1:], self.config.id_sizes  # type: ignore[attr-defined]
        if (real < 0).any() or (real >= torch.tensor(sizes)).any():
            raise ValueError(f"{name}: semantic IDs must lie in [0, size) per level, sizes {sizes}")
        with torch.no_grad():
            self.codes.copy_(codes)
            self.codes[0] = -1

    def trie(self) -> PrefixTrie:
        """The prefix trie of the items' IDs (rebuilt when the codes change, e.g. on load)."""
        key = (self.codes._version, self.codes.data_ptr())
        if self._trie is None or self._trie[0] != key:
            codes = self.codes[1:].cpu().numpy()
            self._trie = (key, PrefixTrie(codes, ids=np.arange(1, len(codes) + 1),
                                          sizes=list(self.config.id_sizes)))  # type: ignore[attr-defined]
        return self._trie[1]
