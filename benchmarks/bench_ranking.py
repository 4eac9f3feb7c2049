"""Recall -> rank on protocol P5: each recall channel alone and the pipeline's ranker, one table.

Protocol P5 (PROTOCOL.md): recall runs train on P1's train part (EASE / ItemCF without refit);
the ranker trains on each user's VALIDATION position (candidates = the union of the channels'
top lists, features strictly before that position) and ranks the TEST position's candidates;
items outside the candidate set rank after every candidate. HR@10 / NDCG@10 are P1's full
ranking, so the channel rows and the ranker row are comparable; candidate recall = the test item
is among the candidates; AUC / GAUC / logloss are the ranker's on the test candidate lists
(LightGBM's probabilities: Platt-scaled on held-out validation users). The ranker row carries
its relative NDCG@10 gain over the best channel and the 95% paired bootstrap CI of the
difference. CPU s = the pipeline process's user + system time (recall runs not included).

Each dataset trains its recall runs with `genrec train` (skipped with --reuse when they exist),
then `genrec pipeline train configs/pipeline_<dataset>_p5.toml`, each in its own process, with
the working directory --workdir (the configs name their runs relative to it):

    .venv/bin/python benchmarks/bench_ranking.py ml100k
    .venv/bin/python benchmarks/bench_ranking.py beauty --reuse --note "load 3"

``mmoe-ml100k`` is the multi-task study instead (its own table; see ``mmoe_study``):

    .venv/bin/python benchmarks/bench_ranking.py mmoe-ml100k
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record, reset_table  # noqa: E402
from _stats import paired_ci  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENREC = str(REPO / ".venv/bin/genrec")
TABLE = "Recall -> rank — P5 two-stage leave-one-out"
INTRO = ("Protocol P5 (PROTOCOL.md): recall channels train on P1's train part (no refit); the "
         "ranker trains on the validation position's candidates (union of the channels' top "
         "lists; point-in-time features) and orders the test position's; items outside the "
         "candidate set rank after every candidate, so HR@10 / NDCG@10 are P1's full ranking for "
         "every row. ILD@10: intra-list diversity of the top 10 (1 - similarity, content cosine "
         "or same category; genrec.pipeline.rerank); a '+ mmr' / '+ category' row is the "
         "ranker's list re-ranked for diversity. Candidate recall: the test item is among the "
         "candidates. AUC / GAUC / "
         "logloss: the ranker on the test candidate lists. vs best recall: relative NDCG@10 "
         "gain over the best channel alone, with the 95% paired bootstrap CI of the difference.")
HEADER = ["dataset", "protocol", "model", "HR@10", "NDCG@10", "ILD@10", "candidate recall", "AUC",
          "GAUC", "logloss", "vs best recall", "CPU s", "note", "machine", "date (UTC)",
          "command"]
# dataset -> (pipeline preset, [(model, its `genrec train` settings)] for the channels that need
# a run: a P1 preset's name, or the options where the dataset has no preset for that model)
_SPORTS = ["--data", "amazon-sports", "--split", "loo"]
DATASETS = {
    "ml100k": ("pipeline_ml100k_p5", [("ease", "ease_ml100k_p1"), ("itemcf", "itemcf_ml100k_p1")]),
    "beauty": ("pipeline_beauty_p5", [("sasrec", "sasrec_beauty_p1"), ("ease", "ease_beauty_p1"),
                                      ("itemcf", "itemcf_beauty_p1")]),
    "sports": ("pipeline_sports_p5", [  # see the preset's header: no Sports EASE / ItemCF presets
        ("sasrec", "sasrec_sports_p1"),
        ("ease", [*_SPORTS, "--set", "params.l2=500", "--set", "params.dtype=float64"]),
        ("itemcf", [*_SPORTS, "--set", "params.k=200"])]),
}


# ---- the MMoE study ------------------------------------------------------------------------------
MMOE_TABLE = "Multi-task ranking — MMoE on ML-100k"
MMOE_INTRO = ("Two tasks per (user, candidate) on ML-100k: the user rates the item at all "
              "(rated), and rates it >= 4 (liked; 0 when not rated). Per user, the ratings from "
              "the cut at 80% of their history on (a same-second burst never split) are the rated "
              "candidates, plus 4 unrated items per rated one sampled by popularity; features "
              "(genrec.features.ranking: user and item profiles, genre crosses, the behaviour "
              "sequence) strictly before the cut. Users split 70/10/20 (train / early stopping "
              "on mean AUC / test); AUC and GAUC of each task on the test users. Same embedding, "
              "bottom widths and towers for every model; the two single-task models are "
              "shared-bottom networks with one task each, each task's numbers from its own "
              "model (params and CPU s summed).")
MMOE_HEADER = ["dataset", "model", "AUC rated", "AUC liked", "GAUC rated", "GAUC liked",
               "params", "CPU s", "note", "machine", "date (UTC)", "command"]
MMOE_FEATURES = ["user_activity", "user_recency_days", "user_mean_rating", "user_top_category",
                 "item_pop", "item_pop_recent", "item_trend", "item_age_days", "item_category",
                 "category_share", "days_since_category", "history"]


def two_task_candidates(log: pl.DataFrame, n_items: int, future: float = 0.2, n_neg: int = 4,
                        seed: int = 0) -> pl.DataFrame:
    """The study's rows: user_idx, item_idx, t (the user's cut), label (rated), liked (rating
    >= 4). Each user's cut is the timestamp of their event at position floor(n * (1 - future));
    every event at or after it is a rated candidate; ``n_neg`` items per rated one that the user
    never rated are drawn without replacement, by their share of all ratings. Users without an
    event before their cut are left out."""
    rng = np.random.default_rng(seed)
    log = log.sort(["user_idx", "timestamp", "item_idx"])
    cuts = (log.group_by("user_idx", maintain_order=True)
            .agg(pl.col("timestamp").get((pl.len() * (1 - future)).floor().cast(pl.Int64)
                                          .clip(0, pl.len() - 1)).alias("t"),
                 pl.col("timestamp").min().alias("first")))
    cuts = cuts.filter(pl.col("first") < pl.col("t")).drop("first")
    rated = (log.join(cuts, on="user_idx").filter(pl.col("timestamp") >= pl.col("t"))
             .select("user_idx", "item_idx", "t", pl.lit(1, pl.Int8).alias("label"),
                     (pl.col("rating") >= 4).cast(pl.Int8).alias("liked")))
    counts = np.bincount(log["item_idx"].to_numpy(), minlength=n_items + 1).astype(np.float64)
    seen = log.group_by("user_idx").agg("item_idx")
    seen = dict(zip(seen["user_idx"].to_list(), seen["item_idx"].to_list()))
    n_pos = rated.group_by("user_idx").agg(pl.len(), pl.col("t").first())
    users, items, times = [], [], []
    for u, n, t in n_pos.iter_rows():
        p = counts.copy()
        p[seen[u]] = 0.0
        size = min(n * n_neg, int((p > 0).sum()))
        draw = rng.choice(n_items + 1, size=size, replace=False, p=p / p.sum())
        users += [u] * size
        items += draw.tolist()
        times += [t] * size
    negatives = pl.DataFrame({"user_idx": users, "item_idx": items, "t": times},
                             schema={c: rated.schema[c] for c in ("user_idx", "item_idx", "t")})
    negatives = negatives.with_columns(pl.lit(0, pl.Int8).alias("label"),
                                       pl.lit(0, pl.Int8).alias("liked"))
    return pl.concat([rated, negatives]).sort(["user_idx", "item_idx"])


def mmoe_study(out: Path, note: str, seed: int = 0) -> None:
    """MMoE vs shared bottom vs two single-task models on ML-100k's two tasks (MMOE_INTRO)."""
    import itertools
    from dataclasses import replace

    import torch

    from genrec.data.prepare import load_dataset
    from genrec.evaluation.binary import binary_metrics
    from genrec.features.ranking import FeatureConfig, build_features
    from genrec.models.mmoe import MMoE, MMoEConfig
    from genrec.pipeline.ranking import feature_batches, standardiser
    from genrec.runs.kinds.features import fit_features_model, score_features_model
    from genrec.training.trainer import TrainConfig

    ds = load_dataset("ml-100k")
    log = ds.interactions.select("user_idx", "item_idx", "timestamp", "rating")
    cands = two_task_candidates(log, ds.n_items, seed=seed)
    table = build_features(cands.select("user_idx", "item_idx", "label", "t"), log, ds.items,
                           FeatureConfig(names=MMOE_FEATURES), ds.n_items)
    table = replace(table, frame=table.frame.with_columns(cands["liked"]))
    users = cands["user_idx"].unique().sort().to_numpy()
    part = np.random.default_rng(seed).permutation(len(users)) % 10  # 0-6 / 7 / 8-9
    cut = {name: users[np.isin(part, ids)] for name, ids in
           (("train", range(7)), ("valid", [7]), ("test", [8, 9]))}
    parts = {k: replace(table, frame=table.frame.filter(pl.col("user_idx").is_in(v.tolist())))
             for k, v in cut.items()}
    stats = standardiser(parts["train"])
    train_cfg = TrainConfig(epochs=10, lr=1e-3, batch_size=256, patience=2, metric="AUC",
                            seed=seed, threads=1)

    def fit(structure: str, labels: tuple[str, ...]) -> tuple[dict[str, float], int, float]:
        torch.manual_seed(seed)
        model = MMoE(MMoEConfig(n_items=ds.n_items, n_dense=len(table.dense),
                                sparse_cards=table.sparse_cards, n_tasks=len(labels),
                                max_len=50, structure=structure, n_experts=4))
        order = itertools.count(seed)
        cpu = time.process_time()
        fit_features_model(
            model, lambda: feature_batches(parts["train"], stats, 256, next(order), labels),
            lambda: feature_batches(parts["valid"], stats, 4096, labels=labels), train_cfg)
        test = parts["test"]
        probs = score_features_model(model, feature_batches(test, stats, 4096, labels=labels))
        truth = test.frame.select(labels).to_numpy()
        m = binary_metrics(probs, truth, test.frame["user_idx"].to_numpy())
        per_task = {f"{k} {label}": m[f"{k}_t{t}"] if len(labels) > 1 else m[k]
                    for t, label in enumerate(labels) for k in ("AUC", "GAUC")}
        return per_task, sum(p.numel() for p in model.parameters()), time.process_time() - cpu

    reset_table(out, MMOE_TABLE, MMOE_INTRO, MMOE_HEADER, append=True)
    rated, liked = fit("shared_bottom", ("label",)), fit("shared_bottom", ("liked",))
    rows = {"MMoE (4 experts)": fit("mmoe", ("label", "liked")),
            "shared bottom": fit("shared_bottom", ("label", "liked")),
            "two single-task models": ({**rated[0], **liked[0]}, rated[1] + liked[1],
                                       rated[2] + liked[2])}
    for name, (m, n_params, cpu) in rows.items():
        cells = {"AUC rated": m["AUC label"], "AUC liked": m["AUC liked"],
                 "GAUC rated": m["GAUC label"], "GAUC liked": m["GAUC liked"]}
        record(MMOE_TABLE, {"dataset": "ml-100k", "model": name,
                            **{k: f"{v:.4f}" for k, v in cells.items()},
                            "params": f"{n_params:,}", "CPU s": f"{cpu:.0f}", "note": note},
               path=out, metrics=cells)
        print(name, " ".join(f"{k} {v:.4f}" for k, v in cells.items()), f"CPU {cpu:.0f} s")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def train_recall(pipeline: dict, recall: list[tuple[str, str | list[str]]], workdir: Path,
                 reuse: bool) -> None:
    """Each channel's run, trained on the train part only (eval.refit=false)."""
    runs = {c["name"]: c["run"] for c in pipeline["channels"] if c.get("run")}
    for model, settings in recall:
        out = workdir / runs[model]
        if reuse and (out / "run.json").is_file():
            continue
        if isinstance(settings, str):  # a preset
            settings = ["--config", str(REPO / "configs" / f"{settings}.toml")]
        subprocess.run([GENREC, "train", model, *settings, "--set", "eval.refit=false",
                        "--out", str(out), "--force", "--no-progress"], check=True, cwd=workdir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", choices=[*DATASETS, "mmoe-ml100k"])
    ap.add_argument("--workdir", type=Path, default=REPO, help="where the configs' runs/ live")
    ap.add_argument("--reuse", action="store_true", help="keep recall runs that already exist")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md",
                    help="the BENCHMARKS.md to render")
    ap.add_argument("--note", default="", help="free text for the rows (load, what was shared)")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="pipeline override (e.g. ranker.negatives=10); the ranked rows' model "
                         "names carry the overrides")
    ap.add_argument("--rankers", default="", help="comma list of ranker models to run instead "
                    "of the preset's (e.g. lightgbm,din,dcnv2,ranker): one pipeline run each")
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    if "mmoe-ml100k" in args.datasets:
        mmoe_study(args.out, args.note)
    if not set(args.datasets) & set(DATASETS):
        return
    reset_table(args.out, TABLE, INTRO, HEADER, append=True)
    for name in [d for d in args.datasets if d in DATASETS]:
        preset, recall = DATASETS[name]
        config = REPO / "configs" / f"{preset}.toml"
        train_recall(tomllib.loads(config.read_text()), recall, workdir, args.reuse)
        for ranker in args.rankers.split(",") if args.rankers else [None]:
            run_pipeline(name, preset, config, ranker, workdir, args)


def with_ranker(config: Path, ranker: str, folder: Path) -> Path:
    """A copy of the pipeline preset whose [ranker] model is ``ranker`` (the rest unchanged)."""
    text = config.read_text()
    head, sep, tail = text.partition("\n[ranker]\n")
    if not sep or not re.match(r'model = "[^"]*"\n', tail):
        raise SystemExit(f"{config}: expected a [ranker] section starting with model = \"...\"")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.stem}_{ranker}.toml"
    path.write_text(head + sep + re.sub(r'^model = "[^"]*"', f'model = "{ranker}"', tail, 1))
    return path


def run_pipeline(name: str, preset: str, config: Path, ranker: str | None, workdir: Path,
                 args: argparse.Namespace) -> None:
    """One `genrec pipeline train` of ``preset`` (with ``ranker`` when given); its rows."""
    if ranker:
        config = with_ranker(config, ranker, workdir / "runs" / "pipeline_configs")
    tag = "_".join(re.sub(r"\W+", "-", s) for s in args.sets)
    out = workdir / "runs" / "_".join(filter(None, [preset, ranker, tag]))
    argv = [GENREC, "pipeline", "train", str(config), "--out", str(out), "--json",
            *(a for s in args.sets for a in ("--set", s))]
    cpu, t0 = _cpu(), time.perf_counter()
    done = subprocess.run(argv, check=True, cwd=workdir, capture_output=True, text=True)
    cpu, wall = _cpu() - cpu, time.perf_counter() - t0
    metrics = json.loads(done.stdout)
    per_user = pl.read_parquet(out / "per_user.parquet")
    best = metrics["best_recall"]
    command = " ".join(["genrec", *argv[1:]]).replace(str(REPO) + "/", "")
    for row, m in metrics["rows"].items():
        ranked = row.startswith("recall + ")
        label = f"{row}, {', '.join(args.sets)}" if ranked and args.sets else row
        gain = "–"
        if ranked:
            lo, hi = paired_ci(per_user[f"{row} NDCG@10"].to_numpy(),
                               per_user[f"{best} NDCG@10"].to_numpy())
            rel = m["NDCG@10"] / metrics["rows"][best]["NDCG@10"] - 1
            gain = f"{rel:+.1%} vs {best} (diff CI {lo:+.4f} .. {hi:+.4f})"
        fmt = lambda k: f"{m[k]:.4f}" if k in m and np.isfinite(m[k]) else "–"  # noqa: E731
        record(TABLE, {"dataset": name, "protocol": "P5 two-stage LOO, full ranking",
                       "model": label, "HR@10": fmt("HR@10"), "NDCG@10": fmt("NDCG@10"),
                       "ILD@10": fmt("ILD@10"),
                       "candidate recall": fmt("candidate_recall"), "AUC": fmt("AUC"),
                       "GAUC": fmt("GAUC"), "logloss": fmt("logloss"),
                       "vs best recall": gain,
                       "CPU s": f"{cpu:.0f} ({wall:.0f} s wall)" if ranked else "–",
                       "note": args.note, "command": command},
               path=args.out, metrics={"HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"]})
        print(name, label, fmt("HR@10"), fmt("NDCG@10"), fmt("candidate_recall"), gain)


if __name__ == "__main__":
    main()
