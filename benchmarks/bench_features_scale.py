"""The ranking stage's feature engine at scale: a MovieLens-32M-shaped log, wall time and memory.

    .venv/bin/python benchmarks/bench_features_scale.py --rows 32000000
    .venv/bin/python benchmarks/bench_features_scale.py --rows 32000000 --users-per-chunk 0

The log is ``benchmarks/gen_movielens.py``'s (generated once into ``benchmarks/out``, shared with
bench_ingest.py). In a fresh subprocess, so that its peak memory is this run's alone:

    read        ratings.csv -> user_idx / item_idx (dense ids), timestamp, rating; movies.csv
    label       each user's last rating is the label position (as P5's test position); the
                events before it are the history the features may read
    candidates  per user the label item + ``--candidates - 1`` items drawn by popularity (a
                stand-in for the recall channels: the cost does not depend on who proposed
                them), with a popularity score and rank column as channel features
    features    ``genrec.features.ranking.build_feature_chunks`` (every feature but content_sim,
                behaviour sequences of 50), ``--users-per-chunk`` users at a time, each chunk's
                table written to parquet and dropped (streaming); 0 = one ``build_features``
                call over every user, for the memory it would need without chunks

Each step's wall time and peak RSS (VmHWM, reset between steps) are recorded in the
"Ranking features at scale" table (benchmarks/COST.md). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _record import record  # noqa: E402
from bench_ingest import _peak_gib, ensure_data, step_timer  # noqa: E402

TABLE = "Ranking features at scale"


def child(raw_dir: Path, n_cands: int, per_chunk: int, seed: int) -> None:
    """Read -> label -> candidates -> features once; print one JSON line of timings/peaks."""
    import numpy as np
    import polars as pl

    from genrec.features.ranking import (DEFAULT_FEATURES, FeatureConfig, build_feature_chunks,
                                         build_features)

    steps, step = step_timer()
    t_start = time.perf_counter()

    def read():
        log = (pl.read_csv(raw_dir / "ratings.csv",
                           schema_overrides={"userId": pl.Int64, "movieId": pl.Int64,
                                             "rating": pl.Float32, "timestamp": pl.Int64})
               .with_row_index("row")
               .select((pl.col("userId").rank("dense") - 1).cast(pl.Int32).alias("user_idx"),
                       pl.col("movieId"), pl.col("timestamp"), pl.col("rating"), pl.col("row")))
        ids = log["movieId"].unique().sort()
        code = pl.DataFrame({"movieId": ids, "item_idx": pl.int_range(1, len(ids) + 1,
                                                                      eager=True).cast(pl.Int32)})
        log = log.join(code, on="movieId").drop("movieId").sort(["user_idx", "timestamp", "row"])
        items = (pl.read_csv(raw_dir / "movies.csv", schema_overrides={"movieId": pl.Int64})
                 .join(code, on="movieId").select("item_idx", "genres"))
        return log, items, len(ids)

    log, items, n_items = step("read", read)

    def label():
        last = log.group_by("user_idx").agg(pl.col("row").max())
        is_label = pl.col("row").is_in(last["row"].implode())
        return (log.filter(~is_label).select("user_idx", "item_idx", "timestamp", "rating"),
                log.filter(is_label).select("user_idx", pl.col("item_idx").alias("target"),
                                            pl.col("timestamp").alias("t")).sort("user_idx"))

    events, labels = step("label", label)
    del log

    def candidates():
        rng = np.random.default_rng(seed)
        pop = np.bincount(events["item_idx"].to_numpy(), minlength=n_items + 1).astype(np.float64)
        draw = rng.choice(n_items + 1, size=(labels.height, n_cands - 1), p=pop / pop.sum())
        items_ = np.concatenate([labels["target"].to_numpy()[:, None], draw], axis=1)
        order = np.argsort(-pop[items_], axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_cands)[None, :], axis=1)
        return pl.DataFrame({
            "user_idx": np.repeat(labels["user_idx"].to_numpy(), n_cands).astype(np.int64),
            "item_idx": items_.ravel().astype(np.int64),
            "label": np.tile(np.r_[1, np.zeros(n_cands - 1)], labels.height).astype(np.int8),
            "t": np.repeat(labels["t"].to_numpy(), n_cands),
            "ch_pop_score": pop[items_].ravel().astype(np.float32),
            "ch_pop_rank": (rank.ravel() + 1).astype(np.float32)})

    cands = step("candidates", candidates)
    cfg = FeatureConfig(names=list(DEFAULT_FEATURES), category_column="genres", max_len=50)
    out = Path(tempfile.mkdtemp(prefix="features-scale-", dir=HERE / "out"))
    shape: dict[str, int] = {"rows": 0, "chunks": 0}

    def features():
        tables = (build_feature_chunks(cands, events, items, cfg, n_items,
                                       users_per_chunk=per_chunk) if per_chunk
                  else iter([build_features(cands, events, items, cfg, n_items)]))
        for k, table in enumerate(tables):
            table.frame.write_parquet(out / f"part-{k:04d}.parquet")
            np.save(out / f"history-{k:04d}.npy", table.history)
            shape["rows"] += table.frame.height
            shape["chunks"] += 1
            shape["columns"] = len(table.dense) + len(table.sparse)

    try:
        step("features", features)
        written = sum(f.stat().st_size for f in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({
        "steps": steps, "wall_s": round(time.perf_counter() - t_start, 2),
        "peak_gib": round(max([_peak_gib()] + [v["peak_gib"] or 0 for v in steps.values()]), 2),
        "events": events.height, "users": labels.height, "items": n_items,
        "written_gb": round(written / 1e9, 2), **shape}))


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32_000_000)
    ap.add_argument("--candidates", type=int, default=50, help="per user, label included")
    ap.add_argument("--users-per-chunk", type=int, default=20_000,
                    help="users per feature chunk; 0 = one call over every user")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "out", help="generated data folder")
    ap.add_argument("--note", default="", help="free text for the row (load, what was shared)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    raw_dir, gen = ensure_data(args.rows, args.seed, args.out)
    print(f"features over {raw_dir}/ratings.csv in a subprocess ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(raw_dir),
                           str(args.candidates), str(args.users_per_chunk), str(args.seed)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"feature building failed (exit {proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(r, indent=1))
    if args.no_record:
        return
    steps = " · ".join(f"{k} {v['s']:.1f} s" + (f" ({v['peak_gib']:.2f} GiB)"
                                                 if v.get("peak_gib") else "")
                       for k, v in r["steps"].items())
    feat_s = r["steps"]["features"]["s"]
    chunks = (f"{args.users_per_chunk:,} users per chunk, {r['chunks']} chunks"
              if args.users_per_chunk else "one call over every user")
    record(TABLE, {
        "dataset": f"ml-32m-synth: {args.rows:,} ratings, {gen['users']:,} users, "
                   f"{gen['items']:,} movies (benchmarks/gen_movielens.py, seed {gen['seed']})",
        "protocol": f"label = each user's last rating; {args.candidates} candidates per user "
                    f"(label + popularity draws); every feature but content_sim, sequences of "
                    f"50; {chunks}, each written to parquet; one fresh process",
        "metrics": f"{r['rows']:,} candidate rows x {r['columns']} features from "
                   f"{r['events']:,} events in {feat_s:.1f} s "
                   f"({r['rows'] / max(feat_s, 1e-9) / 1e6:.2f} M rows/s); {steps}; "
                   f"{r['written_gb']:.2f} GB written",
        "wall time": f"{wall:.1f} s (process, incl. reading the CSV)",
        "peak memory": f"{r['peak_gib']:.2f} GiB peak RSS",
        "note": args.note,
    }, HERE.parent / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
