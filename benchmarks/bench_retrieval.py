"""Retrieval benchmarks: faiss ANN against exact search, and multi-channel recall HitRate.

    .venv/bin/python benchmarks/bench_retrieval.py [--only ann,recall,ablation] [--out FILE]

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
    ablation "Ablation — LightGCN text fusion (ML-100k)"  ``genrec.evaluation.ablation`` over
            fusion none / sum / concat x user / item text on-off on P3 (ratio 8:1:1): the 7
            distinct configurations (fusion=none ignores the flags; sum/concat need one side on).
            Needs MiniLM item vectors: ``genrec embed items --data ml-100k --encoder minilm``.

Runs are trained once into benchmarks/out/retrieval/<dataset>_<model> (the ablation into
ablate_lightgcn_ml100k/, resumable) and reused (delete the folder to retrain). Data comes from
$GENREC_DATA, prepared datasets from $GENREC_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _record import record  # noqa: E402

from genrec.data.batches import eval_batch  # noqa: E402
from genrec.pipeline.recall import (ann_channel, popularity_channel, recall_report,  # noqa: E402
                                    run_channel)
from genrec.retrieval import IndexConfig, ItemIndex, exact_search, recall_at_k  # noqa: E402
from genrec.runs import load_run, make_config, train  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "retrieval"
THREADS = 2  # the machine's cores: torch and faiss alike
ANN_TABLE = "Retrieval — faiss vs exact"
RECALL_TABLE = "Recall — multi-channel HitRate"
ABLATION_TABLE = "Ablation — LightGCN text fusion (ML-100k)"
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
LGCN_SETS = ["data.name=ml-100k", "data.split=ratio", "data.seed=2020", "eval.ks=[10,20]",
             "params.content=minilm", "params.dim=64", "params.n_layers=3", "params.l2=0.0001",
             "train.lr=0.002", "train.batch_size=2048", "train.epochs=50", "train.patience=5",
             "train.eval_every=2", "train.metric=NDCG@10", "train.threads=1", "train.clip_norm=0"]


def bench_ablation(out: Path) -> None:
    """The LightGCN semantic-fusion ablation through genrec.evaluation.ablation (resumable)."""
    from genrec.evaluation.ablation import parse_grid, run_ablation

    t0 = time.perf_counter()
    res = run_ablation(None, parse_grid(LGCN_GRID), OUT / "ablate_lightgcn_ml100k", LGCN_SETS,
                       model="lightgcn", metrics=["Recall@10", "NDCG@10", "Recall@20", "NDCG@20"],
                       say=lambda line: print(line, flush=True))
    print(res.files["md"].read_text(), flush=True)
    for i, r in enumerate(res.rows):
        info = json.loads((r.run_dir / "run.json").read_text())
        record(ABLATION_TABLE, {
            "dataset": "ml-100k (943 users, 1,682 items)",
            "protocol": "P3 ratio 8:1:1 seed 2020; 50 epochs each (lr 2e-3, batch 2048, dim 64, "
                        "3 layers), weights of the best validation NDCG@10",
            "fusion": r.values["params.fusion"], "user text": r.values["params.user_semantic"],
            "item text": r.values["params.item_semantic"],
            "valid NDCG@10": f"{r.valid['NDCG@10']:.4f}" + (" *" if i == res.selected else ""),
            **{f"test {m}": f"{r.test[m]:.4f}" for m in res.metrics},
            "metrics": f"best epoch {info['train']['best_epoch']} of "
                       f"{info['train']['epochs_run']}; * = selected on validation",
            "wall time": f"fit {r.fit_seconds:.0f} s "
                         f"({info['train']['sec_per_epoch']:.1f} s/epoch)",
            "peak memory": "–",
            "notes": f"minilm item vectors (items without one: "
                     f"{info.get('content', {}).get('n_without_vector', '–')}); ablation "
                     f"outputs in {res.files['md'].parent.relative_to(REPO)}; all rows "
                     f"{time.perf_counter() - t0:.0f} s (cached runs are read back)"}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="ann,recall,ablation",
                        help="comma list of: ann, recall, ablation")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    OUT.mkdir(parents=True, exist_ok=True)
    parts = {"ann": bench_ann, "recall": bench_recall, "ablation": bench_ablation}
    for part in args.only.split(","):
        parts[part.strip()](args.out)


if __name__ == "__main__":
    main()
