"""Show cheaply that a refactor kept behaviour: EASE and SASRec on ML-100k and Beauty, same seeds.

Trains four short runs with the frozen presets (SASRec for a fixed few epochs, so the result does
not depend on the machine's speed) and writes their test metrics as JSON. Run it on the old and
the new tree and compare: the numbers must be identical.

    git worktree add /tmp/old <rev>
    (cd /tmp/old && REPO=/tmp/old PYTHONPATH=/tmp/old/src OPENBLAS_NUM_THREADS=1 \\
        /path/to/.venv/bin/python /path/to/benchmarks/refactor_check.py /tmp/old.json)
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/refactor_check.py /tmp/new.json
    diff /tmp/old.json /tmp/new.json

``--only ease_ml100k,sasrec_ml100k`` runs a subset (the Beauty pair takes a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from genrec.runs import make_config, train

RUNS = [  # name, preset, overrides (epochs fixed: the result must not depend on the clock)
    ("ease_ml100k", "configs/ease_ml100k_p1.toml", []),
    ("sasrec_ml100k", "configs/sasrec_ml100k_p1.toml",
     ["train.epochs=3", "train.max_minutes=60", "params.max_len=50"]),
    ("ease_beauty", "configs/ease_beauty_p1.toml", []),
    ("sasrec_beauty", "configs/sasrec_beauty_p1.toml", ["train.epochs=2", "train.max_minutes=60"]),
]
SHOWN = ("HR@10", "NDCG@10", "NDCG@5", "AUC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="JSON file for the metrics")
    ap.add_argument("--only", default="", help="comma-separated names among " +
                    ", ".join(name for name, _, _ in RUNS))
    args = ap.parse_args()
    repo = Path(os.environ.get("REPO", Path(__file__).resolve().parents[1]))
    wanted = set(filter(None, args.only.split(",")))
    out = {}
    for name, preset, sets in RUNS:
        if wanted and name not in wanted:
            continue
        run = train(make_config(None, sets, repo / preset), None)
        out[name] = {k: round(v, 6) for k, v in run.info["metrics"]["test"].items() if k in SHOWN}
        print(name, out[name], flush=True)
    args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
