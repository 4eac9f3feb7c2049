"""Session generation on P6: DPO against the same extra SFT steps and an MMR re-ranker (issue 22).

    .venv/bin/python benchmarks/bench_sessions_dpo.py --seeds 42 43 44 --dpo-epochs 10 \\
        --dpo-lambda 0.2 --dpo-mu 0.2 --dpo-beta 0.1 --note "..."

Per seed (``train.seed``), each model trained by `genrec train` in its own process, from the
preset (--preset, default genius_ml100k_p6, protocol P6: ``data.split = next_k``) with the --set
overrides given here (all three runs get them, so their configs match):

    SFT            the preset as it is (--reuse: kept when already trained under --out)
    DPO            ``params.dpo_reference`` = the SFT run: --dpo-epochs epochs of DPO
                   (``genrec.runs.kinds.session``: sampled sessions, reward = recall of the true
                   continuation + lambda * ILD@10 + mu * novelty@10, against the frozen SFT model)
    SFT + extra    ``params.init_from`` = the SFT run: the same number of epochs of plain session
                   SFT, each the same number of steps (one batch per 128 training users), with a
                   fresh AdamW as the DPO run has
    MMR lambda     the SFT model's candidates re-ranked by maximal marginal relevance (``mmr``)

DPO and SFT + extra validate every epoch with patience = their epochs (no early stop); the trainer
then restores the best validated of THEIR epochs, never the SFT weights: the row says which epoch.
MMR candidates per test user: the SFT model's generated session (greedy, session_len items), then
the best other items by its first-position scores, --candidates in all; relevance falls linearly
with the position in that list, similarity is the cosine of the model's content vectors (those of
ILD@10). Lambda 1 gives back the SFT session itself; the first session_len picks are the list.

Metrics (``genrec.evaluation.session``, P6's cut-offs): NDCG@5 of the session in order, Recall@20,
ILD@10 and novelty@10, computed here per test user from the loaded runs (greedy generation with
the history excluded, as the session kind's evaluation does; the means are checked against each
run's metrics.json). Changes are relative to SFT, with 95% paired bootstrap intervals over users
(``_stats.paired_ci`` of the difference, divided by SFT's mean). Verdict, on point estimates, the
issue's targets: NDCG@5 at most 3% lower, ILD@10 and novelty@10 each at least 10% higher, and for
trained models NDCG@5 above the MMR curve (the Pareto front of the MMR points in (ILD@10, NDCG@5),
linearly interpolated at the model's ILD@10, its end values beyond its ends). The plot (NDCG@5
against ILD@10, every seed) is written to --out/ndcg_vs_ild.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record, reset_table  # noqa: E402
from _stats import paired_ci  # noqa: E402
from bench_graph import run_preset  # noqa: E402

from genrec.data.batches import eval_batch  # noqa: E402
from genrec.evaluation import metrics as M  # noqa: E402
from genrec.evaluation.session import P6_KS, session_ndcg, session_recall  # noqa: E402
from genrec.pipeline.rerank import ItemSimilarity, mmr_order  # noqa: E402
from genrec.runs import Run, load_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = "Session generation — DPO vs controls (P6)"
INTRO = ("Issue 22's DPO against its controls on protocol P6 (docs/protocols.md), one row per "
         "model and seed: the SFT genius run; SFT + extra = the same number of extra epochs "
         "(same steps each) of plain SFT from the SFT weights (`params.init_from`); DPO from the "
         "SFT weights against the frozen SFT model (`params.dpo_reference`); the SFT model's "
         "candidates (its generated session, then its best first-position items) re-ranked by "
         "MMR over the content vectors at several lambdas. Metrics per test user, changes "
         "relative to SFT with 95% paired bootstrap intervals. Targets (point estimates): "
         "NDCG@5 >= -3%, ILD@10 and novelty@10 >= +10%, and above the MMR curve. "
         "benchmarks/bench_sessions_dpo.py has the details.")
METRICS = ("NDCG@5", "Recall@20", "ILD@10", "novelty@10")
CHANGED = ("NDCG@5", "ILD@10", "novelty@10")  # the targets' metrics, compared with SFT
HEADER = ["dataset", "protocol", "seed", "model", *METRICS,
          *(f"Δ{m} vs SFT [95% CI]" for m in CHANGED), "verdict", "epochs (best / run)",
          "CPU s", "plot", "note", "machine", "date (UTC)", "command"]
MAX_LOSS, MIN_GAIN = -0.03, 0.10  # the targets: NDCG@5 change, ILD@10 / novelty@10 change
_SUB_BATCH = 256  # users per generation pass


def mmr(candidates: np.ndarray, unit: np.ndarray, lam: float, n: int) -> np.ndarray:
    """The first ``n`` of ``candidates`` (best first, -1 = empty) by maximal marginal relevance
    (Carbonell & Goldstein 1998): each pick maximises lam * rel - (1 - lam) * its largest cosine
    to the items picked so far; rel = 1 - position / (len - 1) over the real candidates; ``unit``:
    (n_items + 1, C) unit content vectors (zero rows: cosine 0). -1-padded to ``n``. The greedy
    pick is the pipeline re-ranker's (``genrec.pipeline.rerank.mmr_order``)."""
    items = candidates[candidates >= 0]
    out = np.full(n, -1, dtype=np.int64)
    if len(items):
        rel = 1.0 - np.arange(len(items)) / max(len(items) - 1, 1)
        sim = ItemSimilarity(unit, np.zeros(len(unit), dtype=np.int64), "content")
        picked = mmr_order(items, rel, sim, lam, n)[:min(n, len(items))]
        out[:len(picked)] = items[picked]
    return out


def per_user(lists: np.ndarray, sessions: np.ndarray, item_counts: np.ndarray, n_users: int,
             vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Each user's NDCG@5, Recall@20, ILD@10 and novelty@10 (NaN where undefined): the values
    whose means ``genrec.evaluation.session.session_metrics`` reports."""
    top = lists[:, :P6_KS["lists"]]
    return {"NDCG@5": session_ndcg(lists, sessions, P6_KS["ndcg"]),
            "Recall@20": session_recall(lists, sessions, P6_KS["recall"]),
            "ILD@10": M.intra_list_diversity(top, vectors),
            "novelty@10": M.novelty(top, item_counts, n_users)}


def test_sessions(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The users with a test session and their sessions (B, k), right-padded with 0."""
    sessions = run.split.sessions("test")
    users = np.flatnonzero([len(s) > 0 for s in sessions])
    out = np.zeros((len(users), max(len(sessions[u]) for u in users)), dtype=np.int64)
    for row, u in enumerate(users):
        out[row, :len(sessions[u])] = sessions[u]
    return users, out


def generated(run: Run, users: np.ndarray, n_candidates: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (B, session_len) sessions the run's model generates for ``users``' test step (greedy,
    history excluded; the most popular items for an empty history, as the session kind does), and
    (B, n_candidates) candidates: that session, then the best other unseen items by the model's
    first-position scores (-1 where none is left)."""
    model, split, c = run.model, run.split, run.model.config
    history = split.history("test").tocsr()
    popular = np.array([i for i in np.argsort(-split.item_counts(), kind="stable") if i != 0])
    lists, cands = [], []
    for lo in range(0, len(users), _SUB_BATCH):
        u = users[lo:lo + _SUB_BATCH]
        batch = eval_batch(split, "test", u, c.max_len)
        exclude = torch.from_numpy(history[u].toarray() > 0)
        with torch.no_grad():
            session = model.generate(batch, c.session_len, exclude=exclude)
            scores = model.score(batch).masked_fill(exclude, -torch.inf)
        scores.scatter_(1, session.clamp(min=0), -torch.inf)  # -1 lands on PAD, already -inf
        best = scores.topk(max(n_candidates - c.session_len, 0), 1)
        extra = torch.where(torch.isinf(best.values), -1, best.indices)
        session, extra = session.numpy(), extra.numpy()
        for row in np.flatnonzero(np.diff(history.indptr)[u] == 0):
            session[row] = popular[:c.session_len]
            extra[row] = popular[c.session_len:n_candidates]
        lists.append(session)
        cands.append(np.concatenate([session, extra], 1))
    return np.concatenate(lists), np.concatenate(cands)


def relative(values: dict[str, np.ndarray], base: dict[str, np.ndarray], seed: int
             ) -> dict[str, tuple[float, float, float]]:
    """Per metric of CHANGED: (change, CI low, CI high) of the mean relative to ``base``'s, over
    the users where both values are defined."""
    out = {}
    for m in CHANGED:
        a, b = values[m], base[m]
        both = ~np.isnan(a) & ~np.isnan(b)
        lo, hi = paired_ci(a[both], b[both], seed=seed)
        ref = b[both].mean()
        out[m] = ((a[both].mean() - ref) / ref, lo / ref, hi / ref)
    return out


def mmr_front(curve: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The Pareto front (no point with both more ILD@10 and more NDCG@5) of (ILD@10, NDCG@5)
    points, sorted by ILD@10."""
    front = sorted(p for p in curve if not any(q[0] >= p[0] and q[1] >= p[1] and q != p
                                               for q in curve))
    return np.array([p[0] for p in front]), np.array([p[1] for p in front])


def above_curve(ild: float, ndcg: float, curve: list[tuple[float, float]]) -> bool:
    """Whether (ild, ndcg) lies above the MMR front, interpolated at ``ild`` (see the docstring)."""
    xs, ys = mmr_front(curve)
    return ndcg > float(np.interp(ild, xs, ys))


def verdict(change: dict[str, tuple[float, float, float]], above: bool | None) -> str:
    """'meets the targets', or what misses them."""
    misses = [f"NDCG@5 {change['NDCG@5'][0]:+.1%} < {MAX_LOSS:+.0%}"] \
        if change["NDCG@5"][0] < MAX_LOSS else []
    misses += [f"{m} {change[m][0]:+.1%} < {MIN_GAIN:+.0%}" for m in ("ILD@10", "novelty@10")
               if change[m][0] < MIN_GAIN]
    misses += ["below the MMR curve"] if above is False else []
    return "meets the targets" if not misses else "misses: " + "; ".join(misses)


def plot(points: dict[int, dict[str, tuple[float, float]]], path: Path) -> None:
    """NDCG@5 against ILD@10 per seed: the MMR curve (by lambda) and the trained models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    markers = {"SFT": "o", "SFT + extra": "s", "DPO": "*"}
    for i, (seed, pts) in enumerate(sorted(points.items())):
        color = f"C{i}"
        curve = [(k, v) for k, v in pts.items() if k.startswith("MMR")]
        ax.plot([v[0] for _, v in curve], [v[1] for _, v in curve], "-", color=color, alpha=0.6,
                marker=".", label=f"MMR, seed {seed}")
        for name, (x, y) in curve if i == 0 else []:
            ax.annotate(name.split("=")[1], (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        for name, marker in markers.items():
            x, y = pts[name]
            ax.plot(x, y, marker, color=color, markersize=12 if marker == "*" else 7,
                    markeredgecolor="black", label=f"{name}, seed {seed}")
    ax.set(xlabel="ILD@10 (content cosine distance)", ylabel="session NDCG@5",
           title="P6 test: DPO vs SFT + extra steps vs MMR re-ranking (lambda)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def train_seed(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    """The SFT, DPO and SFT + extra runs of one seed, as ``bench_graph.run_preset`` returns them
    (a reused SFT run: cpu None, the command it was trained with)."""
    root = args.out / f"seed{seed}"
    common = [*args.sets, f"train.seed={seed}"]
    sft_dir = root / "sft" / args.preset
    if args.reuse and (sft_dir / "model.pt").is_file() and (sft_dir / "metrics.json").is_file():
        runs = {"SFT": {"out": sft_dir, "cpu": None, "command": "reused: " + _shown(sft_dir),
                        "metrics": json.loads((sft_dir / "metrics.json").read_text()),
                        "info": json.loads((sft_dir / "run.json").read_text())}}
    else:
        runs = {"SFT": run_preset(args.preset, root / "sft", common)}
    more = [f"train.epochs={args.dpo_epochs}", f"train.patience={args.dpo_epochs}",
            "params.pretrain_epochs=0"]
    runs["DPO"] = run_preset(args.preset, root / "dpo", [
        *common, *more, f"params.dpo_reference={sft_dir}", f"params.dpo_lambda={args.dpo_lambda}",
        f"params.dpo_mu={args.dpo_mu}", f"params.dpo_beta={args.dpo_beta}"])
    runs["SFT + extra"] = run_preset(args.preset, root / "extra",
                                     [*common, *more, f"params.init_from={sft_dir}"])
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="genius_ml100k_p6", help="config under configs/")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra --set for every run (SFT, DPO, SFT + extra)")
    ap.add_argument("--reuse", action="store_true", help="keep an SFT run already under --out")
    ap.add_argument("--dpo-epochs", type=int, default=10, help="DPO epochs = extra SFT epochs")
    ap.add_argument("--dpo-lambda", type=float, default=0.2, help="reward weight of ILD@10")
    ap.add_argument("--dpo-mu", type=float, default=0.2, help="reward weight of novelty@10")
    ap.add_argument("--dpo-beta", type=float, default=0.1, help="DPO temperature")
    ap.add_argument("--mmr-lambdas", type=float, nargs="+",
                    default=[1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3])
    ap.add_argument("--candidates", type=int, default=50, help="MMR candidates per user")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_sessions_dpo")
    ap.add_argument("--note", default="", help="free text for the rows (budget, load)")
    ap.add_argument("--no-record", action="store_true", help="print the rows, record nothing")
    args = ap.parse_args()
    if args.dpo_epochs < 1 or any(not 0 <= lam <= 1 for lam in args.mmr_lambdas):
        ap.error("need --dpo-epochs >= 1 and every --mmr-lambdas value in [0, 1]")
    args.out = args.out.resolve()
    figure = args.out / "ndcg_vs_ild.png"
    if not args.no_record:
        reset_table(REPO / "BENCHMARKS.md", TABLE, INTRO, HEADER, append=True)
    what = {"SFT": f"preset {args.preset}",
            "DPO": f"λ={args.dpo_lambda:g}, μ={args.dpo_mu:g}, β={args.dpo_beta:g}, from the SFT "
                   f"weights; weights: best validated of its epochs",
            "SFT + extra": "params.init_from = the SFT run, same epochs and steps per epoch as "
                           "DPO, fresh AdamW; weights: best validated of its epochs"}
    points: dict[int, dict[str, tuple[float, float]]] = {}
    verdicts = []
    for seed in args.seeds:
        runs = train_seed(args, seed)
        loaded = {name: load_run(r["out"]) for name, r in runs.items()}
        sft = loaded["SFT"]
        if sft.config.train.threads:
            torch.set_num_threads(sft.config.train.threads)
        if "content" not in sft.model.modalities:
            sys.exit(f"error: {args.preset} has no content expert, so there is no ILD@10 to "
                     f"trade for: give it params.content")
        vectors = sft.model.modalities["content"].vectors.numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        users, sessions = test_sessions(sft)
        counts, n_users = sft.split.item_counts(), sft.split.n_users

        made = {name: generated(run, users, args.candidates if name == "SFT" else 0)
                for name, run in loaded.items()}
        values, notes = {}, {}
        for name, (lists, _) in made.items():
            values[name] = per_user(lists, sessions, counts, n_users, vectors)
            saved = runs[name]["metrics"]["test"]
            gap = max(abs(np.nanmean(values[name][m]) - saved[f"session/{m}"]) for m in METRICS)
            if gap > 1e-6:
                notes[name] = f"recomputed means differ from metrics.json by up to {gap:.2g}"
                print(f"warning: {name}: {notes[name]}", flush=True)
        for lam in args.mmr_lambdas:
            lists = np.stack([mmr(row, unit, lam, sft.model.config.session_len)
                              for row in made["SFT"][1]])
            values[f"MMR λ={lam:g}"] = per_user(lists, sessions, counts, n_users, vectors)

        means = {name: {m: float(np.nanmean(v[m])) for m in METRICS} for name, v in values.items()}
        points[seed] = {name: (m["ILD@10"], m["NDCG@5"]) for name, m in means.items()}
        curve = [p for name, p in points[seed].items() if name.startswith("MMR")]
        plot(points, figure)
        for name, v in values.items():
            r, trained = runs.get(name, {}), name in runs
            change = relative(v, values["SFT"], seed)
            above = above_curve(*points[seed][name], curve) if trained else None
            judged = "reference" if name == "SFT" else verdict(change, above)
            train = r.get("info", {}).get("train", {})
            note = what.get(name, f"{args.candidates} candidates: the SFT session, then "
                                  f"first-position scores")
            if train.get("stop_reason") == "time_budget":
                note += "; stopped by train.max_minutes"
            model = f"genius SFT + {name}" if name.startswith("MMR") else f"genius {name}"
            if name == "DPO":  # the key of a table row: every setting that changes the model
                model += f", λ={args.dpo_lambda:g} μ={args.dpo_mu:g} β={args.dpo_beta:g}"
            if name in ("DPO", "SFT + extra"):
                model += f", {args.dpo_epochs} epoch{'s' * (args.dpo_epochs != 1)}"
            row = {"dataset": sft.dataset.name, "protocol": "P6", "seed": str(seed),
                   "model": model,
                   **{m: f"{means[name][m]:.4f}" for m in METRICS},
                   **{f"Δ{m} vs SFT [95% CI]": "–" if name == "SFT" else
                      "{:+.1%} [{:+.1%}, {:+.1%}]".format(*change[m]) for m in CHANGED},
                   "verdict": judged,
                   "epochs (best / run)": (f"{train['best_epoch']} / {train['epochs_run']}"
                                           if train else "–"),
                   "CPU s": f"{r['cpu']:.0f}" if r.get("cpu") is not None else "–",
                   "plot": _shown(figure),
                   "note": "; ".join(x for x in (note, notes.get(name, ""), args.note) if x)}
            if trained:
                row["command"] = r["command"]
            if name == "DPO":
                verdicts.append(judged)
            if args.no_record:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                record(TABLE, row, REPO / "BENCHMARKS.md", metrics=means[name])
        print(f"seed {seed}: DPO {verdicts[-1]}", flush=True)
    met = sum(v == "meets the targets" for v in verdicts)
    print(f"DPO meets issue 22's targets in {met} of {len(verdicts)} seeds; plot {figure}")


if __name__ == "__main__":
    main()
