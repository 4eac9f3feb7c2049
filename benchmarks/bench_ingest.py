"""Ingestion at scale: MovieLens-32M-shaped CSV -> Dataset on disk, timed and memory-measured.

    .venv/bin/python benchmarks/bench_ingest.py --rows 6000000 --rows 32000000

For each size: generate (or reuse) ``benchmarks/out/ml-synth-<rows>/ratings.csv`` with
``gen_movielens.py``, then run, in a fresh subprocess so its peak memory is that run's alone,

    read_ml_csv(dir) -> build_dataset(raw, "ml-32m-synth", Filters(min_user=5, min_item=5))
                     -> Dataset.save(benchmarks/out/datasets/...)

The subprocess reports its wall time per step and its peak RSS (``getrusage(RUSAGE_SELF)``,
plus the high-water mark of each step when the kernel lets us reset it through
``/proc/self/clear_refs``). Targets (from the issue, on 2 cores): 6M rows < 60 s and < 3 GB;
32M rows < 10 min and < 10 GB. Each result is appended to ``BENCHMARKS.md`` under
``## Ingestion at scale``. A benchmark, not a test: pytest never collects this folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _record import machine, record  # noqa: E402

TABLE = "Ingestion at scale"
FILTERS = {"min_user": 5, "min_item": 5}
TARGETS = {6_000_000: (60.0, 3.0), 32_000_000: (600.0, 10.0)}  # rows -> (seconds, GB)


def label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else str(rows)


def ensure_data(rows: int, seed: int, out: Path) -> tuple[Path, dict]:
    """The generated raw folder for ``rows``; generated (in its own process) when missing."""
    folder = out / f"ml-synth-{label(rows)}"
    stamp = folder / "gen.json"
    if stamp.is_file() and (folder / "ratings.csv").is_file():
        info = json.loads(stamp.read_text())
        if info.get("rows") == rows and info.get("seed") == seed:
            return folder, info
    print(f"generating {rows:,} rows into {folder} ...", flush=True)
    subprocess.run([sys.executable, str(HERE / "gen_movielens.py"), "--rows", str(rows),
                    "--out", str(folder), "--seed", str(seed)], check=True)
    return folder, json.loads(stamp.read_text())


# ---- the measured subprocess ----------------------------------------------------------------
def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next step's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def step_timer() -> tuple[dict[str, dict], Callable[[str, Callable[[], Any]], Any]]:
    """``(steps, step)``: ``step(name, fn)`` returns ``fn()`` and records in ``steps[name]`` its
    wall seconds and its own peak RSS (None where the kernel cannot reset the mark)."""
    steps: dict[str, dict] = {}
    per_step = _reset_hwm()

    def step(name: str, fn: Callable[[], Any]) -> Any:
        _reset_hwm()
        t0 = time.perf_counter()
        out = fn()
        steps[name] = {"s": round(time.perf_counter() - t0, 2),
                       "peak_gib": round(_hwm_gib(), 2) if per_step else None}
        return out

    return steps, step


def child(raw_dir: Path, ds_dir: Path) -> None:
    """Run read -> build -> save once and print one JSON line with timings and peaks."""
    t_start = time.perf_counter()
    steps, step = step_timer()

    def load():
        from genrec.data.ingest import Filters, build_dataset
        try:
            from genrec.data.formats.movielens import read_ml_csv
        except ImportError:  # stand-in until the MovieLens reader lands
            read_ml_csv = None
        return Filters, build_dataset, read_ml_csv

    Filters, build_dataset, read_ml_csv = step("import", load)
    if read_ml_csv is not None:
        reader = "genrec.data.formats.movielens.read_ml_csv"
        raw = step("read", lambda: read_ml_csv(raw_dir))
    else:
        import polars as pl

        from genrec.data.formats import RawData

        reader = "stand-in: RawData(pl.scan_csv(...).rename(...))"
        raw = step("read", lambda: RawData(
            pl.scan_csv(raw_dir / "ratings.csv").rename(
                {"userId": "user_id", "movieId": "item_id"}),
            info={"timestamp": "unix"}))
    ds = step("build", lambda: build_dataset(raw, "ml-32m-synth", Filters(**FILTERS)))
    step("save", lambda: ds.save(ds_dir))
    print(json.dumps({
        "reader": reader, "steps": steps,
        "wall_s": round(time.perf_counter() - t_start, 2),
        # resetting VmHWM also resets ru_maxrss, so the run's peak is the largest step peak
        "peak_gib": round(max([_peak_gib()] + [v["peak_gib"] or 0 for v in steps.values()]), 2),
        "kept": {"interactions": ds.interactions.height, "users": ds.n_users,
                 "items": ds.n_items},
        "raw": ds.meta.get("counts_raw", {}),
    }))


# ---- driver ------------------------------------------------------------------------------------
def run_one(rows: int, seed: int, out: Path, keep: bool) -> dict:
    raw_dir, gen = ensure_data(rows, seed, out)
    ds_dir = out / "datasets" / f"ml-32m-synth-{label(rows)}"
    print(f"ingesting {raw_dir}/ratings.csv ({rows:,} rows) in a subprocess ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(raw_dir), str(ds_dir)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"ingest of {rows:,} rows failed (exit {proc.returncode}):\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(rows=rows, gen=gen, process_wall_s=round(wall, 2))
    if not keep:
        shutil.rmtree(ds_dir, ignore_errors=True)
    return result


def verdict(rows: int, wall: float, peak_gib: float) -> str:
    if rows not in TARGETS:
        return "no target for this size"
    t_s, t_gb = TARGETS[rows]
    ok = wall < t_s and peak_gib * 2**30 / 1e9 < t_gb  # peaks are measured in GiB, targets in GB
    return f"target < {t_s:.0f} s and < {t_gb:.0f} GB: {'met' if ok else 'MISSED'}"


def describe(r: dict) -> dict:
    steps = " · ".join(
        f"{k} {v['s']:.1f} s" + (f" ({v['peak_gib']:.2f} GiB)" if v.get("peak_gib") else "")
        for k, v in r["steps"].items())
    k, g = r["kept"], r["gen"]
    return {
        "dataset": f"ml-32m-synth: {r['rows']:,} ratings, {g['users']:,} users, "
                   f"{g['items']:,} movies (benchmarks/gen_movielens.py, seed {g['seed']})",
        "protocol": f"{r['reader']} -> build_dataset(Filters(min_user=5, min_item=5)) "
                    f"-> Dataset.save, one fresh process",
        "metrics": f"{steps}; kept {k['interactions']:,} interactions, {k['users']:,} users, "
                   f"{k['items']:,} items; "
                   f"{verdict(r['rows'], r['process_wall_s'], r['peak_gib'])}",
        "wall time": f"{r['process_wall_s']:.1f} s (process, incl. imports)",
        "peak memory": f"{r['peak_gib']:.2f} GiB peak RSS",
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, action="append",
                    help="ratings to generate and ingest; repeat for several sizes (default 6M)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "out", help="data + dataset folder")
    ap.add_argument("--record-to", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    ap.add_argument("--keep", action="store_true", help="keep the written Dataset folders")
    ap.add_argument("--machine-note", default="",
                    help='appended to the machine column, e.g. "shared with other jobs"')
    args = ap.parse_args()
    for rows in args.rows or [6_000_000]:
        r = run_one(rows, args.seed, args.out, args.keep)
        row = describe(r)
        if args.machine_note:
            row["machine"] = f"{machine()}; {args.machine_note}"
        print(json.dumps(r, indent=1))
        print(" | ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
        if not args.no_record:
            record(TABLE, row, args.record_to)
            print(f"recorded in {args.record_to} under '## {TABLE}'")


if __name__ == "__main__":
    main()
