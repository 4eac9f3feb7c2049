"""Text -> items on human-written queries (T1 Last.fm tags, T2 TOMT books): every baseline.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_human.py lastfm-tags \\
        [--methods popularity,bm25,minilm,minilm-ft,union,ce] [--ft-minutes 10] \\
        [--ce-minutes 10] [--ce-loss listwise] [--depth 30] [--stage test] \\
        [--generator RUN_DIR] [--no-record]

The query set is ``genrec.pipeline.human_queries`` (T1: tags with >= 10 artists, tags split
80/10/10 seeded, item text = name + the most frequent TRAIN tags; T2: the authors' splits, query
= title + description, item text = title + description); the stages are
``genrec.pipeline.human_baselines``: popularity, BM25 over item text, the MiniLM bi-encoder
zero-shot and fine-tuned on the training pairs (in-batch negatives, ``--ft-minutes``; or
``--ft-from RUN``: the encoder a ``finetune_encoder`` run fine-tuned for its generator), the union
of BM25 and the (fine-tuned, else zero-shot) bi-encoder; with ``--generator RUN`` (a ``genrec
search train`` run, e.g. ``configs/text2items_lastfm.toml``) its generator too, and its union
with that bi-encoder. The MiniLM cross-encoder, trained on
``--ce-queries`` training queries with hard negatives from BM25 and the bi-encoder
(``--ce-minutes``; ``--ce-loss listwise``: softmax over a positive and ``--ce-negatives``
negatives), re-ranks the top ``--depth`` of every stage: ``X+ce`` is its order alone, ``X+ce
fused`` its logits interpolated with the stage's order (``human_baselines.fuse``), the weight
chosen on the VALID queries (so with ``ce`` the stages also rank those). Every stage returns 100
candidates per ``--stage`` query (all of them: 145 / 233 test queries); metrics of
``human_queries.ranking_metrics``: Recall@10, NDCG@10, MRR@10 of the list and Recall@100 of the
candidates. CPU seconds (user + system of this process) of each training run and each stage's
ranking are measured with ``resource.getrusage``.

Rows go to BENCHMARKS.md (``_record.record``), table "Text search — human-written queries".
Environment: GENREC_HOME / GENREC_DATA as for every benchmark (the dataset is prepared once).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))

from _record import record  # noqa: E402

from genrec.pipeline import human_baselines as hb  # noqa: E402
from genrec.pipeline.human_queries import (HumanQueryConfig, human_queries,  # noqa: E402
                                           ranking_metrics)

TABLE = "Text search — human-written queries"
METHODS = ("popularity", "bm25", "minilm", "minilm-ft", "union", "ce")
DATASETS = {"lastfm-tags": "T1", "tomt-books": "T2"}
TEXT_TOKENS = {"T1": 64, "T2": 256}  # bi-encoder and cross-encoder max_length per protocol


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds of a block: ``with Clock() as c: ...; c.wall, c.cpu``."""

    def __enter__(self) -> "Clock":
        self.w0, self.c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, cpu_seconds() - self.c0


def generator_cost(run_dir: Path) -> str:
    info = json.loads((run_dir / "run.json").read_text())
    gen, ft = info["generator"], info.get("encoder_finetune", {})
    tuned = (f"its encoder fine-tuned first {ft['cpu_seconds']:.0f} CPU s / "
             f"{ft['wall_seconds']:.0f} s wall; " if ft.get("enabled") else "")
    return (f"{tuned}generator train {gen.get('cpu_seconds', '?')} CPU s / {gen['seconds']:.0f} "
            f"s wall (run.json, {gen['n_params'] / 1e6:.1f}M params, "
            f"{gen['train'].get('stop_reason', '?')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=list(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of "
                                                                 f"{','.join(METHODS)}")
    ap.add_argument("--stage", default="test", choices=["valid", "test"])
    ap.add_argument("--candidates", type=int, default=100, help="list length of each stage")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="T1 tag split and training samples")
    ap.add_argument("--item-tags", type=int, default=10, help="T1: training tags in item text")
    ap.add_argument("--max-length", type=int, default=None,
                    help="tokens per text for both encoders (default: 64 for T1, 256 for T2)")
    ap.add_argument("--ft-minutes", type=float, default=10.0)
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--ft-batch", type=int, default=32)
    ap.add_argument("--ft-from", type=Path, default=None,
                    help="a run trained with finetune_encoder: its encoder/ is the minilm-ft "
                         "stage (not fine-tuned again)")
    ap.add_argument("--ce-minutes", type=float, default=10.0)
    ap.add_argument("--ce-queries", type=int, default=1000, help="training queries of the CE")
    ap.add_argument("--ce-mined", type=int, default=20, help="hard negatives mined per stage")
    ap.add_argument("--ce-max-length", type=int, default=None,
                    help="tokens per (query, item) pair of the CE (default: --max-length)")
    ap.add_argument("--ce-loss", default="listwise", choices=["bce", "listwise"])
    ap.add_argument("--ce-negatives", type=int, default=7, help="negatives per positive")
    ap.add_argument("--ce-batch", type=int, default=32, help="(query, item) pairs per step")
    ap.add_argument("--ce-epochs", type=int, default=1)
    ap.add_argument("--ce-lr", type=float, default=2e-5)
    ap.add_argument("--ce-model", type=Path, default=None,
                    help="the CE's starting weights (a BERT folder, e.g. RUN/encoder); default: "
                         "the bundled MiniLM")
    ap.add_argument("--ce-stages", default="", help="comma-separated stages the CE re-ranks "
                                                    "(default: all but popularity)")
    ap.add_argument("--depth", type=int, default=30, help="candidates the CE re-ranks")
    ap.add_argument("--generator", type=Path, default=None,
                    help="a `genrec search train` run on this dataset: its generator becomes "
                         "one more candidate stage (and joins the union)")
    ap.add_argument("--beam", type=int, default=100, help="the generator's beam")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; choose from {METHODS}")
    torch.set_num_threads(1)
    wall0 = time.perf_counter()
    protocol = DATASETS[args.dataset]
    max_length = args.max_length or TEXT_TOKENS[protocol]

    from genrec.data.prepare import prepare

    ds = prepare(args.dataset)
    hq = human_queries(ds, HumanQueryConfig(seed=args.seed, item_tags=args.item_tags))
    qidx, relevant, _ = hq.queries.stage(args.stage)
    queries = [hq.queries.queries[q] for q in qidx]
    summary = hq.summary()
    log(f"{args.dataset} ({protocol}): {summary}")
    n = args.candidates
    # the cross-encoder's fusion weight is chosen on the validation queries, never the test ones
    vidx, v_relevant, _ = hq.queries.stage("valid")
    v_queries = [hq.queries.queries[q] for q in vidx]
    tune = "ce" in methods and args.stage == "test"

    lists: dict[str, list[np.ndarray]] = {}    # stage -> its lists of the --stage queries
    v_lists: dict[str, list[np.ndarray]] = {}  # ... of the validation queries (when tuning)
    cost: dict[str, str] = {}
    encoders: dict[str, hb.BiEncoder] = {}

    def run_stage(name: str, rank) -> Clock:
        """``rank(queries)`` on the --stage queries (timed) and, when tuning, the valid ones."""
        with Clock() as c:
            lists[name] = rank(queries)
        if tune:
            v_lists[name] = rank(v_queries)
        return c

    if "popularity" in methods:
        c = run_stage("popularity", lambda qs: hb.popularity_rank(hq, len(qs), n))
        cost["popularity"] = f"no training; {c.cpu:.1f} CPU s"
    if "bm25" in methods or "union" in methods or "ce" in methods:
        c = run_stage("bm25", lambda qs: hb.bm25_rank(hq.texts, qs, n))
        cost["bm25"] = f"no training; index + {len(queries)} queries {c.cpu:.1f} CPU s"
    if "minilm" in methods:
        with Clock() as enc:
            encoders["minilm"] = hb.BiEncoder(hq.texts, max_length=max_length)
        c = run_stage("minilm", lambda qs: encoders["minilm"].rank(qs, n))
        cost["minilm"] = f"no training; encode items + queries {enc.cpu + c.cpu:.0f} CPU s"
    if "minilm-ft" in methods and args.ft_from:  # the bi-encoder a run fine-tuned for its generator
        from genrec.config import load_toml

        info = json.loads((args.ft_from / "run.json").read_text()).get("encoder_finetune", {})
        if not info.get("enabled"):
            ap.error(f"--ft-from {args.ft_from} has no fine-tuned encoder (finetune_encoder off)")
        ft_length = load_toml(args.ft_from / "config.toml")["encoder"]["max_length"]
        with Clock() as enc:
            encoders["minilm-ft"] = hb.BiEncoder(
                hq.texts, hb.sentence_minilm(args.ft_from / "encoder"), max_length=ft_length)
        c = run_stage("minilm-ft", lambda qs: encoders["minilm-ft"].rank(qs, n))
        cost["minilm-ft"] = (f"fine-tuned by {args.ft_from.name} (its generator's encoder): "
                             f"{info['cpu_seconds']:.0f} CPU s / {info['wall_seconds']:.0f} s "
                             f"wall ({info['steps']}/{info['planned_steps']} steps, "
                             f"{ft_length} tokens); encode {enc.cpu + c.cpu:.0f} CPU s")
    elif "minilm-ft" in methods:
        cfg = hb.BiEncoderConfig(epochs=args.ft_epochs, batch_size=args.ft_batch,
                                 max_length=max_length, max_minutes=args.ft_minutes,
                                 seed=args.seed)
        with Clock() as train:
            model, info = hb.finetune_biencoder(hq, cfg, log=log)
        log(f"bi-encoder fine-tuned: {info}")
        with Clock() as enc:
            encoders["minilm-ft"] = hb.BiEncoder(hq.texts, model, max_length=max_length)
        c = run_stage("minilm-ft", lambda qs: encoders["minilm-ft"].rank(qs, n))
        cost["minilm-ft"] = (f"fine-tune {train.cpu:.0f} CPU s / {train.wall:.0f} s wall "
                             f"({info['steps']}/{info['planned_steps']} steps, "
                             f"{'stopped by time' if info['stopped_by_time'] else 'full'}); "
                             f"encode {enc.cpu + c.cpu:.0f} CPU s")
    if args.generator is not None:
        trained_on = json.loads((args.generator / "run.json").read_text())["queries"]
        if trained_on != hq.queries.summary():
            ap.error(f"--generator {args.generator} was trained on another query set "
                     f"({trained_on}); train it with the same dataset and human.seed")
        from genrec.pipeline.text_search import TextSearch

        generator = TextSearch.load(args.generator).generator  # loaded once, ranks both splits
        c = run_stage("generator",
                      lambda qs: generator.ranked_lists(qs, n, max(args.beam, n), 16))
        cost["generator"] = f"{generator_cost(args.generator)}; beam {args.beam} {c.cpu:.0f} CPU s"
    bi = "minilm-ft" if "minilm-ft" in lists else "minilm"
    if ("union" in methods or "ce" in methods) and bi not in encoders:
        encoders[bi] = hb.BiEncoder(hq.texts, max_length=max_length)
        run_stage(bi, lambda qs: encoders[bi].rank(qs, n))
    if "union" in methods:
        parts = [["bm25", bi]] + ([["generator", bi]] if "generator" in lists else [])
        for a, b in parts:
            name = f"union {a}+{b}"  # no parentheses: a row's key drops parenthesised text
            lists[name] = hb.union([lists[a], lists[b]], n)
            if tune:
                v_lists[name] = hb.union([v_lists[a], v_lists[b]], n)
            cost[name] = f"as {a} and {b}"

    if "ce" in methods:
        tq, tpos = hb.sample_train_queries(hq, args.ce_queries, args.seed)
        with Clock() as mine:
            mined = [hb.bm25_rank(hq.texts, tq, args.ce_mined),
                     encoders[bi].rank(tq, args.ce_mined)]
        params = {"max_length": args.ce_max_length or max_length, "batch_size": args.ce_batch,
                  "epochs": args.ce_epochs, "lr": args.ce_lr,
                  "negatives_per_query": args.ce_negatives, "loss": args.ce_loss, "threads": 1,
                  "max_minutes": args.ce_minutes, "score_dtype": "bfloat16", "seed": args.seed,
                  "model_path": str(args.ce_model) if args.ce_model else None}
        with Clock() as train:
            ranker, ce_info = hb.train_cross_encoder(hq, tq, tpos, mined, params,
                                                     seed=args.seed)
        log(f"cross-encoder trained: {ce_info}")
        ce_cost = (f"CE ({args.ce_loss}, 1+{args.ce_negatives} a group, "
                   + (f"from {args.ce_model.parent.name}/{args.ce_model.name}, "
                      if args.ce_model else "")
                   + f"{params['max_length']} tokens, lr {args.ce_lr:g}) train {train.cpu:.0f} "
                   f"CPU s / {train.wall:.0f} s wall ({ce_info['steps']} steps, "
                   f"{ce_info['pairs']:,} pairs, {ce_info['queries']} queries, mining "
                   f"{mine.cpu:.0f} CPU s)")
        for name in [m for m in list(lists) if m != "popularity" and m in cost]:
            if args.ce_stages and name not in args.ce_stages.split(","):
                continue
            with Clock() as c:
                scores = hb.ce_scores(ranker, queries, lists[name], hq.texts, args.depth)
            lists[f"{name}+ce"] = hb.fuse(lists[name], scores)
            cost[f"{name}+ce"] = f"{ce_cost}; re-rank top {args.depth} {c.cpu:.0f} CPU s"
            if tune:
                v_scores = hb.ce_scores(ranker, v_queries, v_lists[name], hq.texts, args.depth)
                w = hb.fusion_weight(v_lists[name], v_scores, v_relevant, args.k)
                lists[f"{name}+ce fused"] = hb.fuse(lists[name], scores, w)
                cost[f"{name}+ce fused"] = (f"as {name}+ce; z(CE) - {w} x ln(1 + rank), weight "
                                            f"chosen on {len(v_queries)} valid queries")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total = (time.perf_counter() - wall0) / 60
    results = {}
    for name, ranked in lists.items():
        if name not in cost:  # a stage computed only to feed union / ce
            continue
        m = ranking_metrics(ranked, relevant, args.k, n)
        results[name] = m
        log(f"{name:>24}: R@{args.k} {m[f'Recall@{args.k}']:.4f}  N@{args.k} "
            f"{m[f'NDCG@{args.k}']:.4f}  MRR@{args.k} {m[f'MRR@{args.k}']:.4f}  R@{n} "
            f"{m[f'Recall@{n}']:.4f}  ({cost[name]})")
    log(f"done in {total:.1f} min; peak RSS {rss:.2f} GB")
    if args.no_record:
        return
    s = summary
    for name, m in results.items():
        record(TABLE, {
            "dataset": f"{args.dataset} ({s['n_items']:,} items; {s['queries']:,} queries)",
            "protocol": f"{protocol}, {m['n_queries']} {args.stage} queries, seed {args.seed}"
                        + (f", item text = name + {args.item_tags} train tags"
                           if protocol == "T1" else ""),
            "method": name,
            "metrics": f"R@{args.k} {m[f'Recall@{args.k}']:.4f} · N@{args.k} "
                       f"{m[f'NDCG@{args.k}']:.4f} · MRR@{args.k} {m[f'MRR@{args.k}']:.4f} · "
                       f"R@{n} {m[f'Recall@{n}']:.4f}",
            "wall time": f"{cost[name]}; script total {total:.1f} min",
            "peak memory": f"{rss:.2f} GB peak RSS (process)",
            "notes": f"max_length {max_length}; 1 thread; {args.note}".strip("; "),
        }, metrics={k: v for k, v in m.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
