"""Semantic-ID recommender (issue 20): presets on P1 and P1-new, and the cost of beam decoding.

    .venv/bin/python benchmarks/bench_semid.py train semid_beauty_p1 sasrec_beauty_p1new \\
        semid_beauty_p1new ease_beauty_p1new [--reference sasrec_beauty_p1new] [--set K=V]
    .venv/bin/python benchmarks/bench_semid.py decode runs/bench_semid/semid_beauty_p1 \\
        [--beams 20 50 100] [--users 2000]

``train``: each preset (configs/<name>.toml: semid, SASRec, EASE, TIGER, ...) is trained by
`genrec train` in its own process, as benchmarks/bench_graph.py does; CPU seconds are that
process's user + system time, peak RSS its maximum resident set. A P1-new run is then evaluated
once more in this process for per-user test metrics (``<out>/<preset>/per_user_test.npz``), so
that its row can carry a paired bootstrap 95% CI of its new-item-slice NDCG@10 minus that of
``--reference`` (trained in this call or before, under the same ``--out``). P1-new
(PROTOCOL.md, ``data.new_items``): rows report overall metrics and those of the test users whose
target is a new item. Rows go to "Semantic-ID recommender — P1 / P1-new".

``decode``: for a trained semid run, the test users (or a seeded sample of ``--users``) are
scored with exact full ranking and with the constrained beam search over the prefix trie (beam
20/50/100, the model's ``decode = "beam"``); per beam: recall of exact's top-10 (history masked
in both), HR@10 / NDCG@10 on the same users, and model time in ms per 1,000 users (scoring only,
``--threads`` threads). Rows go to "Semantic-ID decoding cost".

``--md PATH`` records into another BENCHMARKS.md (its records stay beside it), e.g. for a smoke
run. Environment: GENREC_HOME / GENREC_DATA as for every benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record, reset_table  # noqa: E402
from _stats import paired_ci  # noqa: E402
from bench_graph import run_preset  # noqa: E402

from genrec.evaluation import evaluate  # noqa: E402
from genrec.runs import evaluate_run, load_run, scorer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = "Semantic-ID recommender — P1 / P1-new"
INTRO = ("P1 / P1-new (PROTOCOL.md), full ranking, history masked; P1-new: 10% of items new, "
         "also scored on new-target users (new ...). CPU s: the training process.")
HEADER = ["dataset", "protocol", "model", "semantic IDs", "HR@10", "NDCG@10", "new HR@10",
          "new NDCG@10", "new users", "new N@10 vs reference (95% CI)", "valid NDCG@10",
          "epochs", "fit s", "CPU s", "peak RSS", "fallback IDs", "note", "machine",
          "date (UTC)", "command"]
TABLE_DECODE = "Semantic-ID decoding cost"
INTRO_DECODE = ("A trained semid run's test users scored exactly and by constrained beam search; "
                "recall of exact's top-10, ms per 1,000 users (model time).")
HEADER_DECODE = ["dataset", "protocol", "model", "method", "recall of exact top-10", "HR@10",
                 "NDCG@10", "ms / 1k users", "users", "threads", "note", "machine", "date (UTC)",
                 "command"]
P1 = "P1 leave-one-out, history masked"


def protocol(data: dict) -> str:
    share = data.get("new_items", 0.0)
    return f"P1-new ({share:.0%} of items new), history masked" if share else P1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- train ----------------------------------------------------------------------------------
def per_user(out: Path) -> Path:
    """Per-user test HR@10 / NDCG@10 of the run in ``out`` and its new-target flags, saved
    beside it for paired confidence intervals between presets."""
    run = load_run(out)
    res = evaluate_run(run, "test", auc=False)
    path = out / "per_user_test.npz"
    np.savez(path, users=res.users, hr=res.per_user["HR@10"], ndcg=res.per_user["NDCG@10"],
             new=run.split.new_target_users("test")[res.users])
    return path


def versus(path: Path, reference: Path) -> str:
    """'+0.0123 [+0.0050, +0.0190]': new-slice NDCG@10 of ``path`` minus ``reference``'s, paired
    by user, with its bootstrap 95% CI; '–' when either lacks the slice."""
    a, b = np.load(path), np.load(reference)
    if not a["new"].any() or not np.array_equal(a["users"], b["users"]) \
            or not np.array_equal(a["new"], b["new"]):
        return "–"  # another split (P1 against P1-new): nothing to pair
    x, y = a["ndcg"][a["new"]], b["ndcg"][b["new"]]
    lo, hi = paired_ci(x, y)
    return f"{x.mean() - y.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"


def fallback_cell(ids: dict) -> str:
    """Items given a reserved fallback ID (no content), or what an older ID file did."""
    if not ids:
        return "–"  # not a semantic-ID model
    if ids.get("n_fallback_ids") is None:
        return f"none (old file: {ids.get('n_without_vector', '?')} zero-vector items)"
    return str(ids["n_fallback_ids"])


def train_rows(args) -> None:
    reset_table(args.md, TABLE, INTRO, HEADER, append=True)  # earlier rows stay shown
    ref = args.out / args.reference / "per_user_test.npz" if args.reference else None
    order = sorted(args.presets, key=lambda p: p != args.reference)  # the reference first
    for name in order:
        log(f"training {name}")
        r = run_preset(name, args.out, args.sets)
        test, valid = r["metrics"]["test"], r["metrics"].get("valid", {})
        new = "new/users" in test  # P1-new: per-user metrics for the paired CIs
        pu = per_user(r["out"]) if new else None
        info, train = r["info"], r["info"].get("train", {})
        ids = info.get("semantic_ids", {})
        data = tomllib.loads((r["out"] / "config.toml").read_text())["data"]
        cell = lambda key: f"{test[key]:.4f}" if key in test else "–"  # noqa: E731
        row = {"dataset": info["dataset"], "protocol": protocol(data),
               "model": f"{name} · {args.label}" if args.label else name,
               "semantic IDs": ids.get("name", "–"),
               "HR@10": cell("HR@10"), "NDCG@10": cell("NDCG@10"),
               "new HR@10": cell("new/HR@10"), "new NDCG@10": cell("new/NDCG@10"),
               "new users": str(test["new/users"]) if new else "–",
               "new N@10 vs reference (95% CI)":
                   (f"{versus(pu, ref)} vs {args.reference}"
                    if new and ref and ref.is_file() and name != args.reference else "–"),
               "valid NDCG@10": f"{valid['NDCG@10']:.4f}" if "NDCG@10" in valid else "–",
               "epochs": (f"{train.get('epochs_run', '–')} (best {train.get('best_epoch', '–')})"
                          if train else "– (closed form)"),
               "fit s": f"{info.get('fit_seconds', 0):.1f}", "CPU s": f"{r['cpu']:.0f}",
               "peak RSS": f"{r['rss_gb']:.2f} GB",
               "fallback IDs": fallback_cell(ids),
               "note": args.note, "command": r["command"]}
        numbers = {k: test[k] for k in ("HR@10", "NDCG@10", "new/HR@10", "new/NDCG@10")
                   if k in test}
        record(TABLE, row, args.md, metrics=numbers)
        log(f"{name}: HR@10 {row['HR@10']} NDCG@10 {row['NDCG@10']} new {row['new HR@10']} / "
            f"{row['new NDCG@10']} ({row['new users']} users), {row['CPU s']} CPU s")


# ---- decode ---------------------------------------------------------------------------------
def timed(score_fn):
    """``score_fn`` that adds its own seconds to ``.seconds`` (model time, not ranking)."""
    def score(users: np.ndarray):
        t0 = time.perf_counter()
        out = score_fn(users)
        score.seconds += time.perf_counter() - t0
        return out

    score.seconds = 0.0
    return score


def decode_rows(args) -> None:
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    if run.config.model != "semid":
        raise SystemExit(f"{args.run} is a {run.config.model} run; decode compares semid's exact "
                         f"scoring with its beam search")
    split, model = run.split, run.model
    seen, targets = split.seen("test"), split.targets("test")
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    if args.users and args.users < len(users):
        users = np.sort(np.random.default_rng(0).choice(users, args.users, replace=False))
    reset_table(args.md, TABLE_DECODE, INTRO_DECODE, HEADER_DECODE, append=True)
    exact_top = None
    for beam in [0, *args.beams]:  # 0: exact
        model.config.decode = "beam" if beam else "exact"
        model.config.beam_size = beam or model.config.beam_size
        score = timed(scorer(run, "test"))
        res = evaluate(score, seen, targets, ks=(10,), users=users, keep_topk=True, auc=False,
                       batch_users=run.config.eval.batch_users)
        if exact_top is None:
            exact_top = res.topk
        overlap = [len(set(a[a > 0]) & set(b[b > 0])) / max(1, (b > 0).sum())
                   for a, b in zip(res.topk, exact_top)]
        method = f"beam {beam}" if beam else "exact (every item scored)"
        row = {"dataset": run.dataset.name, "protocol": protocol(vars(run.config.data)),
               "model": Path(args.run).name, "method": method,
               "recall of exact top-10": f"{np.mean(overlap):.4f}",
               "HR@10": f"{res.metrics['HR@10']:.4f}", "NDCG@10": f"{res.metrics['NDCG@10']:.4f}",
               "ms / 1k users": f"{1000 * score.seconds / len(users) * 1000:.0f}",
               "users": f"{len(users):,}", "threads": str(args.threads), "note": args.note}
        record(TABLE_DECODE, row, args.md,
               metrics={"HR@10": res.metrics["HR@10"], "NDCG@10": res.metrics["NDCG@10"]})
        log(f"{method}: recall of exact top-10 {row['recall of exact top-10']}, HR@10 "
            f"{row['HR@10']}, {row['ms / 1k users']} ms / 1k users")


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--md", type=Path, default=REPO / "BENCHMARKS.md",
                        help="the BENCHMARKS.md to record into (records stay beside it)")
    common.add_argument("--note", default="", help="free text for the rows (load, sharing)")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    tr = sub.add_parser("train", parents=[common], help="train presets, record P1 / P1-new rows")
    tr.add_argument("presets", nargs="+", help="config names under configs/ (without .toml)")
    tr.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for all")
    tr.add_argument("--out", type=Path, default=REPO / "runs" / "bench_semid")
    tr.add_argument("--reference", default="", help="preset the new-item slice is compared to")
    tr.add_argument("--label", default="", help="a variant's name, added to the model column "
                                                "(e.g. for --set params.item_output=codes)")
    de = sub.add_parser("decode", parents=[common],
                        help="exact scoring against beam search for a semid run")
    de.add_argument("run", type=Path, help="a trained semid run directory")
    de.add_argument("--beams", type=int, nargs="+", default=[20, 50, 100])
    de.add_argument("--users", type=int, default=0, help="seeded sample of test users (0: all)")
    de.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    train_rows(args) if args.mode == "train" else decode_rows(args)


if __name__ == "__main__":
    main()
