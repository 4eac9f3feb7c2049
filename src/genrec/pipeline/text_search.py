"""Text -> items: generate-and-rank search, its training, and one ``TextSearch`` for every caller.

Four ways to answer a free-text query, behind one ``TextSearch.search(query, k, method)``:

    bm25          Okapi BM25 over the item texts (``genrec.retrieval.bm25``)
    minilm        all-MiniLM-L6-v2 bi-encoder + exact faiss scan (``genrec.retrieval.text``)
    generator     Text2Items (``genrec.models.text2items``): a T5 writes semantic IDs, constrained
                  beam search over the prefix trie, ranked by sequence log-probability
    generator+ce  the generator's top ``ranker.depth`` candidates re-scored by the MiniLM
                  cross-encoder (``genrec.models.cross_encoder``), whose hard negatives were
                  mined from the generator's own candidates on training queries: its top
                  ``ranker.candidates`` minus the query's training items. Held-out (valid/test)
                  items of the query are unknown at training time and may be drawn as
                  negatives, as they would be in real use (label noise, never a leak)

``train_text_search(cfg, out)`` builds the whole system: queries and a held-out split from the
item text (``genrec.pipeline.text_queries``), semantic IDs from MiniLM vectors by RQ-KMeans
(``genrec.semantic_ids``), the generator trained by the one trainer (early stopping on VALID
NDCG@10 of a fixed query sample), hard negatives mined with the generator, the cross-encoder.
The run directory (written atomically) is enough to serve without the dataset:

    config.toml          the resolved TextSearchConfig (generator sizes filled in)
    run.json             dataset, query and semantic-ID summaries, timings, versions
    items.parquet        item_idx, item_id, title, text (what BM25 / MiniLM / the ranker read)
    queries.parquet      every (query, item) pair with its split (train / valid / test)
    semantic_ids.npz     codes (n_items + 1, T) and sizes; semantic_ids.json their report
    generator.pt         Text2Items weights; generator/ the trainer's log and curves
    cross_encoder/       CrossEncoderRanker.save (absent with ranker.enabled = false)
    metrics.json         valid (selection) and test metrics of a query sample

Errors for callers (CLI, HTTP): an empty or blank query, an unknown method, k < 1 or a method the
run lacks raise ValueError; a query whose word pieces are mostly [UNK] still gets results, with
``SearchResult.note`` saying so; a directory without semantic IDs or generator is a DataError
naming the command that makes one. One ``TextSearch`` serves one request at a time (the
bi-encoder locks its tokenizer; the generator and ranker hold no state between calls).

Example:
    >>> cfg = load_config("configs/text2items_beauty.toml", ["train.max_minutes=5"])  # doctest: +SKIP
    >>> search = train_text_search(cfg, Path("runs/text2items_beauty"))       # doctest: +SKIP
    >>> TextSearch.load("runs/text2items_beauty").search("coconut oil", k=5).rows()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from genrec._files import atomic_dir, check_replaceable
from genrec.config import ConfigError, from_dict, load_toml, to_dict, to_toml
from genrec.data.dataset import DataError
from genrec.models.text2items import (QueryBatch, Text2Items, Text2ItemsConfig, load_tokenizer,
                                      unknown_share)
from genrec.pipeline.text_queries import QueryConfig, QuerySet, build_queries, metrics
from genrec.training.trainer import TrainConfig, fit

__all__ = ["METHODS", "IdsConfig", "RankerConfig", "SearchEvalConfig", "TextSearchConfig",
           "SearchResult", "TextSearch", "train_text_search", "evaluate_search", "load_config"]

METHODS = ("bm25", "minilm", "generator", "generator+ce")
UNKNOWN_NOTE = 0.5  # share of [UNK] word pieces from which on a result carries a note
_TRAIN_HINT = "`genrec search train DATASET_OR_CONFIG --out {out}`"


@dataclass
class IdsConfig:
    vectors: str = "minilm"     # item vectors to quantise (made by `genrec embed items` if absent)
    method: str = "rq_kmeans"   # rq_kmeans | rq_vae
    levels: int = 3             # C codebook levels (a dedup token is added)
    codebook_size: int = 256    # K codes per level
    seed: int = 0               # k-means seed
    name: str = ""              # file name under <dataset>/semantic_ids; "" = from the above

    def file_name(self) -> str:
        auto = f"{self.vectors}-{self.method}-{self.levels}x{self.codebook_size}-s{self.seed}"
        return self.name or auto


@dataclass
class RankerConfig:
    enabled: bool = True        # train the cross-encoder (generator+ce needs it)
    train_queries: int = 2000   # training queries whose generator candidates give hard negatives
    candidates: int = 20        # generator candidates mined per training query
    positives: int = 4          # training items per query given as positives (seeded sample)
    depth: int = 30             # serving: generator candidates the cross-encoder re-scores
    params: dict[str, Any] = field(default_factory=dict)  # CrossEncoderConfig fields

    def validate(self) -> None:
        if min(self.train_queries, self.candidates, self.positives, self.depth) < 1:
            raise ConfigError(f"ranker: train_queries, candidates, positives and depth must be "
                              f">= 1, got {self}")


@dataclass
class SearchEvalConfig:
    k: int = 10                 # cut-off of Recall / NDCG / HeldOutRecall
    valid_queries: int = 500    # fixed seeded sample of validation queries (selection only)
    valid_beam: int = 20        # beam of the validation passes (speed; serving uses generator's)
    test_queries: int = 200     # test queries scored into metrics.json (the benchmark does more)
    seed: int = 0               # query samples

    def validate(self) -> None:
        if min(self.k, self.valid_queries, self.valid_beam) < 1 or self.test_queries < 0:
            raise ConfigError("eval: k, valid_queries, valid_beam must be >= 1, test_queries >= 0")
        if self.valid_beam < self.k:
            raise ConfigError(f"eval.valid_beam ({self.valid_beam}) must be >= eval.k ({self.k})")


def _train_defaults() -> TrainConfig:
    return TrainConfig(epochs=30, lr=1e-3, batch_size=128, warmup_steps=100, patience=3,
                       threads=1, max_minutes=15.0, metric="NDCG@10", seed=0)


@dataclass
class TextSearchConfig:
    data: str = "amazon-beauty"      # dataset preset, prepared name or directory
    text_fields: tuple[str, ...] = ()  # item text columns; () = every text column present
    queries: QueryConfig = field(default_factory=QueryConfig)
    ids: IdsConfig = field(default_factory=IdsConfig)
    generator: Text2ItemsConfig = field(default_factory=Text2ItemsConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    eval: SearchEvalConfig = field(default_factory=SearchEvalConfig)

    def validate(self) -> None:
        if self.ranker.enabled and self.ranker.params:
            try:
                from genrec.models.cross_encoder import CrossEncoderConfig
            except ImportError:  # checked again, loudly, when the ranker is trained
                return
            from_dict(CrossEncoderConfig, self.ranker.params, prefix="ranker.params.")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(spec: str | Path, sets: list[str] = ()) -> TextSearchConfig:
    """A TextSearchConfig from a TOML preset path or a dataset name, plus ``--set`` overrides.

    Layered: this file's defaults (e.g. the generator's train settings, which differ from
    TrainConfig's), then the preset, then ``sets``: ``--set train.lr=3e-4`` keeps the rest of
    ``train`` as it was."""
    from genrec.config import apply_overrides

    p = Path(spec)
    data = load_toml(p) if p.suffix == ".toml" or p.is_file() else {"data": str(spec)}
    defaults = {k: v for k, v in to_dict(TextSearchConfig()).items() if isinstance(v, dict)}
    defaults["ranker"].pop("params")  # CrossEncoderConfig's own defaults apply
    merged = _merge(_without_none(defaults), apply_overrides(data, list(sets)))
    return from_dict(TextSearchConfig, merged)


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


# ---- results ---------------------------------------------------------------------------------
@dataclass
class SearchResult:
    method: str
    items: np.ndarray                        # (n,) item_idx, best first
    scores: np.ndarray                       # (n,) the score the list is sorted by
    generator_logp: np.ndarray | None = None  # (n,) generator log-probability, when it ran
    ce_score: np.ndarray | None = None       # (n,) cross-encoder score, when it ran
    note: str | None = None                  # e.g. a query the tokenizer mostly cannot read
    titles: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for r, item in enumerate(self.items.tolist()):
            row = {"rank": r + 1, "item_idx": int(item), "item_id": self.item_ids[r],
                   "title": self.titles[r], "score": float(self.scores[r])}
            if self.generator_logp is not None:
                row["generator_logp"] = float(self.generator_logp[r])
            if self.ce_score is not None:
                row["ce_score"] = float(self.ce_score[r])
            out.append(row)
        return out


class TextSearch:
    """Query text -> items by BM25, MiniLM, the generator, or the generator + cross-encoder.

    ``texts[i]``, ``titles[i]``, ``item_ids[i]``: item_idx i (0 = PAD, ""). Indexes for bm25 and
    minilm are built on first use; ``generator`` / ``ranker`` are None when the run lacks them.
    """

    def __init__(self, texts: list[str], titles: list[str], item_ids: list[str],
                 generator: Text2Items | None = None, ranker: Any = None, depth: int = 30,
                 run_dir: Path | None = None, dataset_dir: Path | None = None) -> None:
        if not (len(texts) == len(titles) == len(item_ids)) or texts[0] != "":
            raise ValueError("texts, titles and item_ids must be aligned to item_idx, row 0 = PAD "
                             "with empty text")
        self.texts, self.titles, self.item_ids = texts, titles, item_ids
        self.generator, self.ranker, self.depth = generator, ranker, depth
        self.run_dir, self.dataset_dir = run_dir, dataset_dir
        self._bm25: Any = None
        self._minilm: Any = None
        self._tokenizer: Any = None

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path) -> "TextSearch":
        """Reload a run directory written by ``train_text_search``."""
        run_dir = Path(run_dir)
        hint = _TRAIN_HINT.format(out=run_dir)
        if not (run_dir / "config.toml").is_file() or not (run_dir / "items.parquet").is_file():
            raise DataError(f"{run_dir} is not a text-search run directory (no config.toml / "
                            f"items.parquet); create one with {hint}")
        for name, what in (("semantic_ids.npz", "semantic IDs"), ("generator.pt", "generator")):
            if not (run_dir / name).is_file():
                raise DataError(f"{run_dir} has no {what} ({name} is missing): its training did "
                                f"not finish or the file was removed; run {hint}")
        cfg = from_dict(TextSearchConfig, load_toml(run_dir / "config.toml"))
        info_path = run_dir / "run.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        items = pl.read_parquet(run_dir / "items.parquet").sort("item_idx")
        with np.load(run_dir / "semantic_ids.npz") as z:
            codes, sizes = z["codes"], [int(s) for s in z["sizes"]]
        if tuple(sizes) != tuple(cfg.generator.id_sizes) or len(codes) != items.height + 1:
            raise DataError(f"{run_dir}: semantic_ids.npz (sizes {sizes}, {len(codes) - 1} items) "
                            f"does not match config.toml / items.parquet; run {hint} again")
        model = Text2Items(cfg.generator)
        model.load_state_dict(torch.load(run_dir / "generator.pt", map_location="cpu",
                                         weights_only=True))
        model.eval()
        ranker = None
        if (run_dir / "cross_encoder").is_dir():
            from genrec.models.cross_encoder import CrossEncoderRanker

            ranker = CrossEncoderRanker.load(run_dir / "cross_encoder")
        ds_dir = Path(info.get("dataset_dir", "")) if info.get("dataset_dir") else None
        return cls(*_columns(items), generator=model, ranker=ranker, depth=cfg.ranker.depth,
                   run_dir=run_dir, dataset_dir=ds_dir if ds_dir and ds_dir.is_dir() else None)

    # ---- indexes -------------------------------------------------------------------------
    def bm25(self) -> Any:
        if self._bm25 is None:
            from genrec.retrieval.bm25 import BM25

            self._bm25 = BM25().fit(self.texts)  # document i = item_idx i; PAD's "" never matches
        return self._bm25

    def minilm(self) -> Any:
        if self._minilm is None:
            from genrec.retrieval.text import build_text_index

            self._minilm = build_text_index(self.texts[1:], "minilm", cache_dir=self.run_dir,
                                            dataset_dir=self.dataset_dir)
        return self._minilm

    def tokenizer(self) -> Any:
        if self.generator is not None:
            return self.generator.tokenizer()
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer()
        return self._tokenizer

    def note(self, query: str) -> str | None:
        """A warning for a query the tokenizer mostly cannot read (else None)."""
        unk = unknown_share(self.tokenizer(), query)
        if unk >= UNKNOWN_NOTE:
            return (f"{unk:.0%} of the query's word pieces are unknown to the MiniLM tokenizer "
                    f"([UNK]); results are likely unrelated to it (the models read English "
                    f"best)")
        return None

    # ---- search --------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, method: str = "generator+ce") -> SearchResult:
        """The top ``k`` items for ``query`` by ``method`` (one of METHODS)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("empty query: give some words to search for")
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; use one of {', '.join(METHODS)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = query.strip()
        gen = ce = None
        if method == "bm25":
            items, scores = self.bm25().search(query, k)
        elif method == "minilm":
            items, scores = self.minilm().search(query, k)
        else:
            if self.generator is None:
                raise ValueError("this search has no generator; load a run directory made by "
                                 "`genrec search train`")
            if method == "generator+ce" and self.ranker is None:
                raise ValueError("this run has no cross-encoder (trained with ranker.enabled = "
                                 "false); use method 'generator', or train with the ranker")
            width = k if method == "generator" else max(k, self.depth)
            beam = max(self.generator.config.beam_size, width)
            with torch.inference_mode():
                ids, logp = self.generator.generate([query], width, beam)
            keep = torch.isfinite(logp[0])
            items, gen = ids[0][keep].numpy(), logp[0][keep].numpy()
            scores = gen
            if method == "generator+ce" and len(items):
                ce = np.asarray(self.ranker.score(query, items.tolist(), self.texts), np.float64)
                order = np.lexsort((np.arange(len(ce)), -ce))[:k]  # CE desc, generator order on ties
                items, gen, ce, scores = items[order], gen[order], ce[order], ce[order]
        items = np.asarray(items, dtype=np.int64)[:k]
        return SearchResult(method, items, np.asarray(scores)[:k],
                            None if gen is None else gen[:k], None if ce is None else ce[:k],
                            note=self.note(query),
                            titles=[str(self.titles[i]) for i in items],
                            item_ids=[str(self.item_ids[i]) for i in items])


def _columns(items: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(texts, titles, item_ids) aligned to item_idx from a run's items table."""
    n = items.height
    if items["item_idx"].to_list() != list(range(1, n + 1)):
        raise DataError("items.parquet must hold item_idx 1..n exactly once")
    return ([""] + items["text"].to_list(), [""] + items["title"].to_list(),
            [""] + items["item_id"].cast(pl.Utf8).to_list())


# ---- evaluation ------------------------------------------------------------------------------
def evaluate_search(search_fn: Callable[[str, int], np.ndarray], qs: QuerySet, stage: str,
                    k: int = 10, n: int | None = None, seed: int = 0, progress: bool = False
                    ) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics (``text_queries.metrics``) of ``search_fn(query, k) -> item_idx`` on a seeded
    sample of ``n`` (all if None) queries of ``stage``, and each query's latency in seconds."""
    from tqdm.auto import tqdm

    queries, relevant, held = qs.stage(stage)
    pick = np.arange(len(queries))
    if n is not None and n < len(queries):
        pick = np.sort(np.random.default_rng(seed).choice(len(queries), n, replace=False))
    ranked, seconds = [], []
    for j in tqdm(pick, desc=f"{stage} queries", disable=not progress, leave=False):
        t0 = time.perf_counter()
        ranked.append(np.asarray(search_fn(qs.queries[queries[j]], k)))
        seconds.append(time.perf_counter() - t0)
    out = metrics(ranked, [relevant[j] for j in pick], [held[j] for j in pick], k,
                  [qs.kinds[queries[j]] for j in pick])
    return out, np.array(seconds)


# ---- training --------------------------------------------------------------------------------
def _semantic_ids(ds: Any, cfg: TextSearchConfig, fields: list[str] | None, log: Callable
                  ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """Codes (n_items + 1, T), sizes and meta: the dataset's ID file, built when missing."""
    from genrec.features.store import vectors_path
    from genrec.semantic_ids.store import build_semantic_ids, load_semantic_ids, semantic_ids_path

    ids = cfg.ids
    if not vectors_path(ds, ids.vectors).is_file():
        from genrec.features import EncoderOptions, embed_items, make_encoder

        log(f"embedding {ds.n_items:,} item texts with {ids.vectors} "
            f"({fields or 'all text fields'})")
        embed_items(ds, make_encoder(ids.vectors, EncoderOptions(progress=True)), fields=fields,
                    name=ids.vectors)
    name = ids.file_name()
    if not semantic_ids_path(ds, name).is_file():
        log(f"building semantic IDs {name} ({ids.method} {ids.levels}x{ids.codebook_size})")
        build_semantic_ids(ds, ids.vectors, ids.method, name=name, levels=ids.levels,
                           codebook_size=ids.codebook_size, seed=ids.seed)
    return load_semantic_ids(ds, name)


class _PairBatches:
    """Seeded, shuffled batches of training (query, item) pairs, tokenised once up front."""

    def __init__(self, model: Text2Items, qs: QuerySet, batch_size: int, seed: int) -> None:
        enc = model.encode(qs.queries)  # (Q, L) every query, padded to the longest
        self.tokens, self.lengths = enc.tokens, enc.mask.sum(1)
        self.q, self.items = (torch.from_numpy(a) for a in qs.pairs("train"))
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.q) // self.batch_size)

    def __call__(self, epoch: int):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.q), generator=g)
        for lo in range(0, len(order), self.batch_size):
            rows = order[lo:lo + self.batch_size]
            q = self.q[rows]
            width = int(self.lengths[q].max())  # trim the all-PAD columns of this batch
            tok = self.tokens[q, :width]
            yield QueryBatch(tok, tok > 0, self.items[rows])


def _mine(model: Text2Items, qs: QuerySet, cfg: RankerConfig, seed: int, log: Callable,
          progress: bool) -> tuple[list[str], list[list[int]], list[list[int]]]:
    """(queries, train positives, generator candidates) for a seeded sample of training queries."""
    from tqdm.auto import tqdm

    q, i = qs.pairs("train")
    pos: dict[int, list[int]] = {}
    for a, b in zip(q.tolist(), i.tolist()):
        pos.setdefault(a, []).append(b)
    keys = np.array(sorted(pos))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(keys), min(cfg.train_queries, len(keys)), replace=False))
    queries = [qs.queries[keys[j]] for j in pick]
    # a category query has hundreds of items: a few positives each keep the examples balanced
    positives = [rng.permutation(pos[keys[j]])[:cfg.positives].tolist() for j in pick]
    cands: list[list[int]] = []
    log(f"mining hard negatives: generator top-{cfg.candidates} of {len(queries):,} training "
        f"queries")
    with torch.inference_mode():
        for lo in tqdm(range(0, len(queries), 32), desc="mining", leave=False,
                       disable=not progress):
            ids, logp = model.generate(queries[lo:lo + 32], cfg.candidates,
                                       max(cfg.candidates, 20))
            cands += [r[torch.isfinite(s)].tolist() for r, s in zip(ids, logp)]
    # a training item of the query left out of its positives must not become a negative;
    # held-out (valid/test) items are unknown here and may be drawn as negatives, as in real use
    known = [set(pos[keys[j]]) for j in pick]
    cands = [[c for c in cs if c not in kn] for cs, kn in zip(cands, known)]
    return queries, positives, cands


def _write_json(path: Path, data: Any) -> None:
    """(Inside the run's atomic temporary directory: no per-file atomicity needed.)"""
    path.write_text(json.dumps(data, indent=2, default=str))


def train_text_search(cfg: TextSearchConfig, out: str | Path, progress: bool = True,
                      log: Callable[[str], None] = print) -> TextSearch:
    """Build the whole system (module docstring) into run directory ``out``; returns it loaded."""
    from genrec import __version__
    from genrec.data.prepare import load_dataset
    from genrec.features.text import item_texts

    cfg.validate()
    if cfg.ranker.enabled:  # fail before the long part, not after it
        try:
            import genrec.models.cross_encoder  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"ranker.enabled is true but genrec.models.cross_encoder cannot be "
                              f"imported ({e}); --set ranker.enabled=false trains the generator "
                              f"alone") from None
    out = Path(out)
    check_replaceable(out, "run.json", "text-search run")  # before the long part, not after it
    t_all = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ds = load_dataset(cfg.data)
    fields = list(cfg.text_fields) or None
    texts, _, tpl = item_texts(ds.items.sort("item_idx"), fields)
    items = pl.DataFrame({"item_idx": ds.items.sort("item_idx")["item_idx"],
                          "item_id": ds.items.sort("item_idx")["item_id"].cast(pl.Utf8),
                          "title": [str(t) for t in ds.titles()[1:]], "text": texts})
    qs = build_queries(ds.items, cfg.queries)
    log(f"{ds.name}: {ds.n_items:,} items; queries {qs.summary()}")
    codes, sizes, sid_meta = _semantic_ids(ds, cfg, list(tpl.fields), log)

    with atomic_dir(out, marker="run.json", what="text-search run") as tmp:
        tokenizer = load_tokenizer(cfg.generator.tokenizer)
        cfg.generator.n_items, cfg.generator.id_sizes = ds.n_items, tuple(sizes)
        cfg.generator.vocab_size = len(tokenizer)
        model = Text2Items(cfg.generator)
        model._tokenizer = tokenizer
        model.set_semantic_ids(torch.from_numpy(codes))
        n_params = sum(p.numel() for p in model.parameters())
        batches = _PairBatches(model, qs, cfg.train.batch_size, cfg.train.seed)
        vq, vrel, vheld = qs.stage("valid")
        pick = np.random.default_rng(cfg.eval.seed).permutation(len(vq))[:cfg.eval.valid_queries]
        ev = cfg.eval

        def validate() -> dict[str, float]:
            ranked = []
            for lo in range(0, len(pick), 64):
                ids, _ = model.generate([qs.queries[vq[j]] for j in pick[lo:lo + 64]], ev.k,
                                        ev.valid_beam)
                ranked += list(ids.numpy())
            m = metrics(ranked, [vrel[j] for j in pick], [vheld[j] for j in pick], ev.k)
            return {k: v for k, v in m.items() if isinstance(v, float)}

        c = model.config
        log(f"generator: {n_params:,} parameters (T5 {c.n_layers}+{c.n_decoder_layers} layers, "
            f"d_model {c.dim}); {len(batches.q):,} training pairs, {len(batches)} steps per "
            f"epoch; budget {cfg.train.max_minutes} min")
        t0 = time.perf_counter()
        result = fit(model, cfg.train, batches, validate if len(pick) else None,
                     run_dir=tmp / "generator", steps_per_epoch=len(batches), progress=progress)
        gen_seconds = time.perf_counter() - t0
        log(f"generator trained: {result.summary()}")
        for name in ("checkpoint.pt", "best.pt"):  # optimizer state: not needed to serve
            (tmp / "generator" / name).unlink(missing_ok=True)
        torch.save(model.state_dict(), tmp / "generator.pt")
        np.savez(tmp / "semantic_ids.npz", codes=codes, sizes=np.array(sizes))
        _write_json(tmp / "semantic_ids.json", sid_meta)
        items.write_parquet(tmp / "items.parquet")
        qs.save(tmp / "queries.parquet")

        ranker, ranker_info, ce_seconds = None, {"enabled": False}, 0.0
        if cfg.ranker.enabled:
            from genrec.models.cross_encoder import CrossEncoderConfig, CrossEncoderRanker

            t1 = time.perf_counter()
            queries, positives, cands = _mine(model, qs, cfg.ranker, cfg.eval.seed, log,
                                              progress)
            ranker = CrossEncoderRanker(from_dict(CrossEncoderConfig, cfg.ranker.params,
                                                  prefix="ranker.params."))
            fit_info = ranker.fit(queries, positives, cands, [""] + texts)
            ranker.save(tmp / "cross_encoder")
            ce_seconds = time.perf_counter() - t1
            ranker_info = {"enabled": True, "queries": len(queries), "fit": fit_info,
                           "seconds_with_mining": round(ce_seconds, 1)}
            log(f"cross-encoder trained in {ce_seconds:.0f} s: {fit_info}")

        (tmp / "config.toml").write_text(to_toml(to_dict(cfg)))
        search = TextSearch(*_columns(items), generator=model, ranker=ranker,
                            depth=cfg.ranker.depth, run_dir=tmp, dataset_dir=ds.path)
        best = [h.get("valid", {}) for h in result.history if h["epoch"] == result.best_epoch]
        scores: dict[str, Any] = {"valid_generator": best[0] if best else {}}
        if ev.test_queries:
            for method in ("generator", "generator+ce") if ranker else ("generator",):
                m, sec = evaluate_search(lambda q, k: search.search(q, k, method).items, qs, "test",
                                         ev.k, ev.test_queries, ev.seed)
                p50 = round(1e3 * float(np.median(sec)), 2)
                scores[f"test_{method}"] = {**m, "latency_p50_ms": p50}
                log(f"test ({m['n_queries']} queries) {method}: Recall@{ev.k} {m[f'Recall@{ev.k}']}"
                    f" NDCG@{ev.k} {m[f'NDCG@{ev.k}']}")
        _write_json(tmp / "metrics.json", scores)
        _write_json(tmp / "run.json", {
            "system": "text2items", "dataset": ds.name, "dataset_dir": str(ds.path),
            "n_items": ds.n_items, "text_template": tpl.describe(), "queries": qs.summary(),
            "semantic_ids": {k: sid_meta.get(k) for k in ("name", "method", "vectors", "sizes",
                                                           "collision_rate", "path")},
            "generator": {"n_params": n_params, "train": result.summary(),
                          "seconds": round(gen_seconds, 1)},
            "ranker": ranker_info, "seconds": round(time.perf_counter() - t_all, 1),
            "versions": {"genrec": __version__, "torch": torch.__version__}})
    search.run_dir = out
    return search
