"""Bounded load test of the HTTP service on 127.0.0.1; rows go to BENCHMARKS.md "## Serving".

The server runs in its own process (uvicorn, one worker, the bundle loaded once), the load
generator in this one: ``--concurrency`` asyncio clients, each on its own keep-alive connection,
send requests back to back (closed loop, no think time) for ``--seconds`` per endpoint, after a
short unrecorded warm-up. Latency is measured by the client, from writing the request to reading
the whole response. Client and server share the machine's cores; the CPU time each spends per
request is reported too (server from /proc, client from process_time), which says how much of a
latency is work and how much is waiting for a core.

Requests are drawn (seeded) from the dataset itself:

    recommend-user     POST /recommend {"user_id": known user, "k": 10}
    recommend-history  POST /recommend {"history": that user's last 10 items, "k": 10}
    similar            GET /similar/{item}?k=10
    search             GET /search?q=<two words of a random title>&k=10
    item               GET /items/{item}

Targets (issue "Serving"): /recommend p99 < 25 ms at 8 concurrent clients on 2 cores with a
Beauty SASRec bundle; /search p95 < 300 ms. A pipeline run (``genrec pipeline train``) is served
as its whole chain (channels -> features -> ranker) for known users: ``recommend-user`` then
measures the ranking stage's cost per request.

Example:
    python benchmarks/bench_serving.py runs/bench/sasrec_beauty --seconds 30 --concurrency 8
    python benchmarks/bench_serving.py runs/pipeline_beauty_p5_dcnv2 --endpoints recommend-user
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import machine, record  # noqa: E402

ENDPOINTS = ("recommend-user", "recommend-history", "similar", "search", "item")
DESCRIPTIONS = {
    "recommend-user": "POST /recommend by known user id, k=10",
    "recommend-history": "POST /recommend with an explicit 10-item history, k=10",
    "similar": "GET /similar/{item}?k=10",
    "search": "GET /search?q=<two title words>&k=10",
    "item": "GET /items/{item}",
}
TARGETS = {"recommend-user": ("p99", 25.0), "recommend-history": ("p99", 25.0),
           "search": ("p95", 300.0)}
# what `genrec serve` runs, without needing the command registered
SERVER = ("import sys, uvicorn; uvicorn.run('genrec.serving.app:app_from_env', factory=True, "
          "host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, search: str, threads: int, port: int,
                 timeout: float) -> tuple[subprocess.Popen, float]:
    """The server process and how long it took until /health answered."""
    t0 = time.perf_counter()
    env = {**os.environ, "GENREC_SERVE_RUN_DIR": str(run_dir.resolve()),
           "GENREC_SERVE_SEARCH": search, "GENREC_SERVE_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    url = f"http://127.0.0.1:{port}/health"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode} while loading {run_dir}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server did not answer /health within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def request_pool(run_dir: Path, n: int, seed: int, texts: list[str] = ()
                 ) -> dict[str, list[dict]]:
    """``n`` seeded requests per endpoint, drawn from the run's own dataset (a pipeline run's:
    its first recall run's); /search asks ``texts`` (drawn in turn) when given."""
    from genrec.data.batches import user_sequences
    from genrec.pipeline.ranking import load_pipeline
    from genrec.pipeline.serve import is_pipeline_run
    from genrec.runs import load_run

    run = (next(iter(load_pipeline(run_dir).runs.values())) if is_pipeline_run(run_dir)
           else load_run(run_dir))
    ds, rng = run.dataset, random.Random(seed)
    users = ds.users["user_id"].cast(str).to_list()
    ids, titles = ds.item_ids, ds.titles()
    seqs = user_sequences(run.split, "all")
    pool: dict[str, list[dict]] = {e: [] for e in ENDPOINTS}
    for _ in range(n):
        u = rng.randrange(len(users))
        history = seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]][-10:]
        item = str(ids[rng.randrange(1, len(ids))])
        words = [w for w in str(titles[rng.randrange(1, len(ids))]).split() if w.isalpha()]
        query = " ".join(rng.sample(words, min(2, len(words)))) or "gift"
        pool["recommend-user"].append({"method": "POST", "url": "/recommend",
                                       "json": {"user_id": users[u], "k": 10}})
        pool["recommend-history"].append({"method": "POST", "url": "/recommend",
                                          "json": {"history": [str(ids[i]) for i in history],
                                                   "k": 10}})
        pool["similar"].append({"method": "GET", "url": f"/similar/{item}",
                                "params": {"k": 10}})
        if texts:
            query = texts[rng.randrange(len(texts))]
        pool["search"].append({"method": "GET", "url": "/search", "params": {"q": query, "k": 10}})
        pool["item"].append({"method": "GET", "url": f"/items/{item}"})
    return pool


def encode(base_host: str, req: dict) -> bytes:
    """One HTTP/1.1 keep-alive request, serialised once up front."""
    url = httpx.URL(req["url"], params=req.get("params"))
    body = json.dumps(req["json"]).encode() if "json" in req else b""
    head = (f"{req['method']} {url.raw_path.decode()} HTTP/1.1\r\nHost: {base_host}\r\n"
            f"Content-Length: {len(body)}\r\n")
    head += "Content-Type: application/json\r\n" if body else ""
    return (head + "\r\n").encode() + body


async def load(host: str, port: int, requests: list[dict], concurrency: int, seconds: float
               ) -> tuple[list[float], int, float]:
    """(latencies in ms of 200 responses, error count, wall seconds).

    Each client owns one keep-alive connection and speaks minimal HTTP/1.1 over asyncio
    streams: a full client library (httpx) spends about as much CPU per request as the server
    does, and on 2 shared cores that would be measured as server latency.
    """
    wire = [encode(f"{host}:{port}", r) for r in requests]
    latencies: list[float] = []
    errors = 0

    async def worker(w: int, deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        i = w
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(wire[i % len(wire)])
                i += concurrency
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w, t0 + seconds) for w in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0, help="per endpoint (at most 30)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--endpoints", default=",".join(ENDPOINTS))
    ap.add_argument("--search", default="auto", help="auto | minilm | tfidf")
    ap.add_argument("--search-queries", type=Path, default=None,
                    help="a text-search run: /search asks its TEST queries (e.g. people's "
                         "T2 book descriptions) instead of two title words")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per scoring call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--machine-note", default="", help="appended to the machine column")
    ap.add_argument("--no-record", action="store_true", help="print only; leave BENCHMARKS.md")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    args = ap.parse_args()
    seconds = min(args.seconds, 30.0)  # the bound is part of the protocol
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"unknown endpoint(s) {sorted(unknown)}; choose from {ENDPOINTS}")

    load_before = os.getloadavg()[0]  # other jobs on the machine compete for the same cores
    texts: list[str] = []
    if args.search_queries:
        from genrec.pipeline.text_queries import QuerySet

        qs = QuerySet.load(args.search_queries / "queries.parquet")
        texts = [qs.queries[j] for j in qs.stage("test")[0]]
    pool = request_pool(args.run_dir, 2000, args.seed, texts)
    port = free_port()
    proc, startup = start_server(args.run_dir, args.search, args.threads, port, timeout=1800)
    base = f"http://127.0.0.1:{port}"
    try:
        health = httpx.get(f"{base}/health").json()
        print(f"server up in {startup:.1f} s: {json.dumps(health)}")
        rows = []
        for name in endpoints:
            asyncio.run(load("127.0.0.1", port, pool[name], args.concurrency, args.warmup))
            cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
            lat, errors, wall = asyncio.run(load("127.0.0.1", port, pool[name], args.concurrency,
                                                 seconds))
            n = max(len(lat) + errors, 1)
            server_cpu = (cpu_seconds(proc.pid) - cpu0) / n * 1000  # ms per request
            client_cpu = (time.process_time() - client0) / n * 1000
            p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if lat else (np.nan,) * 3
            rows.append((name, len(lat), errors, wall, p50, p95, p99, server_cpu, client_cpu))
            print(f"{name:18s} {len(lat) / wall:8.1f} req/s  p50 {p50:7.2f}  p95 {p95:7.2f}  "
                  f"p99 {p99:7.2f} ms  errors {errors}  CPU/request: server {server_cpu:.2f} "
                  f"ms, load generator {client_cpu:.2f} ms")
        rss = peak_rss_gb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if args.no_record:
        return
    note = f"; load avg (1 min) {load_before:.1f} before the run"
    note += f"; {args.machine_note}" if args.machine_note else ""
    for name, n, errors, wall, p50, p95, p99, server_cpu, client_cpu in rows:
        verdict = ""
        if name in TARGETS:
            stat, limit = TARGETS[name]
            value = p95 if stat == "p95" else p99
            verdict = f"; target {stat} < {limit:g} ms: {'met' if value < limit else 'MISSED'}"
        record("Serving", {
            "dataset": f"{health['dataset']} ({health['n_users']:,} users, "
                       f"{health['n_items']:,} items)",
            "protocol": f"{DESCRIPTIONS[name]}"
                        + (f", q = one of the {len(texts)} test queries of "
                           f"{args.search_queries.name}" if texts and name == "search" else "")
                        + f"; model {health['model']}, search {health['search']}; "
                        f"{args.concurrency} concurrent keep-alive clients for {wall:.0f} s "
                        f"after a {args.warmup:g} s warm-up; uvicorn (1 process, asyncio + h11), "
                        f"{args.threads} CPU thread(s) per call; load generator on the same "
                        f"machine",
            "metrics": f"{n / wall:.0f} req/s · p50 {p50:.1f} · p95 {p95:.1f} · p99 {p99:.1f} ms"
                       f" · {errors} errors{verdict} · CPU per request: server "
                       f"{server_cpu:.2f} ms, load generator {client_cpu:.2f} ms",
            "wall time": f"{wall:.1f} s (server up in {startup:.1f} s)",
            "peak memory": f"{rss:.2f} GB server peak RSS",
            "machine": machine() + note,
        }, args.out)
    print(f"recorded {len(rows)} rows in {args.out} under ## Serving")


if __name__ == "__main__":
    main()
