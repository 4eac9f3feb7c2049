"""TIGER (generative retrieval) on protocol P1: semantic IDs, training time, constrained beam search.

    .venv/bin/python benchmarks/bench_tiger.py --data amazon-beauty --vectors minilm \\
        [--method rq_kmeans] [--minutes 35] [--threads 2] [--valid-users 1000] [--no-record]

Steps, each timed: (1) item vectors (``genrec embed items`` with title + categories, skipped when
``item_vectors/<vectors>.parquet`` exists; ``--vectors sasrec-items:RUN_DIR`` stores a trained
SASRec's item table instead, for collaborative IDs), (2) semantic IDs (``genrec semantic-ids
build``, skipped when the file exists), (3) TIGER trained by the one trainer under a wall budget
with early stopping on VALID NDCG@10 of a fixed random sample of ``--valid-users`` users (a full
beam-search pass over every user costs minutes on this CPU; the sample is drawn once, seeded),
each trainer "epoch" being 1/``--parts`` of the users so that validation happens several times
inside the budget, (4) the test split scored once for every user with constrained beam search
(beam ``--beam``), history masked (genrec's P1), and the invalid-ID rate of an UNconstrained
beam search of the same width on ``--invalid-users`` test users.

Rows go to BENCHMARKS.md (``_record.record``): "Semantic IDs" (codebook utilisation per level,
collision rate before the dedup token, reconstruction error) and "Generative retrieval — TIGER
(P1)". Metrics at K <= beam are exact; nothing past the beam is reported. Environment:
GENREC_HOME / GENREC_DATA as for every benchmark.
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

from genrec.data.batches import eval_batch, n_train_batches, train_batches  # noqa: E402
from genrec.data.prepare import load_dataset  # noqa: E402
from genrec.data.splits import make_split  # noqa: E402
from genrec.evaluation import evaluate  # noqa: E402
from genrec.models.tiger import TIGER  # noqa: E402
from genrec.runs import Run, build_model, evaluate_run, make_config, save_run, scorer  # noqa: E402
from genrec.semantic_ids.store import (build_semantic_ids, default_name,  # noqa: E402
                                       semantic_ids_path)
from genrec.training.trainer import TrainConfig, fit  # noqa: E402

TABLE_IDS = "Semantic IDs"
TABLE_P1 = "Generative retrieval — TIGER (P1)"
P1 = "P1 leave-one-out, full catalogue, history masked"
ANCHORS = {"amazon-beauty": "TIGER paper R@5 0.0454 N@5 0.0321 R@10 0.0648 N@10 0.0384; SASRec "
                            "(TIGER table) R@10 0.0605 N@10 0.0318; genrec EASE l2=500 HR@10 0.0734 "
                            "N@10 0.0400",
           "amazon-sports": "TIGER paper R@10 0.0400 N@10 0.0225; SASRec 0.0350 / 0.0192"}


def cpu_s() -> float:
    """CPU seconds of this process so far (user + sys): on a shared machine, wall time alone
    mostly measures the other jobs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_vectors(ds, vectors: str, fields: list[str]) -> tuple[str, float]:
    """The vector-store name to quantise, creating it when missing; (name, seconds spent)."""
    from genrec.features.store import vectors_path

    t0 = time.perf_counter()
    if vectors.startswith("sasrec-items:"):  # collaborative IDs: a trained SASRec's item table
        from genrec.features.store import save_vectors
        from genrec.runs import load_run

        run = load_run(vectors.split(":", 1)[1])
        table = run.model.item_vectors().detach().numpy()[1:]
        save_vectors(ds, "sasrec-items", [str(i) for i in ds.item_ids[1:]], table,
                     {"source": f"item table of {run.path}", "model": "sasrec"})
        return "sasrec-items", time.perf_counter() - t0
    if not vectors_path(ds, vectors).is_file():
        from genrec.features import embed_items, make_encoder

        log(f"embedding {ds.n_items:,} items with {vectors} ({', '.join(fields)})")
        embed_items(ds, make_encoder(vectors), fields=fields, name=vectors)
    return vectors, time.perf_counter() - t0


def invalid_rate(model: TIGER, split, users: np.ndarray, k: int) -> dict[str, float]:
    """Share of an unconstrained beam search's top-k sequences (and top-1) that name no item."""
    bad = top1 = 0
    for lo in range(0, len(users), 256):
        batch = eval_batch(split, "test", users[lo:lo + 256], model.config.max_len)
        ids, _, _ = model.beam(batch, k, constrained=False)
        bad += int((ids < 0).sum())
        top1 += int((ids[:, 0] < 0).sum())
    return {"invalid@k": bad / (len(users) * k), "invalid@1": top1 / len(users)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="amazon-beauty")
    ap.add_argument("--vectors", default="minilm", help="encoder name, or sasrec-items:RUN_DIR")
    ap.add_argument("--method", default="rq_kmeans", choices=["rq_kmeans", "rq_vae"])
    ap.add_argument("--fields", default="title,categories", help="item text fields to embed")
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--rq-vae-epochs", type=int, default=None, help="rq_vae training epochs")
    ap.add_argument("--rebuild-ids", action="store_true", help="rebuild the semantic IDs")
    ap.add_argument("--ids-only", action="store_true", help="build (and record) the IDs, no TIGER")
    ap.add_argument("--minutes", type=float, default=35.0, help="training wall budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64, help="users per step (all their prefixes)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--parts", type=int, default=4, help="validations per pass over the users")
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--valid-users", type=int, default=1000)
    ap.add_argument("--invalid-users", type=int, default=1000)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], help="params.X=Y for TIGERConfig")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wall0 = time.perf_counter()

    ds = load_dataset(args.data)
    split = make_split(ds, "loo")
    vectors, embed_s = ensure_vectors(ds, args.vectors, args.fields.split(","))
    name = default_name(vectors, args.method)
    built = args.rebuild_ids or not semantic_ids_path(ds, name).is_file()
    if built:
        log(f"building semantic IDs {name}")
        _, report = build_semantic_ids(ds, vectors, args.method, codebook_size=args.codebook_size,
                                       epochs=args.rq_vae_epochs)
    else:
        report = json.loads(semantic_ids_path(ds, name).with_suffix(".json").read_text())
    log(f"semantic IDs {name}: collision rate {report['collision_rate']}, sizes {report['sizes']}")
    if (built or args.ids_only) and not args.no_record:  # --ids-only records an existing file too
        used = " / ".join(f"{lv['used']}/{lv['codebook_size']} (ppl {lv['perplexity']})"
                          for lv in report["levels"])
        record(TABLE_IDS, {
            "dataset": f"{ds.name} ({ds.n_items:,} items)",
            "protocol": f"{vectors} vectors -> {args.method} {len(report['levels'])}x"
                        f"{report['levels'][0]['codebook_size']} + dedup token",
            "metrics": f"codes used per level {used}; distinct IDs before dedup "
                       f"{report['distinct_ids']:,}, collision rate {report['collision_rate']:.2%}, "
                       f"largest group {report['max_group']} (dedup level size); reconstruction "
                       f"{report['reconstruction']}",
            "wall time": f"{report['seconds']:.1f} s" + (f" (+ vectors {embed_s:.0f} s)" if embed_s > 1
                                                          else " (vectors already stored)"),
            "peak memory": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB "
                           f"peak RSS (process)"})
    if args.ids_only:
        return

    sets = [f"data.name={ds.path}", f"params.semantic_ids={name}", f"params.beam_size={args.beam}",
            *args.set]
    cfg = make_config("tiger", sets)
    tcfg = TrainConfig(epochs=1000, lr=args.lr, batch_size=args.batch_size, warmup_steps=100,
                       patience=args.patience, max_minutes=args.minutes, threads=args.threads,
                       seed=cfg.train.seed)
    cfg.train = tcfg
    model, built = build_model(cfg, ds, split)  # seeded by train.seed, semantic IDs given
    sid_info = built["semantic_ids"]
    n_params = sum(p.numel() for p in model.parameters())
    run = Run(cfg, model, ds, split)
    c = model.config
    log(f"tiger: {n_params:,} parameters; T5 {c.n_layers}+{c.n_decoder_layers} layers, d_model "
        f"{c.dim}, d_ff {c.ff_dim}, {c.n_heads}x{c.head_dim} heads; history {c.max_len} items")

    steps = n_train_batches(split, args.batch_size)
    per_part = -(-steps // args.parts)

    def batches(epoch: int):
        # trainer epoch e = part e % parts of the users' pass e // parts (reshuffled each pass)
        part, full = epoch % args.parts, epoch // args.parts
        for i, b in enumerate(train_batches(split, c.max_len, args.batch_size, tcfg.seed, full)):
            if part * per_part <= i < (part + 1) * per_part:
                yield b

    has_valid = np.flatnonzero(np.diff(split.targets("valid").indptr) > 0)
    valid_users = np.sort(np.random.default_rng(0).choice(has_valid, min(args.valid_users,
                                                                         len(has_valid)), False))
    ks = tuple(k for k in (5, 10, 20) if k <= args.beam)

    def validate() -> dict[str, float]:
        return evaluate(scorer(run, "valid"), split.history("valid"),
                        split.targets("valid"), ks=ks, users=valid_users).metrics

    out = args.out or _REPO / "runs" / "bench" / f"tiger_{ds.name}_{name}"
    log(f"training: {steps} steps per pass in {args.parts} parts, budget {args.minutes} min")
    t0, c0 = time.perf_counter(), cpu_s()
    result = fit(model, tcfg, batches, validate, run_dir=out, steps_per_epoch=per_part,
                 progress=False)
    train_s, train_cpu = time.perf_counter() - t0, cpu_s() - c0
    passes = sum(h["steps"] for h in result.history) / steps
    log(f"trained {result.epochs_run} parts ({passes:.2f} passes) in {train_s / 60:.1f} min, "
        f"best part {result.best_epoch} valid NDCG@10 {result.best_metric:.4f}, "
        f"stop {result.stop_reason}")

    cfg.eval.ks = ks
    t1, c1 = time.perf_counter(), cpu_s()
    test = evaluate_run(run, "test")
    eval_s, eval_cpu = time.perf_counter() - t1, cpu_s() - c1
    m = test.metrics
    log(f"test: R@10 {m['Recall@10']:.4f} N@10 {m['NDCG@10']:.4f} ({eval_s:.0f} s)")
    users = np.sort(np.random.default_rng(1).choice(
        np.flatnonzero(np.diff(split.targets("test").indptr) > 0), args.invalid_users, False))
    t2 = time.perf_counter()
    inv = invalid_rate(model, split, users, 10)
    log(f"invalid IDs (unconstrained beam {args.beam}, top-10): {inv} ({time.perf_counter() - t2:.0f} s)")
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    run.info = {"model": "tiger", "dataset": ds.name, "dataset_dir": str(ds.path),
                "split": split.summary(), "semantic_ids": sid_info, "train": result.summary(),
                "fit_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
                "fit_cpu_seconds": round(train_cpu, 1), "eval_cpu_seconds": round(eval_cpu, 1),
                "n_eval_users": test.n_users, "valid_users_sampled": len(valid_users),
                "invalid_id_rate": inv, "n_params": n_params}
    save_run(run, out, {"valid_sample": best.get("valid", {}), "test": m})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    log(f"run saved to {out}; peak RSS {rss:.2f} GB; load {load}")
    if args.no_record:
        return
    record(TABLE_P1, {
        "dataset": f"{ds.name} ({ds.n_users:,} users, {ds.n_items:,} items)",
        "protocol": f"{P1}; constrained beam {args.beam}, beams skip the history window; test "
                    f"once on all {test.n_users:,} users",
        "metrics": f"R@5 {m['Recall@5']:.4f} · N@5 {m['NDCG@5']:.4f} · R@10 {m['Recall@10']:.4f} "
                   f"· N@10 {m['NDCG@10']:.4f}; invalid-ID rate (unconstrained beam, top-10, "
                   f"{len(users):,} test users) {inv['invalid@k']:.1%}, top-1 {inv['invalid@1']:.1%}"
                   f"; constrained: 0 by construction",
        "wall time": f"train {train_s / 60:.1f} min wall / {train_cpu / 60:.1f} min CPU "
                     f"({passes:.2f} passes over the users, {result.stop_reason}, best valid "
                     f"N@10 {result.best_metric:.4f} at part {result.best_epoch}); test eval "
                     f"{eval_s / 60:.1f} min wall / {eval_cpu / 60:.1f} min CPU; total "
                     f"{(time.perf_counter() - wall0) / 60:.1f} min",
        "peak memory": f"{rss:.2f} GB peak RSS",
        "model": f"tiger: T5 {c.n_layers}+{c.n_decoder_layers} layers, d_model {c.dim}, d_ff "
                 f"{c.ff_dim}, {n_params / 1e6:.2f}M params, dropout {c.dropout}; AdamW lr "
                 f"{args.lr}, {args.batch_size} users/step (all prefixes), {args.threads} threads",
        "semantic IDs": f"{name}: {sid_info['sizes']} (collision rate before dedup "
                        f"{sid_info['collision_rate']:.1%})",
        "anchors": ANCHORS.get(ds.name, "–"),
        "notes": (f"valid = {len(valid_users):,} sampled users (selection only); load avg "
                  f"{' '.join(load)} at the end; {args.note}").strip("; "),
    })


if __name__ == "__main__":
    main()
