"""Model kinds: one adapter per input kind, the only code that knows how a kind of model is fed.

Every registered model declares its kind with one class attribute (``kind = "sequence"``), and
``KINDS`` maps that name to its adapter, imported lazily (``model_kind(model_name)``). Runs,
serving, recall and benchmarks ask the adapter; they never inspect the model.

    matrix    fitted in closed form on the interaction matrix; ``score(users, history_csr)``:
              popularity, ItemCF, EASE                                          (matrix.py)
    pairs     trained on (user, positive, negative) ``PairBatch`` triples; ``score(PairBatch)``
              by user index: BPR, LightGCN; users without training items: popularity (pairs.py)
    sequence  trained on ``SeqBatch`` histories; ``score(SeqBatch)``: SASRec, HSTU, TIGER, SemID,
              two-tower                                                         (sequence.py)
    features  rankers over a recall's candidate lists, trained on ``FeatureBatch`` rows by
              ``genrec.pipeline`` (not ``genrec train``): DIN, DCN-V2, MMoE, ranker (features.py)
    session   a history -> a generated session: ``SessionBatch`` after encoder pre-training on
              ``SeqBatch``; ``score`` = the first item's scores, ``generate`` the list: GENIUS
                                                                                (session.py)

An adapter answers (``Kind`` holds the defaults):

    check_train(model)           refuse a model that ``genrec train`` cannot train (features)
    trains, fit, batches         a closed-form fit, or the one trainer's batches per epoch
    attach(model, split)         data the model needs beside its weights (after build and load)
    cold_users(split)            users whom evaluation serves popularity instead of the model
    scorer(run, stage)           users -> (B, n_items + 1) scores from what is known before stage
    score_history(run, items)    (n_items + 1,) scores from an explicit item history (serving)
    similar(run, known)          the item-item relation of /similar
    vector_search(run, ...)      item and user vectors for an ANN channel (two towers only)
    stage_metrics(run, ...)      metrics beside the full-ranking ones (P6 session metrics)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import importlib

import numpy as np
import scipy.sparse as sp
import torch

from genrec.config import ConfigError
from genrec.registry import model_classes

if TYPE_CHECKING:
    from genrec.data.splits import Split
    from genrec.evaluation import EvalResult
    from genrec.runs import Run

__all__ = ["KINDS", "Kind", "model_kind", "cooccurrence", "cosine", "sparse_row", "history_mask"]

KINDS: dict[str, tuple[str, str]] = {
    "matrix": ("genrec.runs.kinds.matrix", "MatrixKind"),        # fitted in closed form
    "pairs": ("genrec.runs.kinds.pairs", "PairsKind"),           # (user, pos, neg) triples
    "sequence": ("genrec.runs.kinds.sequence", "SequenceKind"),  # item histories
    "session": ("genrec.runs.kinds.session", "SessionKind"),     # history -> generated session
    "features": ("genrec.runs.kinds.features", "FeaturesKind"),  # rows of candidate lists
}

Scorer = Callable[[np.ndarray], Any]  # users (B,) -> (B, n_items + 1) numpy or torch scores
Similar = tuple[str, Callable[[int], np.ndarray]]  # (description, item_idx -> (n_items + 1,))


class Kind:
    """The adapter of one input kind; a subclass overrides what its kind does differently."""

    name = ""
    trains = False  # True: trained by genrec.training.trainer.fit on ``batches``; else ``fit``
    cold_fallback = ""  # what ``cold_users`` get in evaluation (run.json's cold_start)

    # ---- building and training -------------------------------------------------------------
    def check_train(self, model: str) -> None:
        """ConfigError if ``genrec.runs.train`` cannot train ``model`` (checked before any work)."""

    def attach(self, model: Any, split: Split) -> None:
        """Give ``model`` the data it needs beside its weights (after building and loading)."""

    def fit(self, model: Any, interactions: sp.csr_matrix) -> None:
        """Fit in closed form on ``interactions`` (users x (n_items + 1), binary)."""
        raise TypeError(f"{self.name} models are trained on batches, not fitted in closed form")

    def batches(self, run: Run) -> tuple[Callable[[int], Iterable[Any]], int]:
        """``(epoch -> that epoch's training batches, steps per epoch)`` for the one trainer."""
        raise TypeError(f"{self.name} models are fitted in closed form, not trained on batches")

    def cold_users(self, split: Split) -> np.ndarray | None:
        """(n_users,) True for users whom evaluation serves ``cold_fallback``; None: nobody."""
        return None

    # ---- scoring ---------------------------------------------------------------------------
    def scorer(self, run: Run, stage: str) -> Scorer:
        """score(users) -> (B, n_items + 1) from what is known before ``stage`` ("all" = serving);
        column 0 (PAD) is -inf."""
        raise NotImplementedError

    def score_history(self, run: Run, items: np.ndarray) -> np.ndarray:
        """(n_items + 1,) float64 scores for a user given by an item history (oldest first)."""
        raise NotImplementedError

    def stage_metrics(self, run: Run, stage: str, ranked: EvalResult | None = None
                      ) -> dict[str, float]:
        """Metrics beside the full-ranking evaluator's for ``stage``: on a ``next_k`` split
        (P6), the session metrics of each user's top-20 list, the model's top-k as a set
        (``session/...``; a session model generates its list instead).

        ``ranked``: the evaluator's result for ``stage``. Its kept top lists, when 20 or more
        wide, are these lists (next_k has no new items, so it masked the same history; ties go
        to the lower index in both), so users are not scored again."""
        if run.split.name != "next_k":
            return {}
        from genrec.runs.kinds.session import p6_metrics
        from genrec.topk import top_k

        k = 20  # the longest P6 cut-off (Recall@20)
        if ranked is not None and ranked.topk is not None and ranked.topk.shape[1] >= k:
            return p6_metrics(run, stage, _kept_lists(ranked, run.split.n_users, k))
        score, history = self.scorer(run, stage), run.split.history(stage)

        def lists(users: np.ndarray) -> np.ndarray:
            scores = torch.as_tensor(score(users)).detach().float().cpu()
            return top_k(scores.masked_fill(history_mask(history, users), -np.inf), k)[0].numpy()

        return p6_metrics(run, stage, lists)

    def similar(self, run: Run, known: sp.csr_matrix) -> Similar:
        """The item-item relation of /similar: -inf where unrelated."""
        return cooccurrence(known)

    def vector_search(self, run: Run, split: Split, stage: str
                      ) -> tuple[Callable[[], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """``(item vectors () -> (n_items + 1, D), user vectors (users) -> (B, D))`` whose inner
        products are the model's scores, for an approximate-nearest-neighbour channel."""
        raise ValueError(f"ann_channel needs a model with user_vectors/item_vectors (two_tower); "
                         f"{run.config.model!r} has none: use run_channel for it")


def _kept_lists(ranked: EvalResult, n_users: int, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """lists(users) -> (B, k): the evaluator's kept top-k lists of ``users`` (all evaluated),
    -1 where only items the model scored -inf were left, as ``genrec.topk.top_k`` leaves them."""
    row = np.full(n_users, -1)
    row[ranked.users] = np.arange(len(ranked.users))

    def lists(users: np.ndarray) -> np.ndarray:
        r = row[users]
        if (r < 0).any():
            raise ValueError(f"users {users[r < 0][:5].tolist()} were not evaluated")
        top = ranked.topk[r, :k].copy()
        top[np.arange(k) >= ranked.topk_scored[r, None]] = -1  # scored -inf: not listed
        return top

    return lists


def history_mask(history: sp.csr_matrix, users: np.ndarray) -> torch.Tensor:
    """(B, n_items + 1) True at each user's ``history`` items and at column 0 (PAD): the
    entries a ranking of ``users`` must never return."""
    rows = history[users].tocoo()
    mask = torch.zeros(len(users), history.shape[1], dtype=torch.bool)
    mask[torch.from_numpy(rows.row).long(), torch.from_numpy(rows.col).long()] = True
    mask[:, 0] = True
    return mask


def sparse_row(row: sp.spmatrix, width: int) -> np.ndarray:
    """A sparse (1, width) row as a dense one, -inf where nothing is stored (or a zero is)."""
    out = np.full(width, -np.inf)
    row = sp.csr_matrix(row)
    keep = row.data > 0  # a stored zero is no relation
    out[row.indices[keep]] = row.data[keep]
    return out


def cooccurrence(known: sp.csr_matrix) -> Similar:
    """Item co-occurrence cosine over ``known`` (users x (n_items + 1)): the relation of models
    without an item-item structure of their own."""
    n1 = known.shape[1]
    xt = known.T.tocsr()  # (items, users)
    norms = np.sqrt(np.asarray(known.sum(axis=0), dtype=np.float64).ravel())

    def similar(i: int) -> np.ndarray:
        co = xt[i] @ known  # (1, n_items + 1): users shared with item i
        out = sparse_row(co, n1)
        hit = np.isfinite(out)
        out[hit] /= norms[hit] * norms[i]
        return out

    return "item co-occurrence cosine (known interactions)", similar


def cosine(name: str, vectors: np.ndarray) -> Similar:
    """Cosine over an (n_items + 1, D) item table already scaled to unit length."""
    return name, lambda i: (vectors @ vectors[i]).astype(np.float64)


def model_kind(name: str) -> Kind:
    """The adapter of registered model ``name``'s input kind (its class attribute ``kind``)."""
    model_cls, _ = model_classes(name)
    kind = getattr(model_cls, "kind", None)  # the one class attribute every model declares
    if kind not in KINDS:
        raise ConfigError(f"model {name!r} declares input kind {kind!r}, which has no adapter; "
                          f"known kinds: {', '.join(KINDS)} (see genrec.runs.kinds)")
    module, adapter = KINDS[kind]
    return getattr(importlib.import_module(module), adapter)()
