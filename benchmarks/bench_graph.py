"""Graph recall on Gowalla P2 at the published level: closed-form graph filters and
many-negative losses, each preset trained by `genrec train` in its own process.

Protocol P2 (PROTOCOL.md): the LightGCN fixed Gowalla split, full ranking, training items
masked, Recall@20 / NDCG@20. Nothing is tuned on the test split: closed-form models use the
published settings, trained models early-stop on a validation part carved from train
(``data.valid_ratio``). CPU seconds are the child process's user + system time.

    .venv/bin/python benchmarks/bench_graph.py gfcf_gowalla_p2 bpr_ccl_gowalla_p2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record, reset_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = "Graph recall — P2 Gowalla"
INTRO = ("Protocol P2 (PROTOCOL.md): the LightGCN fixed Gowalla split (810,128 train / 217,242 "
         "test; 29,858 users, 40,981 items), full ranking, training items masked. Published: "
         "LightGCN 0.1830 / 0.1554, GF-CF 0.1849 / 0.1518, SimpleX 0.1872 / 0.1557 (Recall@20 / "
         "NDCG@20), BSPM 0.1920 / 0.1626. Closed-form rows use the published setting; "
         "trained rows early-stop on a validation part carved from train. CPU s = the training "
         "process's user + system time.")
HEADER = ["dataset", "protocol", "model", "Recall@20", "NDCG@20", "Recall@10", "NDCG@10", "valid Recall@20",
          "vs published", "epochs", "fit s", "eval s", "CPU s", "peak RSS", "note", "machine",
          "date (UTC)", "command"]
PUBLISHED = {"lightgcn": (0.1830, 0.1554), "gfcf": (0.1849, 0.1518), "simplex": (0.1872, 0.1557),
             "bspm": (0.1920, 0.1626)}


def run_preset(name: str, out_root: Path, sets: list[str]) -> dict:
    """Train configs/<name>.toml in a fresh process; its metrics, run.json and cost."""
    out, preset = out_root / name, REPO / "configs" / f"{name}.toml"
    model = tomllib.loads(preset.read_text())["model"]
    argv = [str(REPO / ".venv/bin/genrec"), "train", model, "--config", str(preset), "--out",
            str(out), "--no-progress", "--force", *[a for s in sets for a in ("--set", s)]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run.json").read_text())
    return {"model": model, "out": out, "metrics": metrics, "info": info, "wall": wall,
            "cpu": cpu,
            "rss_gb": after.ru_maxrss / 2**20,
            "command": " ".join(["genrec", *argv[1:]]).replace(str(REPO) + "/", "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", help="config names under configs/ (without .toml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for all")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_graph")
    ap.add_argument("--note", default="", help="free text for the row (load, what was shared)")
    args = ap.parse_args()
    reset_table(REPO / "BENCHMARKS.md", TABLE, INTRO, HEADER, append=True)  # rows stay shown
    for name in args.presets:
        r = run_preset(name, args.out, args.sets)
        test, valid = r["metrics"]["test"], r["metrics"].get("valid", {})
        train = r["info"].get("train", {})
        key = "simplex" if "ccl" in name else "bspm" if "bspm" in name else r["model"]
        paper = PUBLISHED.get(key)
        gap = (f"{test['Recall@20'] - paper[0]:+.4f} / {test['NDCG@20'] - paper[1]:+.4f}"
               if paper else "–")
        row = {"dataset": "gowalla", "protocol": "P2 fixed LightGCN split, train masked",
               "model": name, "Recall@20": f"{test['Recall@20']:.4f}",
               "NDCG@20": f"{test['NDCG@20']:.4f}", "Recall@10": f"{test['Recall@10']:.4f}",
               "NDCG@10": f"{test['NDCG@10']:.4f}",
               "valid Recall@20": f"{valid['Recall@20']:.4f}" if "Recall@20" in valid else "–",
               "vs published": gap,
               "epochs": (f"{train.get('epochs_run', '–')} (best {train.get('best_epoch', '–')})"
                          if train else "– (closed form)"),
               "fit s": f"{r['info'].get('fit_seconds', 0):.1f}",
               "eval s": f"{r['info'].get('eval_seconds', 0):.1f}",
               "CPU s": f"{r['cpu']:.0f}", "peak RSS": f"{r['rss_gb']:.2f} GB",
               "command": r["command"], "note": args.note}
        record(TABLE, row, metrics={"Recall@20": test["Recall@20"], "NDCG@20": test["NDCG@20"]})
        print(name, row["Recall@20"], row["NDCG@20"], row["CPU s"], "CPU s")


if __name__ == "__main__":
    main()
