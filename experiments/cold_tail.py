"""Cold-tail item representation for SASRec: ablation, seeds and popularity calibration (research).

    .venv/bin/python experiments/cold_tail.py [--only ablation,seeds,calibration]
        [--ablation-sets beauty,ml100k,sports] [--ablation-variants gated,content,...]
        [--parallel N] [--resume [--finish]] [--reuse] [--no-record] [--note TEXT]

A research notebook, not a benchmark: it sits outside the "benchmarks regenerate BENCHMARKS.md"
contract (nothing else depends on it and it need not be rerun to refresh the tables), but it
still records through ``benchmarks/_record.py``, so its three tables (rendered in
experiments/RESULTS.md, not BENCHMARKS.md: ``render.FILES``) stay and a rerun updates them. It
asks whether content vectors help the items with the fewest training interactions, using the
experiment knobs of ``SASRecConfig`` (item_repr, content, count_gate, id_dropout, logit_adjust;
their defaults are the plain id model). Sections (until this file
moved out of ``benchmarks/bench_sequential.py`` they were its ``--only`` sections of the same
names, with the same flags):

    ablation      item_repr id / content / gated (three gated variants, the one with the best
                  VALID cold-tail Recall@10 compared with id) on the datasets of --ablation-sets:
                  Beauty and ML-100k with MiniLM text vectors, Sports with TF-IDF vectors of its
                  item2attributes.json ids; then id and gated trained with logit adjustment
                  (logit_adjust 0.5, 1); the cold tail both in full ranking and ranking the tail
                  items only. The id model is the P1 SASRec job of ``bench_sequential.py``
                  (<dataset>_sasrec-ce), trained here when missing.
    seeds         the ablation's id and chosen gated model, and its logit-adjusted pair (id,
                  gated) with the best VALID gated tail, retrained with 3 more train.seed values:
                  per-seed values, mean ± sd, gated minus its id.
    calibration   the ablation's models (best.pt) with each item's score lowered by
                  tau * log(1 + training count): tau chosen on VALID (best tail with overall
                  VALID N@10 not below id's), test overall and tail, and the trade-off curves as
                  PNGs in benchmarks/out/sequential/.

Training jobs run through ``benchmarks/_jobs.py`` (one subprocess each; --parallel, --reuse,
--resume, --finish as in bench_sequential.py) and share its benchmarks/out/sequential/, so the
runs of earlier invocations of either script are found again. The per-user views of a finished
job's best.pt (VALID tail, tail-only ranking, calibration) are scored by this script's hidden
--valid-worker / --within-tail-worker / --calibration-worker subprocesses when missing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _jobs import (DATASET, OPTIONS, OUT_DIR, P1, REPO, add_job_arguments,  # noqa: E402
                   best_run, configure, cpu_seconds, evaluate_both, fmt_metrics, load_avg,
                   machine, run_all, save_per_user)

SECTIONS = ("ablation", "seeds", "calibration")
TABLE_ABLATION = "Sequential — item representation ablation"


# ---- workers: per-user views of a finished job's best.pt, each in its own process ----------------
def valid_worker(spec_path: Path, out_path: Path) -> None:
    """``<tag>.valid.npz`` of a job that finished before the worker wrote one: its best.pt."""
    run = best_run(spec_path, out_path)
    save_per_user(run.split, "valid", evaluate_both(run, "valid", tuple(run.config.eval.ks)),
                  Path(out_path).with_suffix(".valid.npz"))


def within_tail_worker(spec_path: Path, out_path: Path) -> None:
    """``<tag>.{valid,test}.within.npz``: the best.pt ranking ONLY the cold-tail items
    (``_tail_cut``): every other item's score is -inf, so the target competes with the tail
    alone, whatever the model's head-vs-tail calibration."""
    run = best_run(spec_path, out_path)
    counts = run.split.item_counts()
    head = counts > _tail_cut(counts)  # PAD (column 0) is -inf already
    score = run.model.score

    def tail_only(batch: Any) -> Any:
        scores = score(batch)
        scores[:, head] = -np.inf
        return scores

    run.model.score = tail_only
    for stage in ("valid", "test"):
        save_per_user(run.split, stage, evaluate_both(run, stage, (10,)),
                      Path(out_path).with_suffix(f".{stage}.within.npz"))


# post-hoc popularity adjustment (logit adjustment, Menon et al. 2021): each item's score minus
# tau * log(1 + its training count); tau = 0 is the model as trained
CALIBRATION_TAUS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8)
# a model trained with logit_adjust = a also gets these negative tau down to -a: -a adds back
# the whole prior its loss saw, i.e. the popularity its scores were trained not to carry
READD_TAUS = (-1.0, -0.8, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1)


def _calibration_taus(logit_adjust: float) -> list[float]:
    """The tau (besides 0) at which a model trained with ``logit_adjust`` is ranked."""
    return [t for t in READD_TAUS if t >= -logit_adjust - 1e-9] + list(CALIBRATION_TAUS)


def calibration_worker(spec_path: Path, out_path: Path) -> None:
    """``<tag>.{valid,test}.calib.npz``: the best.pt's masked per-user metrics with each item's
    score lowered by tau * log(1 + training count), one ``tau<tau>`` view per
    ``_calibration_taus`` (next to the plain ``masked`` one): how much overall accuracy a model
    gives up for the tail when it is made to place rare items higher (tau < 0: lower)."""
    import torch

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    run = best_run(spec_path, out_path)
    log_count = torch.from_numpy(np.log1p(run.split.item_counts()).astype(np.float32))
    taus = _calibration_taus(float(run.config.params.get("logit_adjust", 0.0)))
    penalties = {f"tau{t:g}": t * log_count for t in taus}
    for stage in ("valid", "test"):
        save_per_user(run.split, stage, evaluate_both(run, stage, (10,), penalties),
                      Path(out_path).with_suffix(f".{stage}.calib.npz"))
    Path(out_path).with_suffix(".calib.json").write_text(json.dumps({
        "wall_seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - cpu0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# ---- ablation: item_repr id / content / gated ----------------------------------------------------
TAIL_SHARE = 0.2  # the cold tail: the 20% least-trained items


def _tail_cut(train_count: np.ndarray, share: float = TAIL_SHARE) -> float:
    """The largest training count of the tail: the ``share`` quantile over the items (not PAD)."""
    return float(np.quantile(train_count[1:], share))


def _cold_tail(tag: str, stage: str = "test", within: bool = False) -> dict[str, Any]:
    """Masked metrics of ``stage`` over users whose target is in the cold tail (``_tail_cut``);
    ``within``: when the model ranks the tail items only (``within_tail_worker``)."""
    if within:
        _ensure_npz(tag, f"{stage}.within", "--within-tail-worker")
        z = np.load(OUT_DIR / f"{tag}.{stage}.within.npz")
    elif stage == "valid":
        _ensure_npz(tag, "valid", "--valid-worker")
        z = np.load(OUT_DIR / f"{tag}.valid.npz")
    else:  # the training job's own test metrics
        z = np.load(OUT_DIR / f"{tag}.npz")
    cut = _tail_cut(z["train_count"])
    cold = z["train_count"][z["target"]] <= cut
    return {"users": int(cold.sum()), "cut": cut,
            "item_share": float((z["train_count"][1:] <= cut).mean()),
            "per_user": z["masked_Recall@10"][cold],  # same users in the same order for every run
            **{k: float(z[f"masked_{k}"][cold].mean()) for k in ("Recall@10", "NDCG@10")}}


def _ensure_npz(tag: str, suffix: str, worker_flag: str) -> None:
    """Score a finished job's best.pt with ``worker_flag`` unless ``<tag>.<suffix>.npz`` exists
    (jobs that finished before the worker saved these per-user metrics)."""
    if (OUT_DIR / f"{tag}.{suffix}.npz").is_file():
        return
    with (OUT_DIR / f"{tag}.{suffix}.log").open("w") as log:
        subprocess.run([sys.executable, __file__, worker_flag,
                        str(OUT_DIR / f"{tag}.spec.json"), str(OUT_DIR / f"{tag}.json")],
                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO, check=True)


# per dataset of the ablation: the P1 preset and the content vectors (item_vectors name, made when
# missing: MiniLM of the text fields, or TF-IDF of the S3-Rec attribute ids for Sports: one column
# per id, no SVD; the SVD-128 vectors of an earlier stop blurred the rare fine-grained categories)
ABLATION_SETS = {"beauty": ("configs/sasrec_beauty_p1.toml", "minilm", "title,categories"),
                 "ml100k": ("configs/sasrec_ml100k_p1.toml", "minilm", "title,genres"),
                 "sports": ("configs/sasrec_sports_p1.toml", "attributes_tfidf", "attributes")}
# the gated model and its two cold-tail options (see genrec.models._layers): the one with the best
# VALID cold-tail Recall@10 is the gated model compared with id on the TEST tail
GATED = {"gated": [], "gated+count": ["params.count_gate=true"],
         "gated+count+drop": ["params.count_gate=true", "params.id_dropout=0.2"]}
# id and the plain gate trained with logit adjustment (params.logit_adjust = tau: the loss sees
# logits + tau * log(1 + training count), ranking uses the plain scores); each is compared with
# the id model of the same tau
LOGIT_ADJUST = (0.5, 1.0)
ADJUSTED = {f"{m}+la{t:g}": [*(["params.item_repr=gated"] if m == "gated" else []),
                             f"params.logit_adjust={t}"]
            for t in LOGIT_ADJUST for m in ("id", "gated")}
REFERENCE = {f"gated+la{t:g}": f"id+la{t:g}" for t in LOGIT_ADJUST}  # default: id
# every variant besides id, the gated ones first: content-only models train slowest and may be
# cut (--resume --finish)
VARIANTS = {**{name: ["params.item_repr=gated", *extra] for name, extra in GATED.items()},
            **ADJUSTED, "content": ["params.item_repr=content"]}


ABLATION_INTRO = (
    "SASRec (the P1 preset of each dataset, full-softmax CE) with item_repr id / content / gated; "
    "content = frozen item vectors, projected (MiniLM of the item text; Sports: TF-IDF of its "
    "attribute ids, first as SVD-128 vectors, then without SVD). Three gated models: the plain "
    "gate, count_gate (the gate also sees log(1 + training count)), and count_gate + id_dropout "
    "0.2 (DropoutNet-style: in training each item is its content vector alone with probability "
    "0.2). The gated model compared with id is the one with the best VALIDATION cold-tail "
    "Recall@10 (marked). Then id and the plain gate trained with logit adjustment "
    "(logit_adjust = tau in {" + ", ".join(f"{t:g}" for t in LOGIT_ADJUST) + "}: the loss sees "
    "each item's logit + tau * log(1 + its training count), Menon et al. 2021, and ranking uses "
    "the plain scores, so the scores need not carry popularity); their CIs are against the id "
    "model trained with the same tau. Early stopping on valid NDCG@10. Metrics: masked test "
    "R@5 / N@5 / R@10 / N@10 over all users, then the cold tail: users whose TEST target is "
    "among the 20% of items with the fewest training interactions, with a 95% paired bootstrap "
    "interval of the difference to id, and the same tail on the validation targets (the "
    "selection criterion). From the Sports TF-IDF rows on, also the same tail users when the "
    "model ranks the tail items only (every other item's score -inf): the full-ranking tail "
    "number mostly measures how high a model places rare items against popular ones (its "
    "popularity calibration), this one how well it tells the rare items apart.")


def _start_table(table: str, intro: str, extra_columns: list[str], subset: bool) -> None:
    """(Re)start one of the ablation's tables (in experiments/RESULTS.md) with its intro; a run
    on a subset (of the datasets or variants) appends its rows and keeps the others'."""
    from _record import COLUMNS, reset_table

    reset_table(REPO / "BENCHMARKS.md", table, intro, COLUMNS + extra_columns, append=subset)


def _ablation_tag(section: str, variant: str) -> str:
    if variant == "id":  # the P1 SASRec job of the same preset
        return f"{section}_sasrec-ce"
    return f"ablation_{section}_{variant.replace('+', '-').replace('.', '')}"  # gated+la0.5: -la05


def _variant_sets(section: str, name: str) -> list[str]:
    """The --set overrides of one variant's job on top of the preset (id: none); params.content
    right after item_repr: the order saved runs were keyed by (--reuse)."""
    if name == "id":
        return []
    first, *rest = VARIANTS[name]
    if not first.startswith("params.item_repr="):  # an id model with options
        return VARIANTS[name]
    return [first, f"params.content={ABLATION_SETS[section][1]}", *rest]


def _variant_label(name: str) -> str:
    """'id', or the variant's overrides without 'params.': 'item_repr=gated count_gate=true',
    'id logit_adjust=0.5'."""
    if name == "id":
        return "id"
    label = " ".join(VARIANTS[name]).replace("params.", "")
    return label if label.startswith("item_repr=") else f"id {label}"


def _chosen_gated(section: str) -> str:
    """The gated option compared with id: the best VALID cold-tail Recall@10 of the ablation."""
    return max(GATED, key=lambda n: _cold_tail(_ablation_tag(section, n), "valid")["Recall@10"])


def _content_text(section: str) -> str:
    _, name, fields = ABLATION_SETS[section]
    if name == "attributes_tfidf":
        return "TF-IDF of the item2attributes.json category ids (2,277 columns, no SVD)"
    return f"{name} (all-MiniLM-L6-v2) of {fields}"


def section_ablation(record_rows: bool, sets: list[str], only: list[str] | None = None
                     ) -> list[dict[str, Any]]:
    """``only``: the variants to train and record besides id (default all: content and GATED);
    the gated option is marked as chosen only when all of GATED ran."""
    from _record import record
    from _stats import N_BOOT, paired_ci
    from _vectors import ensure_attribute_vectors, ensure_vectors

    presets = {s: ABLATION_SETS[s][0] for s in sets}
    variants = [n for n in VARIANTS if only is None or n in only]
    embed_seconds = {s: (ensure_attribute_vectors(DATASET[s], name=ABLATION_SETS[s][1], dim=0)
                         if ABLATION_SETS[s][1] == "attributes_tfidf"
                         else ensure_vectors(DATASET[s], ABLATION_SETS[s][2], ABLATION_SETS[s][1]))
                     for s in presets}
    jobs = [(f"sasrec-{name}", preset, _variant_sets(section, name), _ablation_tag(section, name))
            for section, preset in presets.items() for name in variants]
    # item_repr=id is the P1 SASRec job of the same preset: trained here only when missing
    for section, preset in presets.items():
        if not (OUT_DIR / f"{section}_sasrec-ce.json").is_file():
            jobs.append(("sasrec-ce", preset, [], f"{section}_sasrec-ce"))
    done = {tag: r for (*_, tag), r in zip(jobs, run_all(jobs))}
    done.update({f"{s}_sasrec-ce": json.loads((OUT_DIR / f"{s}_sasrec-ce.json").read_text())
                 for s in presets})
    if record_rows:
        _start_table(TABLE_ABLATION, ABLATION_INTRO,
                     ["model", "content", "epochs (best)", "valid N@10", "CPU time"],
                     subset=set(sets) != set(ABLATION_SETS) or only is not None)
    rows = []
    for section in presets:
        names = ["id", *(n for n in ("content", *GATED, *ADJUSTED) if n in variants)]  # order
        tags = {n: _ablation_tag(section, n) for n in names}
        valid_tail = {n: _cold_tail(t, "valid") for n, t in tags.items()}
        test_tail = {n: _cold_tail(t) for n, t in tags.items()}
        test_within = {n: _cold_tail(t, within=True) for n, t in tags.items()}
        chosen = _chosen_gated(section) if set(GATED) <= set(names) else None
        for name in names:
            tag = tags[name]
            r = done[tag]
            ref = REFERENCE.get(name) if REFERENCE.get(name) in names else "id"
            cold, vcold = test_tail[name], valid_tail[name]
            within, vwithin = test_within[name], _cold_tail(tag, "valid", within=True)
            lo, hi = paired_ci(cold["per_user"], test_tail[ref]["per_user"])
            wlo, whi = paired_ci(within["per_user"], test_within[ref]["per_user"])
            rows.append(r)
            print(f"[ablation] {section} {name}: test {fmt_metrics(r['test_masked'])}; tail valid "
                  f"R@10 {vcold['Recall@10']:.4f} test R@10 {cold['Recall@10']:.4f} / N@10 "
                  f"{cold['NDCG@10']:.4f} ({cold['users']} users); within the tail: valid R@10 "
                  f"{vwithin['Recall@10']:.4f} test R@10 {within['Recall@10']:.4f} / N@10 "
                  f"{within['NDCG@10']:.4f}", flush=True)
            if not record_rows:
                continue
            record(TABLE_ABLATION, {
                "dataset": DATASET[section], "protocol": P1,
                "model": f"sasrec {_variant_label(name)}"
                         + (" (gated option chosen on VALID tail)" if name == chosen else ""),
                "content": "–" if name == "id" else
                           _content_text(section)
                           + (f", encoded in {embed_seconds[section]:.0f} s"
                              if embed_seconds[section] else ""),
                "metrics": f"masked {fmt_metrics(r['test_masked'])}; cold tail (target among the "
                           f"20% least-trained items: ≤ {cold['cut']:.0f} train interactions, "
                           f"{100 * cold['item_share']:.0f}% of items, "
                           f"{cold['users']} users) R@10 {cold['Recall@10']:.4f} / "
                           f"N@10 {cold['NDCG@10']:.4f}"
                           + (f" (R@10 minus {_variant_label(ref)}'s: 95% paired bootstrap CI "
                              f"[{lo:+.4f}, {hi:+.4f}], {N_BOOT} resamples of users)"
                              if name != "id" else "")
                           + f"; VALID tail R@10 {vcold['Recall@10']:.4f} ({vcold['users']} users)"
                           + f"; ranking the tail items only: R@10 {within['Recall@10']:.4f} / "
                             f"N@10 {within['NDCG@10']:.4f}"
                           + (f" (CI [{wlo:+.4f}, {whi:+.4f}])" if name != "id" else "")
                           + f", VALID R@10 {vwithin['Recall@10']:.4f}",
                "epochs (best)": f"{r['epochs_run']} ({r['best_epoch']}) {r['stop_reason']}",
                "valid N@10": f"{r['valid_masked']['NDCG@10']:.4f}",
                "wall time": f"{r['wall_seconds']:.0f} s",
                "CPU time": f"{r['cpu_seconds']:.0f} s",
                "peak memory": f"{r['peak_rss_mb']:.0f} MB RSS",
                "machine": f"{machine()}, threads={r['threads']}, {load_avg()}{OPTIONS.note}"},
                REPO / "BENCHMARKS.md")  # command: this run's own (record fills it in)
    return rows


# ---- seeds: is the tail difference bigger than training noise? -----------------------------------
TABLE_SEEDS = "Sequential — item representation ablation across seeds"
SEEDS = (1, 2, 3)  # train.seed of the extra runs (the presets use 42)
SEEDS_INTRO = (
    "The item-representation ablation's id model and its chosen gated model (the gated option "
    "with the best VALID cold-tail R@10, from the ablation table's runs), and the logit-adjusted "
    "gated model with the best VALID cold-tail R@10 with the id model of the same logit_adjust, "
    "trained again with "
    "train.seed " + ", ".join(map(str, SEEDS)) + " besides the presets' 42: same data, split, "
    "preset and selection, only the initial weights, dropout and batch order change. Per model: "
    "masked test R@10 / N@10 overall, the cold tail R@10 (users whose test target is among the "
    "20% least-trained items) and the same users ranking the tail items only, each as its values "
    "per seed and their mean ± sample standard deviation; for a gated model also the "
    "differences to its id model seed by seed. CPU time: the sum over the model's runs.")


def _seed_tags(section: str, name: str) -> list[str]:
    """The runs of one model in the seed study: the ablation's (seed 42), then one per SEEDS."""
    base = _ablation_tag(section, name)
    return [base, *(f"{base}-seed{s}" for s in SEEDS)]


def _spread(values: list[float], signed: bool = False) -> str:
    """'a / b / c (mean m ± sd)': the values in seed order, their mean and sample sd."""
    v, f = np.asarray(values, dtype=np.float64), "+.4f" if signed else ".4f"
    return f"{' / '.join(format(x, f) for x in v)} (mean {v.mean():{f}} ± {v.std(ddof=1):.4f})"


def _adjusted_pair(section: str) -> list[str]:
    """[id+la<t>, gated+la<t>] for the gated logit-adjusted model with the best VALID cold-tail
    R@10 among those the ablation trained (with their id model); [] when it trained none."""
    trained = [n for n in REFERENCE
               if all((OUT_DIR / f"{_ablation_tag(section, m)}.json").is_file()
                      for m in (n, REFERENCE[n]))]
    if not trained:
        return []
    best = max(trained, key=lambda n: _cold_tail(_ablation_tag(section, n), "valid")["Recall@10"])
    return [REFERENCE[best], best]


def section_seeds(record_rows: bool, sets: list[str]) -> list[dict[str, Any]]:
    from _record import record

    if record_rows:
        _start_table(TABLE_SEEDS, SEEDS_INTRO, ["model", "seeds", "CPU time"],
                     subset=set(sets) != set(ABLATION_SETS))
    rows = []
    for section in sets:
        missing = [n for n in GATED
                   if not (OUT_DIR / f"{_ablation_tag(section, n)}.json").is_file()]
        if missing:
            print(f"[seeds] {section}: skipped, the ablation has no {', '.join(missing)} run "
                  f"(run --only ablation --ablation-sets {section} first)", flush=True)
            continue
        models = ["id", _chosen_gated(section), *_adjusted_pair(section)]
        jobs = [(f"sasrec-{name}-seed{seed}", ABLATION_SETS[section][0],
                 [*_variant_sets(section, name), f"train.seed={seed}"], tag)
                for name in models for seed, tag in zip(SEEDS, _seed_tags(section, name)[1:])]
        run_all(jobs)
        per = {}
        for name in models:
            seed_tags = _seed_tags(section, name)
            runs = [json.loads((OUT_DIR / f"{t}.json").read_text()) for t in seed_tags]
            tail = [_cold_tail(t) for t in seed_tags]
            within = [_cold_tail(t, within=True) for t in seed_tags]
            per[name] = {"R@10": [r["test_masked"]["Recall@10"] for r in runs],
                         "N@10": [r["test_masked"]["NDCG@10"] for r in runs],
                         "tail": [t["Recall@10"] for t in tail],
                         "within": [w["Recall@10"] for w in within],
                         "cpu": sum(r["cpu_seconds"] for r in runs),
                         "wall": sum(r["wall_seconds"] for r in runs),
                         "rss": max(r["peak_rss_mb"] for r in runs), "users": tail[0]["users"]}
        for name, m in per.items():
            metrics = (f"masked R@10 {_spread(m['R@10'])}; N@10 {_spread(m['N@10'])}; cold tail "
                       f"({m['users']} users) R@10 {_spread(m['tail'])}; ranking the tail items "
                       f"only: R@10 {_spread(m['within'])}")
            ref = REFERENCE.get(name, "id")
            if name != ref and ref in per:
                diff = {k: list(np.subtract(m[k], per[ref][k]))
                        for k in ("N@10", "tail", "within")}
                metrics += (f"; minus {_variant_label(ref)}, seed by seed: N@10 "
                            + _spread(diff["N@10"], True)
                            + ", tail R@10 " + _spread(diff["tail"], True)
                            + ", within the tail " + _spread(diff["within"], True))
            print(f"[seeds] {section} {name}: {metrics}", flush=True)
            rows.append({"section": section, "model": name, **m})
            if record_rows:
                record(TABLE_SEEDS, {
                    "dataset": DATASET[section], "protocol": P1,
                    "model": f"sasrec {_variant_label(name)}"
                             + (" (chosen on VALID tail)" if name.startswith("gated") else ""),
                    "seeds": ", ".join(map(str, (42, *SEEDS))), "metrics": metrics,
                    "wall time": f"{m['wall']:.0f} s (sum of {len(SEEDS) + 1} runs)",
                    "CPU time": f"{m['cpu']:.0f} s", "peak memory": f"{m['rss']:.0f} MB RSS",
                    "machine": f"{machine()}, threads=1, {load_avg()}{OPTIONS.note}"},
                    REPO / "BENCHMARKS.md")
    return rows


# ---- calibration: the ablation's models, scores lowered by tau * log(1 + count) ------------------
TABLE_CALIBRATION = "Sequential — cold tail against overall accuracy (popularity adjustment)"
CALIBRATION_INTRO = (
    "The item-representation ablation's SASRec models (their best.pt, nothing retrained), each "
    "item's score lowered by tau * log(1 + its training count) at ranking time (post-hoc logit "
    "adjustment, Menon et al. 2021), tau in {0, " + ", ".join(f"{t:g}" for t in CALIBRATION_TAUS)
    + "}; the models trained with logit_adjust = a also at tau = "
    + ", ".join(f"{t:g}" for t in READD_TAUS) + " down to -a (adding back up to the whole prior "
    "their loss saw). It places rare items higher at some cost in overall accuracy, for any "
    "model, so the question becomes which model gets more tail for the same overall accuracy. "
    "tau is chosen on "
    "VALIDATION for each model: the best VALID cold-tail R@10 among the tau whose VALID overall "
    "N@10 is not below the plain id model's (a model may spend on the tail only the accuracy it "
    "has over id; a model that never reaches id's says so and is shown at tau = 0); the gated "
    "model is the gated variant with the best VALID tail at its tau. Test: masked overall R@10 / "
    "N@10 and the cold tail of the ablation table (users whose test target is among the 20% "
    "least-trained items), with 95% paired bootstrap CIs of the differences to id at its own "
    "tau. The whole curves: benchmarks/out/sequential/calibration_<dataset>_{valid,test}.png.")


def _calibration(tag: str, stage: str) -> dict[float, dict[str, Any]]:
    """tau -> overall masked R@10 / N@10 (means and per user) and the cold tail's per-user R@10,
    from ``<tag>.<stage>.calib.npz`` (``calibration_worker``; run when missing)."""
    _ensure_npz(tag, f"{stage}.calib", "--calibration-worker")  # also writes <tag>.calib.json
    z = np.load(OUT_DIR / f"{tag}.{stage}.calib.npz")
    cold = z["train_count"][z["target"]] <= _tail_cut(z["train_count"])
    taus = sorted(float(k[3:-len("_Recall@10")]) for k in z.files
                  if k.startswith("tau") and k.endswith("_Recall@10"))
    out = {}
    for tau in sorted((0.0, *taus)):
        view = "masked" if tau == 0 else f"tau{tau:g}"
        r, n = z[f"{view}_Recall@10"], z[f"{view}_NDCG@10"]
        out[tau] = {"R@10": float(r.mean()), "N@10": float(n.mean()), "recall": r, "ndcg": n,
                    "tail": r[cold], "tail R@10": float(r[cold].mean())}
    return out


def _best_epoch(tag: str) -> str:
    """'epoch B of N': which epoch's weights best.pt holds (the best VALID NDCG@10 in the run's
    train_log.jsonl) and how many epochs the run directory has trained."""
    log = [json.loads(line) for line in
           (OUT_DIR / f"{tag}.run" / "train_log.jsonl").read_text().splitlines() if line.strip()]
    epochs = [e for e in log if "valid" in e]
    best = max(epochs, key=lambda e: e["valid"]["NDCG@10"])
    return f"epoch {best['epoch']} of {len(epochs)}"


def _choose_tau(valid: dict[float, dict[str, Any]], floor: float) -> float | None:
    """The tau with the best VALID tail R@10 among those with VALID N@10 >= floor (ties: the
    smaller tau); None when no tau reaches the floor."""
    ok = [t for t, c in valid.items() if c["N@10"] >= floor]
    return max(ok, key=lambda t: (valid[t]["tail R@10"], -t)) if ok else None


def section_calibration(record_rows: bool, sets: list[str]) -> list[dict[str, Any]]:
    from _record import record
    from _stats import N_BOOT, paired_ci

    from genrec.evaluation.plots import tradeoff_chart

    if record_rows:
        _start_table(TABLE_CALIBRATION, CALIBRATION_INTRO,
                     ["model", "tau (chosen on VALID)", "VALID N@10 / tail R@10"],
                     subset=set(sets) != set(ABLATION_SETS))
    rows = []
    for section in sets:
        tags = {n: _ablation_tag(section, n) for n in ("id", "content", *GATED, *ADJUSTED)}
        missing = [n for n, t in tags.items() if not (OUT_DIR / f"{t}.run" / "best.pt").is_file()]
        names = [n for n in tags if n not in missing]
        if missing:
            print(f"[calibration] {section}: no best.pt for {', '.join(missing)} (run --only "
                  f"ablation --ablation-sets {section} to train them)", flush=True)
        if "id" in missing or not set(GATED) & set(names):
            continue
        valid = {n: _calibration(tags[n], "valid") for n in names}
        test = {n: _calibration(tags[n], "test") for n in names}
        floor = valid["id"][0.0]["N@10"]
        tau = {n: _choose_tau(valid[n], floor) for n in names}
        gated_ok = [n for n in (*GATED, *ADJUSTED) if n.startswith("gated") and n in names
                    and tau[n] is not None]
        chosen = max(gated_ok, key=lambda n: valid[n][tau[n]]["tail R@10"]) if gated_ok else None
        for stage, curves in (("VALID", valid), ("TEST", test)):
            chart = tradeoff_chart(
                {n: [(c["N@10"], c["tail R@10"], f"{t:g}") for t, c in curves[n].items()]
                 if n in curves else [] for n in tags},  # every model listed: fixed colours
                OUT_DIR / f"calibration_{section}_{stage.lower()}.png",
                f"{stage} overall NDCG@10 (masked)", f"{stage} cold-tail Recall@10",
                f"{DATASET[section]} SASRec: score - tau * log(1 + count), tau labelled")
            print(f"[calibration] {section}: {chart}", flush=True)
        ref = test["id"][tau["id"] if tau["id"] is not None else 0.0]
        for n in names:
            t = tau[n] if tau[n] is not None else 0.0
            v, c = valid[n][t], test[n][t]
            tlo, thi = paired_ci(c["tail"], ref["tail"])
            nlo, nhi = paired_ci(c["ndcg"], ref["ndcg"])
            mark = " (the gated model: best VALID tail at its tau)" if n == chosen else ""
            metrics = (f"best.pt = {_best_epoch(tags[n])}; masked R@10 {c['R@10']:.4f} / "
                       f"N@10 {c['N@10']:.4f}; cold tail "
                       f"({len(c['tail'])} users) R@10 {c['tail R@10']:.4f}")
            if n != "id":
                metrics += (f"; minus id at its tau, 95% paired bootstrap CI ({N_BOOT} resamples "
                            f"of users): N@10 [{nlo:+.4f}, {nhi:+.4f}], tail R@10 "
                            f"[{tlo:+.4f}, {thi:+.4f}]")
            tau_txt = (f"{t:g}" if tau[n] is not None
                       else f"none reaches id's VALID N@10 {floor:.4f}: shown at 0")
            print(f"[calibration] {section} {n}{mark}: tau {tau_txt}; VALID N@10 "
                  f"{v['N@10']:.4f} tail {v['tail R@10']:.4f}; TEST {metrics}", flush=True)
            rows.append({"section": section, "model": n, "tau": tau[n], "test": metrics})
            if record_rows:
                cost = json.loads((OUT_DIR / f"{tags[n]}.calib.json").read_text())
                record(TABLE_CALIBRATION, {
                    "dataset": DATASET[section], "protocol": P1,
                    "model": f"sasrec {_variant_label(n)}{mark}",
                    "tau (chosen on VALID)": tau_txt,
                    "VALID N@10 / tail R@10": f"{v['N@10']:.4f} / {v['tail R@10']:.4f}",
                    "metrics": metrics,
                    "wall time": f"{cost['wall_seconds']:.0f} s (CPU {cost['cpu_seconds']:.0f} s)"
                                 f" to score valid + test at the {len(valid[n])} tau",
                    "peak memory": f"{cost['peak_rss_mb']:.0f} MB RSS",
                    "machine": f"{machine()}, threads=1, {load_avg()}{OPTIONS.note}"},
                    REPO / "BENCHMARKS.md")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--ablation-sets", default="beauty,ml100k,sports",
                    help=f"datasets of every section, from {', '.join(ABLATION_SETS)}")
    ap.add_argument("--ablation-variants", default=None,
                    help=f"variants of --only ablation besides id, from "
                         f"{', '.join(VARIANTS)} (default all)")
    add_job_arguments(ap)
    ap.add_argument("--valid-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--within-tail-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--calibration-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    for flag, fn in ((a.valid_worker, valid_worker), (a.within_tail_worker, within_tail_worker),
                     (a.calibration_worker, calibration_worker)):
        if flag:
            fn(*flag)
            return
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    if unknown := sorted(set(only) - set(SECTIONS)):
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)} (the P1, "
                 f"speed and peer sections are benchmarks/bench_sequential.py's)")
    ablation_sets = [s.strip() for s in a.ablation_sets.split(",") if s.strip()]
    if unknown := sorted(set(ablation_sets) - set(ABLATION_SETS)):
        ap.error(f"--ablation-sets: unknown {unknown}; choose from {', '.join(ABLATION_SETS)}")
    variants = a.ablation_variants and [v.strip() for v in a.ablation_variants.split(",")]
    if variants and (unknown := sorted(set(variants) - set(VARIANTS))):
        ap.error(f"--ablation-variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    configure(a)
    record_rows = not a.no_record
    for section in only:
        if section == "ablation":
            section_ablation(record_rows, ablation_sets, variants or None)
        elif section == "seeds":
            section_seeds(record_rows, ablation_sets)
        elif section == "calibration":
            section_calibration(record_rows, ablation_sets)


if __name__ == "__main__":
    main()
