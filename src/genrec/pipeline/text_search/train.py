"""Training a text-search run: ``train_text_search(cfg, out)``, and ``evaluate_search``.

``train_text_search(cfg, out)`` builds the whole system: queries and a held-out split from the
item text (``genrec.pipeline.text_queries``), or on a dataset of people's queries (lastfm-tags,
tomt-books) those queries, their split and item text (``genrec.pipeline.human_queries``; the
item vectors are then encoded from that text, by MiniLM fine-tuned on the training pairs first
with ``finetune_encoder``), semantic IDs from MiniLM vectors by RQ-KMeans
(``genrec.semantic_ids``), the generator trained by the one trainer (early stopping on VALID
NDCG@10 of a fixed query sample), hard negatives mined with the generator, the cross-encoder.
The run directory (written atomically) is enough to serve without the dataset:

    config.toml          the resolved TextSearchConfig (generator sizes filled in)
    run.json             dataset, query and semantic-ID summaries, timings, versions
    items.parquet        item_idx, item_id, title, text (what BM25 / MiniLM / the ranker read)
    queries.parquet      every (query, item) pair with its split (train / valid / test)
    semantic_ids.npz     codes (n_items + 1, T) and sizes; semantic_ids.json their report
    generator.pt         Text2Items weights; generator/ the trainer's log and curves
    encoder/             with finetune_encoder: the fine-tuned MiniLM the generator reads with
    cross_encoder/       CrossEncoderRanker.save (absent with ranker.enabled = false)
    metrics.json         valid (selection) and test metrics of a query sample

Example:
    >>> cfg = load_config("configs/text2items_beauty.toml", ["train.max_minutes=5"])  # doctest: +SKIP
    >>> search = train_text_search(cfg, Path("runs/text2items_beauty"))       # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from genrec._files import atomic_dir, check_replaceable
from genrec.config import ConfigError, from_dict, to_dict, to_toml
from genrec.models.text2items import QueryBatch, Text2Items, load_tokenizer
from genrec.pipeline.human_queries import PROTOCOLS, human_queries
from genrec.pipeline.text_queries import QuerySet, build_queries, metrics
from genrec.pipeline.text_search.config import RankerConfig, TextSearchConfig
from genrec.pipeline.text_search.search import TextSearch, _columns
from genrec.training.trainer import fit

__all__ = ["train_text_search", "evaluate_search"]


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
def _semantic_ids(ds: Any, cfg: TextSearchConfig, fields: list[str] | None, log: Callable,
                  human_vectors: str | None = None
                  ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """Codes (n_items + 1, T), sizes and meta: the dataset's ID file, built when missing."""
    from genrec.features.store import vectors_path
    from genrec.semantic_ids.store import build_semantic_ids, load_semantic_ids, semantic_ids_path

    ids = cfg.ids
    if human_vectors:  # people's queries: the item vectors of their split's item text
        ids = replace(ids, vectors=human_vectors)
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


def _human_vectors(ds: Any, texts: list[str], protocol: str, encoder: str, log: Callable,
                   tuned: Any = None, max_length: int = 128) -> str:
    """The name of the item vectors of a people's-query protocol, encoded when missing. Its
    item text depends on the query split (T1: training tags only), so the name carries a hash
    of the texts, ``<encoder>-t1-<hash>``, and never meets `genrec embed items`' vectors. With
    ``tuned`` (a fine-tuned SentenceTransformer) they are its vectors, ``<encoder>-ft-t1-<hash>``
    with its weights in the hash."""
    from genrec.features import EncoderOptions, make_encoder
    from genrec.features.store import content_hash, save_vectors, vectors_path

    ids = ds.items.sort("item_idx")["item_id"].cast(pl.Utf8).to_list()
    digest = content_hash(ids, texts)
    if tuned is not None:  # and the fine-tuned weights (a digest of each tensor's sums)
        import hashlib

        sums = "".join(f"{k}:{v.float().sum().item():.6e}:{v.float().abs().sum().item():.6e}"
                       for k, v in tuned.state_dict().items())
        digest = "sha256:" + hashlib.sha256((digest + sums).encode()).hexdigest()
    name = f"{encoder}-{'ft-' if tuned is not None else ''}{protocol.lower()}-" \
           f"{digest.split(':')[1][:10]}"
    if not vectors_path(ds, name).is_file():
        log(f"embedding {len(texts):,} {protocol} item texts with {encoder}"
            f"{' (fine-tuned)' if tuned is not None else ''} into {name}")
        if tuned is None:
            enc = make_encoder(encoder, EncoderOptions(progress=True))
            vectors, about = enc.encode(texts), enc.describe()
        else:
            from genrec.pipeline.human_baselines import BiEncoder

            vectors = BiEncoder([""] + texts, tuned, max_length).items.numpy()
            about = {"encoder": f"{encoder} fine-tuned (text_search.finetune_encoder)"}
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        save_vectors(ds, name, ids, vectors, {**about, "kind": "text",
                                              "text_template": f"{protocol} item text",
                                              "content_hash": digest, "normalized": True})
    return name


class _PairBatches:
    """Seeded, shuffled batches of training (query, item) pairs, tokenised once up front. With
    the frozen MiniLM encoder its token states are computed once too (bfloat16, every text in
    chunks of 64): an epoch then costs the bridge and the decoder only, not six BERT layers."""

    def __init__(self, model: Text2Items, qs: QuerySet, batch_size: int, seed: int,
                 item_texts: list[str] = (), progress: bool = False) -> None:
        from tqdm.auto import tqdm

        # DSI indexing: item i's text is one more "query" whose item is i (item_texts[0] = item 1)
        keep = [i for i, t in enumerate(item_texts) if t.strip()]
        enc = model.encode(qs.queries + [item_texts[i] for i in keep])  # (Q + N, L) padded
        self.tokens, self.lengths = enc.tokens, enc.mask.sum(1)
        self.states = None  # (Q + N, L, 384) bfloat16
        if model.bert is not None:
            self.states = torch.zeros(*self.tokens.shape, model.bert.config.hidden_size,
                                      dtype=torch.bfloat16)
            by_length = torch.argsort(self.lengths)  # similar lengths share a chunk: less padding
            for lo in tqdm(range(0, len(by_length), 64), desc="encoding queries (frozen)",
                           disable=not progress, leave=False):
                rows = by_length[lo:lo + 64]
                width = int(self.lengths[rows].max())
                tok = self.tokens[rows, :width]
                self.states[rows, :width] = model.frozen_states(QueryBatch(tok, tok > 0)).to(
                    torch.bfloat16)
        q, items = qs.pairs("train")
        q = np.concatenate([q, len(qs.queries) + np.arange(len(keep))])
        items = np.concatenate([items, np.array(keep, dtype=np.int64) + 1])
        self.q, self.items = torch.from_numpy(q), torch.from_numpy(items)
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
            states = self.states[q, :width] if self.states is not None else None
            yield QueryBatch(tok, tok > 0, self.items[rows], states)


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
    for lo in tqdm(range(0, len(queries), 32), desc="mining", leave=False, disable=not progress):
        cands += [r.tolist() for r in model.ranked_lists(queries[lo:lo + 32], cfg.candidates,
                                                         max(cfg.candidates, 20))]
    # a training item of the query left out of its positives must not become a negative;
    # held-out (valid/test) items are unknown here and may be drawn as negatives, as in real use
    known = [set(pos[keys[j]]) for j in pick]
    cands = [[c for c in cs if c not in kn] for cs, kn in zip(cands, known)]
    return queries, positives, cands


def _choose_fuse_weight(model: Text2Items, ranker: Any, qs: QuerySet, pick: np.ndarray,
                        texts: list[str], cfg: TextSearchConfig, log: Callable) -> float:
    """``ranker.fuse_weight`` with the best validation NDCG@k (``human_baselines.
    fusion_weight``) over the generator's top ``ranker.depth`` of the sampled valid queries."""
    from genrec.pipeline.human_baselines import ce_scores, fusion_weight

    vq, vrel, _ = qs.stage("valid")
    queries = [qs.queries[vq[j]] for j in pick]
    lists = model.ranked_lists(queries, cfg.ranker.depth,
                               max(cfg.ranker.depth, cfg.eval.valid_beam))
    scores = ce_scores(ranker, queries, lists, texts, cfg.ranker.depth)
    weight = fusion_weight(lists, scores, [vrel[j] for j in pick], cfg.eval.k)
    log(f"cross-encoder fusion weight {weight} (best valid NDCG@{cfg.eval.k} of "
        f"{len(queries)} queries)")
    return weight


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
    if cfg.finetune_encoder and cfg.generator.tokenizer:
        raise ConfigError("finetune_encoder fine-tunes the bundled MiniLM, which then becomes "
                          "generator.tokenizer: leave generator.tokenizer empty")
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
    tuned, tune_info = None, {"enabled": False}
    if ds.meta.get("format") in PROTOCOLS:  # people's queries: item text depends on their split
        hq = human_queries(ds, cfg.human)
        qs, texts, fields = hq.queries, hq.texts[1:], None
        text_template = f"{hq.protocol} item text (genrec.pipeline.human_queries)"
        if cfg.finetune_encoder:
            from genrec.pipeline.human_baselines import finetune_biencoder

            log(f"fine-tuning the MiniLM bi-encoder on the training pairs "
                f"(budget {cfg.encoder.max_minutes} min)")
            t0, cpu0, threads = time.perf_counter(), time.process_time(), torch.get_num_threads()
            tuned, tune_info = finetune_biencoder(hq, cfg.encoder, log=log)
            tune_info = {"enabled": True, **tune_info,
                         "cpu_seconds": round(time.process_time() - cpu0, 1),
                         "wall_seconds": round(time.perf_counter() - t0, 1)}
            torch.set_num_threads(threads)  # finetune_biencoder set its own
        human_vectors = _human_vectors(ds, texts, hq.protocol, cfg.ids.vectors, log, tuned,
                                       cfg.encoder.max_length)
    else:
        if cfg.finetune_encoder:
            raise ConfigError(f"finetune_encoder needs a dataset of people's queries "
                              f"(lastfm-tags, tomt-books); {ds.name} has none: set "
                              f"finetune_encoder = false")
        texts, _, tpl = item_texts(ds.items.sort("item_idx"), list(cfg.text_fields) or None)
        qs, fields, text_template = build_queries(ds.items, cfg.queries), list(tpl.fields), \
            tpl.describe()
        human_vectors = None
    items = pl.DataFrame({"item_idx": ds.items.sort("item_idx")["item_idx"],
                          "item_id": ds.items.sort("item_idx")["item_id"].cast(pl.Utf8),
                          "title": [str(t) for t in ds.titles()[1:]], "text": texts})
    log(f"{ds.name}: {ds.n_items:,} items; queries {qs.summary()}")
    codes, sizes, sid_meta = _semantic_ids(ds, cfg, fields, log, human_vectors)

    with atomic_dir(out, marker="run.json", what="text-search run") as tmp:
        if tuned is not None:  # the generator reads with it (frozen); config.toml says "encoder"
            tuned.save(str(tmp / "encoder"))
            cfg.generator.tokenizer = str(tmp / "encoder")
        tokenizer = load_tokenizer(cfg.generator.tokenizer)
        cfg.generator.n_items, cfg.generator.id_sizes = ds.n_items, tuple(sizes)
        cfg.generator.vocab_size = len(tokenizer)
        model = Text2Items(cfg.generator)
        model._tokenizer = tokenizer
        model.set_semantic_ids(torch.from_numpy(codes))
        if cfg.generator.code_prior:  # the IDs' own item vectors give the prior's centroids
            from genrec.features.store import load_vectors

            vectors, _, _ = load_vectors(ds, human_vectors or cfg.ids.vectors)
            model.set_code_vectors(vectors)
        n_params = sum(p.numel() for p in model.parameters())
        batches = _PairBatches(model, qs, cfg.train.batch_size, cfg.train.seed,
                               texts if cfg.index_items else (), progress)
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
            f"d_model {c.dim}, {c.encoder} encoder); {len(batches.q):,} training pairs"
            f"{' (one item-text pair per item among them)' if cfg.index_items else ''}, "
            f"{len(batches)} steps per epoch; budget {cfg.train.max_minutes} min")
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = fit(model, cfg.train, batches, validate if len(pick) else None,
                     run_dir=tmp / "generator", steps_per_epoch=len(batches), progress=progress)
        gen_seconds, gen_cpu = time.perf_counter() - t0, time.process_time() - cpu0
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

            t1, cpu1 = time.perf_counter(), time.process_time()
            queries, positives, cands = _mine(model, qs, cfg.ranker, cfg.eval.seed, log,
                                              progress)
            ranker = CrossEncoderRanker(from_dict(CrossEncoderConfig, cfg.ranker.params,
                                                  prefix="ranker.params."))
            fit_info = ranker.fit(queries, positives, cands, [""] + texts)
            ranker.save(tmp / "cross_encoder")
            if cfg.ranker.choose_fuse_weight and len(pick):
                cfg.ranker.fuse_weight = _choose_fuse_weight(model, ranker, qs, pick, [""] + texts,
                                                             cfg, log)
            ce_seconds, ce_cpu = time.perf_counter() - t1, time.process_time() - cpu1
            ranker_info = {"enabled": True, "queries": len(queries), "fit": fit_info,
                           "seconds_with_mining": round(ce_seconds, 1),
                           "cpu_seconds_with_mining": round(ce_cpu, 1),
                           "fuse_weight": cfg.ranker.fuse_weight}
            log(f"cross-encoder trained in {ce_seconds:.0f} s: {fit_info}")

        if tuned is not None:  # relative to the run directory (TextSearch.load resolves it)
            cfg.generator.tokenizer = "encoder"
        (tmp / "config.toml").write_text(to_toml(to_dict(cfg)))
        search = TextSearch(*_columns(items), generator=model, ranker=ranker,
                            depth=cfg.ranker.depth, run_dir=tmp, dataset_dir=ds.path,
                            fuse_weight=cfg.ranker.fuse_weight)
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
            "n_items": ds.n_items, "text_template": text_template, "queries": qs.summary(),
            "semantic_ids": {k: sid_meta.get(k) for k in ("name", "method", "vectors", "sizes",
                                                           "collision_rate", "path")},
            "generator": {"n_params": n_params, "train": result.summary(),
                          "seconds": round(gen_seconds, 1), "cpu_seconds": round(gen_cpu, 1)},
            "encoder_finetune": tune_info, "ranker": ranker_info,
            "seconds": round(time.perf_counter() - t_all, 1),
            "versions": {"genrec": __version__, "torch": torch.__version__}})
    search.run_dir = out
    return search
