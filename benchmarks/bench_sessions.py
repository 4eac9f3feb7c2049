"""Session generation on protocol P6 (next-k): a generated session against top-k baselines.

    .venv/bin/python benchmarks/bench_sessions.py genius_ml100k_p6 hstu_ml100k_p1 \\
        --set train.max_minutes=2.5 --note "smoke budget"
    .venv/bin/python benchmarks/bench_sessions.py genius_ml100k_p6 --set 'params.experts=[]' \\
        --label "no experts" --out runs/bench_sessions_ablation/none   # the expert ablation

Protocol P6 (docs/protocols.md): per user the last 5 items are the test session, the 5 before
them validation, the rest training. Each preset is trained by `genrec train` in its own process
with ``data.split = next_k`` (so a P1 preset such as hstu_ml100k_p1 runs on P6's split). A session
model (genius) is scored on the list it GENERATES; any other model on its top-20 list, as a set
(the issue's "top-k as a set" baseline); a sequence model (SASRec, HSTU) also gets a "rolled out"
row: its 20 items generated greedily, each pick fed back as its next input
(``SequenceKind.rollout``), from the same trained run. Metrics are `metrics.json`'s ``session/...`` test values:
Recall@20 of the true session, NDCG@5 of the session in order, HR@10 of the first item,
novelty@10 and coverage@10 (ILD@10 where the run has content vectors). CPU s = the training
process's user + system time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record, reset_table  # noqa: E402
from bench_graph import run_preset  # noqa: E402

from genrec.runs import load_run, model_kind  # noqa: E402
from genrec.runs.kinds.session import p6_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = "Session generation — P6 next-k"
INTRO = ("Protocol P6 (docs/protocols.md): per user the last 5 items are the test session, the 5 "
         "before them validation, the rest training (users with fewer than 11 interactions stay "
         "in train only and are counted). genius is scored on the 20-item session it generates; "
         "other models on their top-20 list as a set. Session R@20: share of the true session in "
         "the list; session N@5: NDCG of the session in its order; first HR@10: the first true "
         "item in the top 10; novelty@10 (mean -log2 popularity share) and coverage@10 (share "
         "of the catalogue in anyone's top 10). Early stopping on validation.")
HEADER = ["dataset", "protocol", "model", "session R@20", "session N@5", "first HR@10",
          "ILD@10", "novelty@10", "coverage@10", "epochs (best / run)", "fit s", "CPU s", "note",
          "machine", "date (UTC)", "command"]
SHOWN = {"session R@20": "Recall@20", "session N@5": "NDCG@5", "first HR@10": "HR@10",
         "ILD@10": "ILD@10", "novelty@10": "novelty@10", "coverage@10": "coverage@10"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", help="config names under configs/ (without .toml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for all")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_sessions")
    ap.add_argument("--note", default="", help="free text for the rows (budget, load)")
    ap.add_argument("--label", default="", help="a variant's name, added to the model column "
                                                "(e.g. an ablation: 'behaviour only')")
    args = ap.parse_args()
    reset_table(REPO / "BENCHMARKS.md", TABLE, INTRO, HEADER, append=True)
    for name in args.presets:
        r = run_preset(name, args.out, ["data.split=next_k", *args.sets])
        label = f"{name} · {args.label}" if args.label else name
        add_row(args, r, label, r["metrics"]["test"], "")
        if model_kind(r["model"]).name == "sequence":  # the same run, its own picks fed back
            run, t0 = load_run(r["out"]), time.perf_counter()
            rolled = p6_metrics(run, "test", model_kind(r["model"]).rollout(run, "test", 20))
            add_row(args, r, f"{label} · rolled out", rolled,
                    f"rollout {time.perf_counter() - t0:.0f} s; ")


def add_row(args, r: dict, label: str, test: dict, note: str) -> None:
    train = r["info"].get("train", {})
    session = {k: test[f"session/{v}"] for k, v in SHOWN.items() if f"session/{v}" in test}
    record(TABLE, {"dataset": r["info"]["dataset"], "protocol": "P6", "model": label,
                   **{k: f"{session[k]:.4f}" if k in session else "–" for k in SHOWN},
                   "epochs (best / run)": f"{train.get('best_epoch', '–')} / "
                                          f"{train.get('epochs_run', '–')}",
                   "fit s": f"{r['info'].get('fit_seconds', 0):.0f}",
                   "CPU s": f"{r['cpu']:.0f}", "note": note + args.note,
                   "command": r["command"]},
           REPO / "BENCHMARKS.md", metrics=session)
    print(label, {k: round(v, 4) for k, v in session.items()}, f"{r['cpu']:.0f} CPU s",
          flush=True)


if __name__ == "__main__":
    main()
