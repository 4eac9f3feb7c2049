"""Text -> items on held-out queries: BM25, MiniLM bi-encoder, generator, generator + cross-encoder.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_search.py \\
        [--config configs/text2items_beauty.toml] [--max-minutes 10] [--queries 500] [--no-record]

Steps: (1) ``genrec search train`` (``genrec.pipeline.text_search.train_text_search``): queries
and the per-item held-out split from the item text, semantic IDs (MiniLM vectors -> RQ-KMeans),
the Text2Items generator trained under a ``--max-minutes`` wall budget with early stopping on
VALID NDCG@10, hard negatives mined with the generator, the cross-encoder trained under its own
``--max-minutes`` budget (``--ce-minutes`` sets it apart); ``--reuse`` skips this when the run
directory exists. (2) The same seeded sample of ``--queries`` TEST queries answered by every
method, one query at a time on one thread, timing each call (p50 / p95 latency). Metrics follow
``genrec.pipeline.text_queries``: Recall@10 over min(10, |relevant|) and NDCG@10 against ALL the
query's relevant items, and HeldOutRecall@10 over the query's held-out (test) items only, which
no method saw paired with it. BM25 and MiniLM are not trained; their index build is timed.

Rows go to BENCHMARKS.md (``_record.record``), table "Text search — held-out text queries".
Environment: GENREC_HOME / GENREC_DATA as for every benchmark.
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

from genrec.pipeline.text_queries import QuerySet  # noqa: E402
from genrec.pipeline.text_search import (METHODS, TextSearch, evaluate_search,  # noqa: E402
                                         load_config, train_text_search)

TABLE = "Text search — held-out text queries"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(_REPO / "configs" / "text2items_beauty.toml"),
                    help="a TOML preset or a dataset name")
    ap.add_argument("--max-minutes", type=float, default=10.0,
                    help="wall budget of EACH training (generator, cross-encoder)")
    ap.add_argument("--ce-minutes", type=float, default=None, help="cross-encoder budget "
                                                                   "(default: --max-minutes)")
    ap.add_argument("--queries", type=int, default=500,
                    help="test queries evaluated (a seeded sample)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. "
                                                               "ranker.depth=20")
    ap.add_argument("--out", type=Path, default=None, help="run directory")
    ap.add_argument("--reuse", action="store_true", help="evaluate an existing run directory")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    wall0 = time.perf_counter()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; choose from {METHODS}")

    ce_minutes = args.ce_minutes or args.max_minutes
    sets = [f"train.max_minutes={args.max_minutes}", f"ranker.params.max_minutes={ce_minutes}",
            "train.threads=1", "ranker.params.threads=1", "eval.test_queries=0", *args.set]
    if "generator+ce" not in methods:
        sets.append("ranker.enabled=false")
    cfg = load_config(args.config, sets)
    out = args.out or _REPO / "runs" / "bench" / f"text2items_{Path(cfg.data).name}"
    if not (args.reuse and (out / "generator.pt").is_file()):
        log(f"training into {out}: generator budget {args.max_minutes} min, cross-encoder "
            f"{ce_minutes} min")
        train_text_search(cfg, out, progress=False, log=log)
    info = json.loads((out / "run.json").read_text())
    search = TextSearch.load(out)
    qs = QuerySet.load(out / "queries.parquet")
    gen, rk = info["generator"], info["ranker"]
    log(f"queries: {info['queries']}")
    log(f"generator: {gen['n_params']:,} params, {gen['train']}")
    log(f"ranker: {rk}")

    results = {}
    for method in methods:
        if method == "generator+ce" and search.ranker is None:
            log("skipping generator+ce: the run has no cross-encoder")
            continue
        t0 = time.perf_counter()
        search.search("warm up", 10, method)  # builds the BM25 / faiss index, loads weights
        build = time.perf_counter() - t0
        m, sec = evaluate_search(lambda q, k: search.search(q, k, method).items, qs, "test",
                                 cfg.eval.k, args.queries, cfg.eval.seed)
        p50, p95 = (1e3 * float(np.percentile(sec, p)) for p in (50, 95))
        results[method] = {**m, "p50_ms": p50, "p95_ms": p95, "build_s": build,
                           "eval_s": float(sec.sum())}
        log(f"{method:>13}: Recall@10 {m['Recall@10']:.4f}  NDCG@10 {m['NDCG@10']:.4f}  "
            f"HeldOutRecall@10 {m['HeldOutRecall@10']:.4f}  p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
            f"({m['n_queries']} queries; first call {build:.1f} s)")
        kinds = {k: v for k, v in m.items() if isinstance(v, dict)}
        for kind, km in kinds.items():
            log(f"{'':>13}  {kind}: Recall@10 {km['Recall@10']:.4f} NDCG@10 {km['NDCG@10']:.4f} "
                f"HeldOut {km['HeldOutRecall@10']:.4f} ({km['n_queries']} queries)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total = (time.perf_counter() - wall0) / 60
    log(f"done in {total:.1f} min; peak RSS {rss:.2f} GB")
    if args.no_record:
        return
    q = info["queries"]
    c = search.generator.config
    for method, r in results.items():
        if method == "generator":
            train = f"generator train {gen['seconds'] / 60:.1f} min ({gen['train']['stop_reason']})"
        elif method == "generator+ce":
            train = (f"generator train {gen['seconds'] / 60:.1f} min + cross-encoder "
                     f"{rk.get('seconds_with_mining', 0) / 60:.1f} min (mining included)")
        else:
            train = f"index build {r['build_s']:.1f} s (no training)"
        kinds = "; ".join(f"{k} R@10 {v['Recall@10']:.3f} N@10 {v['NDCG@10']:.3f} "
                          f"(n={v['n_queries']})" for k, v in r.items() if isinstance(v, dict))
        by_kind = ", ".join(f"{k} {v:,}" for k, v in q["by_kind"].items())
        record(TABLE, {
            "dataset": f"{info['dataset']} ({info['n_items']:,} items; {q['queries']:,} queries, "
                       f"{q['pairs']:,} (query, item) pairs)",
            "protocol": f"queries from item text ({by_kind}); per-item held-out pairs (test "
                        f"{q['test_pairs']:,}); {r['n_queries']} sampled test queries scored "
                        f"against ALL relevant items; 1 thread",
            "metrics": f"R@10 {r['Recall@10']:.4f} · N@10 {r['NDCG@10']:.4f} · HeldOutR@10 "
                       f"{r['HeldOutRecall@10']:.4f}; latency p50 {r['p50_ms']:.1f} ms, p95 "
                       f"{r['p95_ms']:.1f} ms; {kinds}",
            "wall time": f"{train}; eval {r['eval_s']:.0f} s; script total {total:.1f} min",
            "peak memory": f"{rss:.2f} GB peak RSS (process)",
            "method": method,
            "notes": (f"generator T5 {c.n_layers}+{c.n_decoder_layers} d{c.dim}, "
                      f"{gen['n_params'] / 1e6:.1f}M params, beam {c.beam_size}; semantic IDs "
                      f"{info['semantic_ids']['sizes']}; rerank depth {search.depth}; "
                      f"{args.note}").strip("; "),
        })


if __name__ == "__main__":
    main()
