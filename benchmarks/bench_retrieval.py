"""Retrieval benchmarks: faiss ANN against exact search, and multi-channel recall HitRate.

    .venv/bin/python benchmarks/bench_retrieval.py [--only ann,recall,ablation,ablation-slices,
                                                           ablation-gfcf,ablation-gfcf-slices]
                                                   [--datasets ml-100k,ml-latest-small,...]
                                                   [--out FILE]

    ann     "Retrieval — faiss vs exact"  A two-tower trained on Gowalla (LightGCN's fixed split,
            40,981 items: the largest catalogue in ../shared/data with training interactions;
            amazon-book ships no train.txt) gives the item vectors; every test user's vector is a
            query. Per index (flat, HNSW, IVF; each built once, searched at a few settings): build
            time (2 faiss threads), latency per search call of 1 and of 256 queries (1 faiss
            thread; wall and CPU time, as a busy machine stretches wall time) and recall@100
            against exact brute force (``genrec.retrieval.exact_search``). Pure top-100 search,
            history not excluded, so the numbers are the index's alone. Then the same on 91,599 synthetic clustered unit
            vectors (amazon-book's catalogue size) with 5,000 queries.
    recall  "Recall — multi-channel HitRate"  ML-100k and Amazon Beauty, leave-one-out (P1), test
            targets, history masked. Channels: popularity, ItemCF, two-tower (faiss flat) and, on
            ML-100k, SASRec; quotas popularity 1 : ItemCF 2 : two-tower 2 (: SASRec 2).
            HR@50/100/200 of every channel alone and of the merged list, with each channel's
            share of the merged slots and of its hits at N = 100.
    ablation "Ablation — LightGCN text fusion (ML-100k)" (also "(ml-latest-small)", "(Amazon
            Beauty)")  ``genrec.ablation`` over fusion none / sum / concat x user /
            item text on-off on P3 (ratio 8:1:1): the 7 distinct configurations (fusion=none
            ignores the flags; sum/concat need one side on), once per dataset of ``--datasets``
            (comma list, default ml-100k; supported: ml-100k, ml-latest-small, amazon-beauty),
            each in its own table. Needs the dataset's MiniLM item vectors ``minilm``; when
            missing they are made first (``genrec embed items --encoder minilm --name minilm``,
            fields: ml-100k title,genres; ml-latest-small title,genres,tags; amazon-beauty
            title,categories).
            Each row also reports the test split on its cold slices (see ablation-slices).
    ablation-slices  Rewrites that table from the saved runs, training nothing: every run
            directory is reloaded (``genrec.runs.load_run``) and its test split re-evaluated with
            top-20 lists kept (``evaluate_run``), then reported overall, on cold users (the
            coldest 20% of test users by training interactions, ties at the cut-off included)
            and on cold items (Recall/NDCG@20 over only the test targets whose item is among
            the coldest 20% of the catalogue by training interactions, averaged over the users
            with at least one such target). Selection stays on validation (*); the slices are
            only reported, with paired bootstrap intervals against fusion=none. One table per
            dataset of ``--datasets``, as for ablation.
    ablation-gfcf "Ablation — GF-CF text fusion (ML-100k)"  The same on GF-CF with EASE as its
            linear filter (l2 250, dropout 0, alpha 0.1, k 64: chosen on ML-100k validation),
            closed form: text none, or the text term (``genrec.models.gfcf``) on the item side
            (mean cosine to the history), the user side (cosine to the mean history vector) or
            both, at text_weight 0.03 / 0.1 / 0.3 / 1 (13 configurations), the same cold slices
            and intervals against no text; ablation-gfcf-slices rewrites its table from the
            saved runs.

Runs are trained once into benchmarks/out/retrieval/<dataset>_<model> (the ablation into
ablate_lightgcn_ml100k/, ablate_lightgcn_ml_latest_small/, ablate_lightgcn_amazon_beauty/,
ablate_gfcf_ml100k/, ..., resumable) and reused (delete the folder to retrain). Data comes from
$GENREC_DATA, prepared datasets from $GENREC_HOME.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _record import COLUMNS, record, reset_table  # noqa: E402
from _stats import N_BOOT, paired_ci  # noqa: E402
from _vectors import ensure_vectors  # noqa: E402

from genrec.data.batches import eval_batch  # noqa: E402
from genrec.evaluation import metrics as M  # noqa: E402
from genrec.pipeline.recall import (ann_channel, popularity_channel, recall_report,  # noqa: E402
                                    run_channel)
from genrec.retrieval import IndexConfig, ItemIndex, exact_search, recall_at_k  # noqa: E402
from genrec.runs import evaluate_run, load_run, make_config, train  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "retrieval"
THREADS = 2  # the machine's cores: torch and faiss alike
ANN_TABLE = "Retrieval — faiss vs exact"
RECALL_TABLE = "Recall — multi-channel HitRate"
# (label, config to build, search-time settings tried on that one build)
INDEXES = [("flat", IndexConfig(kind="flat"), [{}]),
           ("hnsw M=32 efC=200", IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=200),
            [{"ef_search": 100}, {"ef_search": 200}, {"ef_search": 400}]),  # >= k = 100
           ("ivf nlist=4√n", IndexConfig(kind="ivf"),
            [{"nprobe": 8}, {"nprobe": 32}, {"nprobe": 128}])]
TWO_TOWER = ["params.dim=64", "params.max_len=50", "train.lr=0.002",
             "train.batch_size=256", f"train.threads={THREADS}"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trained(name: str, model: str, sets: list[str], preset: str | None = None):
    """The run in OUT/name, trained first when it is not there yet."""
    run_dir = OUT / name
    if not (run_dir / "metrics.json").is_file():
        print(f"training {name} ...", flush=True)
        train(make_config(model, sets, REPO / preset if preset else None), run_dir)
    run = load_run(run_dir)
    run.info["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    return run


def ms_per_batch(index: ItemIndex, q: np.ndarray, batch: int, k: int = 100,
                 max_batches: int = 200) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of one search call of ``batch`` queries. On a shared
    machine a long call is preempted and its wall time grows with the load; CPU time does not."""
    wall, cpu = [], []
    for lo in range(0, min(len(q), batch * max_batches), batch):
        t0, c0 = time.perf_counter(), time.process_time()
        index.search(q[lo:lo + batch], k)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def measure_indexes(items: np.ndarray, q: np.ndarray, dataset: str, protocol: str,
                    quality: str, out: Path) -> None:
    """One table row per index: build time, latency per query batch, recall@100 vs exact."""
    ids = np.arange(1, len(items) + 1)
    t0 = time.perf_counter()
    exact = np.concatenate([exact_search(q[lo:lo + 1024], items, 100, ids)[1]
                            for lo in range(0, len(q), 1024)])
    exact_s = time.perf_counter() - t0
    print(f"{dataset}: exact numpy top-100 of {len(q)} queries {exact_s:.1f} s", flush=True)
    for label, cfg, searches in INDEXES:
        cfg.threads = THREADS
        t0 = time.perf_counter()
        index = ItemIndex.build(items, ids, cfg)
        build_s = time.perf_counter() - t0
        for setting in searches:
            for key, value in setting.items():
                setattr(index.config, key, value)
            name = " ".join([label, *(f"{k}={v}" for k, v in setting.items())])
            index.config.threads = THREADS
            found = np.concatenate([index.search(q[lo:lo + 1024], 100)[1]
                                    for lo in range(0, len(q), 1024)])
            rec = recall_at_k(found, exact)
            # latency on ONE thread: a single query is not worth parallelising, and on a busy
            # machine OpenMP threads spin-waiting on each other dominate small searches
            index.config.threads = 1
            one, one_cpu = ms_per_batch(index, q, 1)
            many, many_cpu = ms_per_batch(index, q, 256)
            load = os.getloadavg()[0]
            print(f"{name:32s} build {build_s:6.2f} s  1 query {one:7.3f} ms (cpu {one_cpu:.3f})  "
                  f"256 queries {many:8.2f} ms (cpu {many_cpu:.2f})  recall@100 {rec:.4f}  "
                  f"load {load:.1f}", flush=True)
            record(ANN_TABLE, {
                "dataset": dataset, "protocol": protocol, "index": name,
                "recall@100 vs exact": f"{rec:.4f}",
                "ms / 1 query": f"{one:.3f} (cpu {one_cpu:.3f})",
                "ms / 256 queries": f"{many:.2f} (cpu {many_cpu:.2f})", "build s": f"{build_s:.2f}",
                "metrics": quality, "wall time": f"exact numpy top-100 of all queries "
                                                 f"{exact_s:.1f} s",
                "peak memory": f"{peak_mb():.0f} MB",
                "notes": f"build and recall with {THREADS} faiss threads, latency with 1; "
                         f"load avg (1 min) {load:.1f}"}, out)


def synthetic(n: int, d: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 1,000 random centres (a clustered catalogue) and queries near them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d))
    x = centres[rng.integers(1000, size=n)] + 0.7 * rng.normal(size=(n, d))
    q = centres[rng.integers(1000, size=n_queries)] + 0.7 * rng.normal(size=(n_queries, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def bench_ann(out: Path) -> None:
    run = trained("gowalla_two_tower", "two_tower",
                  ["data.name=gowalla", "data.split=fixed", "eval.ks=[20,100]",
                   "train.epochs=30", "train.max_minutes=15", "params.n_negatives=4096",
                   *TWO_TOWER])
    model, split = run.model.eval(), run.split
    users = np.flatnonzero(np.diff(split.targets("test").indptr) > 0)
    with torch.no_grad():
        items = model.item_vectors()[1:].numpy()
        q = np.concatenate([model.user_vectors(eval_batch(split, "test", users[lo:lo + 1024],
                                                          model.config.max_len)).numpy()
                            for lo in range(0, len(users), 1024)])
    test, train_info = run.info["metrics"]["test"], run.info["train"]
    quality = (f"two-tower test Recall@20 {test['Recall@20']:.4f} / NDCG@20 {test['NDCG@20']:.4f} "
               f"after {train_info['epochs_run']} epochs ({train_info['stop_reason']}, "
               f"{run.info['fit_seconds']:.0f} s)")
    measure_indexes(items, q, f"gowalla ({len(items):,} items, {len(q):,} test users)",
                    "two-tower item and user vectors (dim 64, unit length), top-100 inner "
                    "product, history not excluded", quality, out)
    items, q = synthetic(91_599, 64, 5_000)
    measure_indexes(items, q, "synthetic, amazon-book size (91,599 items, 5,000 queries)",
                    "unit vectors around 1,000 random centres (dim 64), top-100 inner product",
                    "no model: random clustered vectors", out)


def recall_channels(tag: str, data: str, with_sasrec: bool):
    base = [f"data.name={data}", "data.split=loo", "eval.ks=[10,50]"]
    itemcf = trained(f"{tag}_itemcf", "itemcf", base + ["params.k=50"])
    tt = trained(f"{tag}_two_tower", "two_tower",
                 base + ["train.epochs=100", "train.patience=5", "train.max_minutes=10",
                         "train.metric=NDCG@10", *TWO_TOWER])
    split = tt.split
    channels = [popularity_channel(split, "test", quota=1), run_channel(itemcf, split, "test", 2),
                ann_channel(tt, split, "test", 2, index=IndexConfig(threads=THREADS))]
    runs = {"itemcf": itemcf, "two_tower": tt}
    if with_sasrec:
        sasrec = trained(f"{tag}_sasrec", "sasrec", base + ["train.max_minutes=8"],
                         preset="configs/sasrec_ml100k_p1.toml")
        channels.append(run_channel(sasrec, split, "test", 2))
        runs["sasrec"] = sasrec
    return split, channels, runs


def bench_recall(out: Path) -> None:
    for tag, data, with_sasrec in (("ml100k", "ml-100k", True), ("beauty", "amazon-beauty", False)):
        split, channels, runs = recall_channels(tag, data, with_sasrec)
        t0 = time.perf_counter()
        rep = recall_report(channels, split, "test", ns=(50, 100, 200))
        seconds = time.perf_counter() - t0
        quotas = " : ".join(f"{c.name} {c.quota:g}" for c in channels)
        print(json.dumps(rep, indent=1), flush=True)
        lines = [(c.name, rep["per_channel"][c.name]) for c in channels]
        lines.append(("merged", rep["merged"]))
        for name, hr in lines:
            about = runs.get(name)
            note = ""
            if about is not None:
                test = about.info["metrics"]["test"]
                note = f"its own test HR@10 {test['HR@10']:.4f} / NDCG@10 {test['NDCG@10']:.4f}"
            record(RECALL_TABLE, {
                "dataset": f"{data} ({split.n_users:,} users, {split.n_items:,} items)",
                "protocol": f"P1 loo test, history masked; quotas {quotas}",
                "channel": name, "HR@50": f"{hr['HR@50']:.4f}", "HR@100": f"{hr['HR@100']:.4f}",
                "HR@200": f"{hr['HR@200']:.4f}",
                "share of merged@100": ("–" if name == "merged" else
                                        f"{rep['share'][100][name]:.3f} slots / "
                                        f"{rep['hits_from'][100][name]:.3f} hits"),
                "metrics": note or f"{rep['n_users']} test users, {rep['n_cold']} without history",
                "wall time": f"recall_report {seconds:.1f} s (all channels, N = 50/100/200)",
                "peak memory": f"{peak_mb():.0f} MB"}, out)


LGCN_GRID = ["params.fusion,params.user_semantic,params.item_semantic="
             "none:false:false,sum:true:true,sum:true:false,sum:false:true,"
             "concat:true:true,concat:true:false,concat:false:true"]
# --datasets of the ablation: run folder slug, display name (table title), MiniLM text fields
ABLATION_DATASETS = {"ml-100k": ("ml100k", "ML-100k", "title,genres"),
                     "ml-latest-small": ("ml_latest_small", "ml-latest-small", "title,genres,tags"),
                     "amazon-beauty": ("amazon_beauty", "Amazon Beauty", "title,categories")}
CONTENT = "minilm"  # the item vectors' store name
# the settings of every dataset's runs, after data.name=<dataset>
LGCN_SETS = ["data.split=ratio", "data.seed=2020", "eval.ks=[10,20]",
             f"params.content={CONTENT}", "params.dim=64", "params.n_layers=3", "params.l2=0.0001",
             "train.lr=0.002", "train.batch_size=2048", "train.epochs=50", "train.patience=5",
             "train.eval_every=2", "train.metric=NDCG@10", "train.threads=1", "train.clip_norm=0"]


GFCF_BETAS = ("0.03", "0.1", "0.3", "1")  # text_weight: the text term's std across a user's
# items is ~0.05-0.07 on ML-100k, the gap between EASE scores at ranks 10 and 50 ~0.2
GFCF_GRID = ["params.text_side,params.text_weight=item:0,"
             + ",".join(f"{side}:{b}" for side in ("item", "user", "both") for b in GFCF_BETAS)]
GFCF_SETS = ["data.split=ratio", "data.seed=2020", "eval.ks=[10,20]", f"params.content={CONTENT}",
             "params.linear=ease", "params.l2=250", "params.dropout=0", "params.alpha=0.1",
             "params.k=64", "train.metric=NDCG@10"]


@dataclass(frozen=True)
class Ablation:
    """A text-fusion ablation: what it trains and how its table reads."""

    key: str  # --only part that trains it (``<key>-slices`` rewrites its table)
    model: str
    table: str  # title; {} = the dataset's display name
    grid: list[str]  # genrec.ablation axes
    sets: list[str]  # every run's settings, after data.name=<dataset>
    columns: list[str]  # the configuration's own columns, first in the table
    cells: Callable[[dict[str, str]], dict[str, str]]  # axis values -> those columns
    is_base: Callable[[dict[str, str]], bool]  # the configuration without text
    base: str  # how the table names it
    about: str  # the intro's first sentence, {dataset} filled
    protocol: str
    fit_notes: Callable[[dict, dict], tuple[str, str]]  # (row, run.json) -> (metrics, wall time)

    def root(self, dataset: str) -> Path:
        return OUT / f"ablate_{self.model}_{ABLATION_DATASETS[dataset][0]}"


ABLATIONS = {a.key: a for a in (
    Ablation(
        key="ablation", model="lightgcn", table="Ablation — LightGCN text fusion ({})",
        grid=LGCN_GRID, sets=LGCN_SETS, columns=["fusion", "user text", "item text"],
        cells=lambda v: {"fusion": v["params.fusion"], "user text": v["params.user_semantic"],
                         "item text": v["params.item_semantic"]},
        is_base=lambda v: v["params.fusion"] == "none", base="fusion=none",
        about="LightGCN on {dataset}, P3 (ratio 8:1:1, seed 2020): fusion none / sum / concat x "
              "user / item text, the 7 distinct configurations.",
        protocol="P3 ratio 8:1:1 seed 2020; 50 epochs each (lr 2e-3, batch 2048, dim 64, "
                 "3 layers), weights of the best validation NDCG@10",
        fit_notes=lambda r, info: (
            f"best epoch {info['train']['best_epoch']} of {info['train']['epochs_run']}; "
            f"* = selected on validation",
            f"fit {r['fit_seconds']:.0f} s ({info['train']['sec_per_epoch']:.1f} s/epoch)")),
    Ablation(
        key="ablation-gfcf", model="gfcf", table="Ablation — GF-CF text fusion ({})",
        grid=GFCF_GRID, sets=GFCF_SETS, columns=["text", "beta"],
        cells=lambda v: {"text": "none" if float(v["params.text_weight"]) == 0
                         else v["params.text_side"], "beta": v["params.text_weight"]},
        is_base=lambda v: float(v["params.text_weight"]) == 0, base="no text",
        about="GF-CF on {dataset}, P3 (ratio 8:1:1, seed 2020), EASE weights as its linear filter "
              "(l2 250, dropout 0) and the ideal low-pass filter (alpha 0.1, k 64), closed form, "
              "plus beta x a text term (`genrec.models.gfcf`): none; item = mean cosine between "
              "the item's MiniLM vector and the user's history items' (the item-item filter "
              "blended with content similarity); user = cosine to the user's mean history "
              "vector; both = the sum; beta in " + " / ".join(GFCF_BETAS) + ".",
        protocol="P3 ratio 8:1:1 seed 2020; GF-CF linear=ease l2 250 dropout 0, alpha 0.1, k 64 "
                 "(chosen on validation), fitted on train",
        fit_notes=lambda r, info: ("closed form; * = selected on validation",
                                   f"fit {r['fit_seconds']:.1f} s")),
)}


def bench_ablation(out: Path, dataset: str = "ml-100k", spec: Ablation = ABLATIONS["ablation"]
                   ) -> None:
    """The text-fusion ablation ``spec`` on ``dataset`` through genrec.ablation (resumable), then
    its table rows with the cold slices (``bench_ablation_slices``)."""
    from genrec.ablation import parse_grid, run_ablation

    ensure_vectors(dataset, ABLATION_DATASETS[dataset][2], CONTENT, THREADS)
    res = run_ablation(None, parse_grid(spec.grid), spec.root(dataset),
                       [f"data.name={dataset}", *spec.sets], model=spec.model,
                       metrics=["Recall@10", "NDCG@10", "Recall@20", "NDCG@20"],
                       say=lambda line: print(line, flush=True))
    print(res.files["md"].read_text(), flush=True)
    bench_ablation_slices(out, dataset, spec)


COLD_SHARE = 0.2      # the coldest 20% of test users / of catalogue items, by training count
SLICE_K = 20          # slices are reported at Recall@20 / NDCG@20
DEEP_K = 100          # and cold items also at Recall@100: hardly any reaches a top 20


def coldest(counts: np.ndarray, share: float = COLD_SHARE) -> tuple[np.ndarray, int]:
    """(mask, cut-off c): entries with count <= c, c the smallest count such that at least
    ``share`` of the entries have count <= c (ties at the cut-off are all included)."""
    c = int(np.sort(counts)[max(math.ceil(share * len(counts)), 1) - 1])
    return counts <= c, c


def topk_metrics(topk: np.ndarray, targets, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (Recall@k, NDCG@k) of top-k lists (rows aligned with ``targets``' rows, CSR),
    with the metrics of ``genrec.evaluation.metrics``: a target's rank is its position in the
    list (1-based), unlisted targets are misses, NaN for rows without a target."""
    n_rel = np.diff(targets.indptr)
    ranks = np.full((len(n_rel), max(int(n_rel.max()), 1)), M.NO_RANK, dtype=np.int64)
    for i in range(len(n_rel)):
        tgt = targets.indices[targets.indptr[i]:targets.indptr[i + 1]]
        pos = np.flatnonzero(np.isin(topk[i, :k], tgt))
        ranks[i, :len(pos)] = pos + 1
    return M.recall_at_k(ranks, n_rel, k), M.ndcg_at_k(ranks, n_rel, k)


def slice_report(run_dir: Path) -> dict:
    """Re-evaluate a saved run's test split (no training) and measure it overall, on cold users
    and on cold-item targets; per-user values are kept for the paired intervals."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    split = run.split
    run.config.eval.ks = sorted({*run.config.eval.ks, SLICE_K, DEEP_K})  # top-100 lists kept
    res = evaluate_run(run, "test", keep_topk=True, auc=False)
    users = res.users  # test users (with a target), rows of per_user and topk
    targets = split.targets("test")[users]
    train = split.train_matrix()
    # overall from the top-20 lists must equal the evaluator's own per-user values (they differ
    # only under exact score ties at the cut, which would make the cold-item numbers inexact)
    rec, ndcg = topk_metrics(res.topk, targets, SLICE_K)
    if not (np.allclose(rec, res.per_user[f"Recall@{SLICE_K}"])
            and np.allclose(ndcg, res.per_user[f"NDCG@{SLICE_K}"])):
        raise RuntimeError(f"{run_dir}: Recall/NDCG@{SLICE_K} from the top-{SLICE_K} lists differ "
                           f"from the evaluator's (score ties at the cut?)")
    user_train = np.diff(train.indptr)[users]
    cold_u, u_cut = coldest(user_train)
    item_train = np.asarray((train > 0).sum(axis=0)).ravel()
    cold_i, i_cut = coldest(item_train[1:])
    cold_i = np.concatenate([[False], cold_i])  # column 0 is PAD
    cold_t = targets.multiply(cold_i[None, :].astype(np.float32)).tocsr()
    cold_t.eliminate_zeros()
    has = np.diff(cold_t.indptr) > 0
    ci_rec, ci_ndcg = topk_metrics(res.topk[has], cold_t[has], SLICE_K)
    ci_deep, _ = topk_metrics(res.topk[has], cold_t[has], DEEP_K)
    n_cold = np.diff(cold_t.indptr)[has]
    hits = {k: int(round(float((r * n_cold).sum()))) for k, r in ((SLICE_K, ci_rec),
                                                                  (DEEP_K, ci_deep))}
    return {
        "overall": (rec, ndcg), "cold users": (rec[cold_u], ndcg[cold_u]),
        "cold items": (ci_rec, ci_ndcg), "cold items deep": (ci_deep,),
        "cold item hits": hits, "metrics": res.metrics, "seconds": time.perf_counter() - t0,
        "info": {"n_test_users": len(users), "user_cut": u_cut, "n_cold_users": int(cold_u.sum()),
                 "n_items": len(item_train) - 1, "item_cut": i_cut,
                 "n_cold_items": int(cold_i.sum()),
                 "n_items_unseen": int((item_train[1:] == 0).sum()),
                 "n_cold_targets": int(cold_t.nnz), "n_test_targets": int(targets.nnz),
                 "n_cold_item_users": int(has.sum()), "n_users": split.n_users},
    }


SLICE_KEYS = ["overall", "cold users", "cold items", "cold items deep"]
ABLATION_COLUMNS = ["valid NDCG@10", "test Recall@10", "test NDCG@10", "test Recall@20",
                    "test NDCG@20", "cold-user R@20", "cold-user N@20", "cold-item R@20",
                    "cold-item N@20",
                    f"cold-item R@{DEEP_K}", "notes"]


def bench_ablation_slices(out: Path, dataset: str = "ml-100k",
                          spec: Ablation = ABLATIONS["ablation"]) -> None:
    """The table of ablation ``spec`` on ``dataset`` from the saved runs (nothing trained):
    overall and cold slices."""
    root = spec.root(dataset)
    table = spec.table.format(ABLATION_DATASETS[dataset][1])
    summary = root / "ablation.json"
    if not summary.is_file():
        raise SystemExit(f"{summary} is missing: run `--only {spec.key} --datasets {dataset}` "
                         f"first (trains its runs)")
    abl = json.loads(summary.read_text())
    t0 = time.perf_counter()
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ml-100k: 943 x 1,683 scores per run, one thread is plenty
    for r in abl["rows"]:
        rep = slice_report(root / "runs" / r["name"])
        print(f"{r['name']}: re-evaluated in {rep['seconds']:.1f} s; R@20 overall "
              f"{np.mean(rep['overall'][0]):.4f}, cold users "
              f"{np.mean(rep['cold users'][0]):.4f}, cold items "
              f"{np.mean(rep['cold items'][0]):.4f} (R@{DEEP_K} "
              f"{np.mean(rep['cold items deep'][0]):.4f})", flush=True)
        rows.append((r, rep))
    torch.set_num_threads(threads)
    total_s = time.perf_counter() - t0
    infos = [rep["info"] for _, rep in rows]
    if any(i != infos[0] for i in infos):
        raise RuntimeError("the runs of the ablation do not share one split")
    info = infos[0]
    base = next((i for i, (r, _) in enumerate(rows) if spec.is_base(r["values"])), None)

    # mean per slice and metric, the best configuration of each, and the change against none
    means = [{(s, m): float(np.mean(vals)) for s in rep if s in SLICE_KEYS
              for m, vals in enumerate(rep[s])} for _, rep in rows]

    def tops(values: list[float]) -> set[int]:
        """The best rows (all of them on a tie), none when every row has the same value."""
        hi = max(values)
        return set() if min(values) == hi else {i for i, v in enumerate(values) if v == hi}

    best = {key: tops([m[key] for m in means]) for key in means[0]}
    tests = {m: tops([r["test"][m] for r, _ in rows]) for m in abl["metrics"]}

    def cell(i: int, s: str, m: int) -> str:
        v = means[i][(s, m)]
        text = f"**{v:.4f}**" if i in best[(s, m)] else f"{v:.4f}"
        if base is not None and i != base:
            b = means[base][(s, m)]
            text += f" ({100 * (v / b - 1):+.1f}%)" if b > 0 else f" ({v - b:+.4f})"
        return text

    intro = (f"{spec.about.format(dataset=dataset)} Full ranking, history masked. "
             f"The configuration is selected on validation NDCG@10 (*); the test columns are only "
             f"reported, **bold** = best configuration in that column, (±x%) = change against "
             f"{spec.base} (absolute where {spec.base.split('=')[-1]} scores 0). Slices of the "
             f"test split, from the saved runs (nothing retrained; `--only {spec.key}-slices` "
             f"re-evaluates them): "
             f"**overall** = all "
             f"{info['n_test_users']} test users; **cold users** = the "
             f"{COLD_SHARE:.0%} of test users with the fewest training interactions, i.e. "
             f"<= {info['user_cut']} (ties included: {info['n_cold_users']} users, "
             f"{info['n_cold_users'] / info['n_test_users']:.1%}), their usual per-user Recall@20 "
             f"/ NDCG@20 averaged; **cold items** = the {COLD_SHARE:.0%} of the "
             f"{info['n_items']:,} items with the fewest training interactions, i.e. <= "
             f"{info['item_cut']} (ties included: {info['n_cold_items']} items, "
             f"{info['n_cold_items'] / info['n_items']:.1%}, {info['n_items_unseen']} of them "
             f"never in training); per user, Recall@20 / NDCG@20 with only the test targets that "
             f"are cold items as relevant (the user's full ranking unchanged: other test targets "
             f"stay candidates), averaged over the {info['n_cold_item_users']} users with at "
             f"least one such target ({info['n_cold_targets']} of the "
             f"{info['n_test_targets']:,} test targets); hardly any cold item reaches a top 20, so "
             f"cold-item Recall@{DEEP_K} is given too. Notes give 95% paired bootstrap "
             f"intervals (users, {N_BOOT} resamples) of the change against {spec.base}.")
    reset_table(out, table, intro, COLUMNS + spec.columns + ABLATION_COLUMNS)
    peak = peak_mb()
    for i, (r, rep) in enumerate(rows):
        run_info = json.loads((root / "runs" / r["name"] / "run.json").read_text())
        note = ""
        if base is not None and i != base:
            parts = []
            for s, label in (("overall", "R@20 overall"), ("cold users", "cold-user R@20"),
                             ("cold items deep", f"cold-item R@{DEEP_K}")):
                lo, hi = paired_ci(rep[s][0], rows[base][1][s][0])
                parts.append(f"{label} [{lo:+.4f}, {hi:+.4f}]")
            note = (f"change vs {spec.base.split('=')[-1]}, 95% CI: " + ", ".join(parts)
                    + "; ")
        hits = rep["cold item hits"]
        note += (f"cold-item targets in the top {SLICE_K} / {DEEP_K}: {hits[SLICE_K]} / "
               f"{hits[DEEP_K]} of {info['n_cold_targets']}; ")
        fit_metrics, fit_time = spec.fit_notes(r, run_info)
        record(table, {
            "dataset": f"{dataset} ({info['n_users']:,} users, {info['n_items']:,} items)",
            "protocol": spec.protocol, **spec.cells(r["values"]),
            "valid NDCG@10": (f"{r['valid'][abl['select_metric']]:.4f}"
                              + (" *" if i == abl["selected"] else "")),
            **{f"test {m}": f"**{r['test'][m]:.4f}**" if i in tests[m] else f"{r['test'][m]:.4f}"
               for m in abl["metrics"] if m not in ("Recall@20", "NDCG@20")},  # those: cell()
            "test Recall@20": cell(i, "overall", 0), "test NDCG@20": cell(i, "overall", 1),
            "cold-user R@20": cell(i, "cold users", 0), "cold-user N@20": cell(i, "cold users", 1),
            "cold-item R@20": cell(i, "cold items", 0), "cold-item N@20": cell(i, "cold items", 1),
            f"cold-item R@{DEEP_K}": cell(i, "cold items deep", 0),
            "metrics": fit_metrics,
            "wall time": f"{fit_time}; reload + test re-evaluation {rep['seconds']:.1f} s",
            "peak memory": f"re-evaluation {peak:.0f} MB (training not measured)",
            "notes": f"{note}minilm item vectors (items without one: "
                     f"{(run_info.get('content') or {}).get('n_without_vector', '–')}); "
                     f"trained by "
                     f"`--only {spec.key}` ({run_info.get('created', '?')}); outputs in "
                     f"{root.relative_to(REPO)}; all {len(rows)} re-evaluations {total_s:.0f} s"},
               out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="ann,recall,ablation",
                        help="comma list of: ann, recall, ablation, ablation-slices (the "
                             "ablation table from the saved runs, nothing trained), "
                             "ablation-gfcf, ablation-gfcf-slices")
    parser.add_argument("--datasets", default="ml-100k",
                        help="comma list of the datasets of ablation / ablation-slices, one "
                             f"table each: {', '.join(ABLATION_DATASETS)}")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if unknown := [d for d in datasets if d not in ABLATION_DATASETS]:
        parser.error(f"--datasets: unknown {', '.join(unknown)}; supported: "
                     f"{', '.join(ABLATION_DATASETS)}")
    torch.set_num_threads(THREADS)
    OUT.mkdir(parents=True, exist_ok=True)
    parts = {"ann": bench_ann, "recall": bench_recall}
    ablations = {**{key: (bench_ablation, spec) for key, spec in ABLATIONS.items()},
                 **{f"{key}-slices": (bench_ablation_slices, spec)
                    for key, spec in ABLATIONS.items()}}
    for part in (p.strip() for p in args.only.split(",")):
        if part in ablations:
            bench, spec = ablations[part]
            for dataset in datasets:
                bench(args.out, dataset, spec)
        else:
            parts[part](args.out)


if __name__ == "__main__":
    main()
