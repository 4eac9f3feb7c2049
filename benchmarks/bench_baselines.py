"""Baseline benchmarks: popularity / ItemCF / EASE on protocols P1, P2, P3, RecBole side by side.

    .venv/bin/python benchmarks/bench_baselines.py [--only ingest,p1,p3,p2] [--out BENCHMARKS.md]

Writes (regenerates) these tables of BENCHMARKS.md, each with a paragraph on how to read it:

    ingest  "Baselines — ingestion"        prepare() of each dataset into a fresh GENREC_HOME
    p1      "Baselines — P1 leave-one-out"  Amazon Beauty and ML-100k; k / l2 selected on
                                           validation, then refit on train+valid, test once
    p3      "Baselines — P3 ML-100k / ML-1M vs RecBole 1.2.1"  genrec and the RecBole peer
                                           harness (benchmarks/peer.py), back to back
    p2      "Baselines — P2 Gowalla"        LightGCN's fixed split; EASE in float32 (15-60 min)

Every measurement runs in its own subprocess (this file with ``--worker``), so its peak RSS is
its own and fit / evaluation wall times are taken with nothing else in the process. Data comes
from $GENREC_DATA (default ../shared/data), prepared datasets are cached in $GENREC_HOME; the
peer harness is found as described in benchmarks/peer.py. Presets: configs/<model>_<data>_<p>.toml.
``--append`` keeps the rows already in the tables; ``--skip-gowalla-ease`` leaves out the slow one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _record import record, reset_table  # noqa: E402
from peer import run_peer  # noqa: E402

P1_GRIDS = {"itemcf": ("params.k", [20, 50, 100, 200]),
            "ease": ("params.l2", [50.0, 100.0, 250.0, 500.0, 1000.0])}
P1_SELECT_ON = "NDCG@10"
BEAUTY_EASE_500 = {"HR@10": 0.0734, "NDCG@10": 0.0400}  # PROTOCOL.md, independent EASE
PEER_MODEL = {"popularity": "Pop", "itemcf": "ItemKNN", "ease": "EASE"}
THREADS = 2  # torch threads of every genrec and RecBole process (the machine's 2 cores)
# numpy/scipy OpenBLAS threads of every process, genrec's and RecBole's alike (--blas-threads)
BLAS_ENV: dict[str, str] = {}
P1_DATA = [("ml100k", "ml-100k"), ("beauty", "amazon-beauty")]  # (config stem, dataset)
P3_DATA = [("ml100k", "ml-100k", "ml-100k"), ("ml1m", "ml-1m", "ml-1m-implicit")]  # + RecBole's

_TAIL = ["notes", "machine", "date (UTC)", "command"]
TABLES: dict[str, tuple[str, str, list[str]]] = {
    "ingest": (
        "Baselines — ingestion",
        "Wall time of `genrec.data.prepare(name)` from the raw files in $GENREC_DATA into a fresh, "
        "empty GENREC_HOME (find raw files, parse, index, write Parquet), one process per dataset; "
        "`prepare s` excludes interpreter and library imports, `process s` includes them. Peak RSS "
        "is the process's.",
        ["dataset", "raw source", "users", "items", "interactions", "prepare s", "process s",
         "peak RSS", *_TAIL]),
    "p1": (
        "Baselines — P1 leave-one-out",
        "Protocol P1 (PROTOCOL.md): per user, in time order, last interaction = test, "
        "second-to-last = validation; every item is a candidate, the user's history is masked, "
        "ties count against the model. k / l2 are chosen on VALIDATION NDCG@10 only (each grid "
        "value fitted on train; the `selection` column lists the validation scores), then the "
        "model is refitted on train + validation (eval.refit) and the test split is evaluated "
        "once. One target per user, so HR@K = Recall@K. Each row's process does what `genrec "
        "train --config <config>` does (fit on train, evaluate validation, refit, test); `fit s` "
        "is the refit, `eval s` the one test pass (scoring, masking, exact ranks and all "
        "metrics), `peak RSS` that process's (the selection ran in its own process). The `ease l2=500` rows are the fixed-lambda check "
        "against PROTOCOL.md's independent EASE (Beauty HR@10 0.0734 / NDCG@10 0.0400). Published "
        "Beauty anchors (R@10 / N@10): SASRec 0.0605 / 0.0318, TIGER 0.0648 / 0.0384.",
        ["dataset", "protocol", "model", "selection (valid NDCG@10)", "HR@10", "NDCG@10",
         "HR@5", "NDCG@5", "fit s", "eval s", "peak RSS", "config", *_TAIL]),
    "p3": (
        "Baselines — P3 ML-100k / ML-1M vs RecBole 1.2.1",
        "genrec against the RecBole 1.2.1 peer harness (shared/peers/run_recbole.py, protocol "
        "gen-rs811), both run by this script in the same invocation: for each model genrec's "
        "process, then RecBole's right after it, 2 torch threads each, the same OpenBLAS "
        "threads, each evaluating validation before the test pass, so both see the same machine "
        "load (in `notes`). Same interactions (ML-100k: all 100,000 ratings as implicit "
        "positives; ML-1M: the 1,000,209 user-movie pairs of shared/data/ml-1m/ratings.parquet, "
        "RecBole's `ml-1m-implicit`), but each library draws its OWN seeded (2020) per-user "
        "8:1:1 split with RecBole's rounding: the parts have the same sizes, not the same rows, "
        "so the metrics are comparable in expectation, not identical. Both fit on train only and "
        "rank every item except the user's train (+ validation, at test) items; Recall/NDCG "
        "follow RecBole's definitions. Hyper-parameters are the peer's (ItemKNN k=100 shrink 0, "
        "EASE lambda=250). `eval s`: genrec = `evaluate_run(run, 'test')` (scores, masking, exact "
        "pessimistic-tie ranks up to K, HR/Recall/Precision/NDCG/MRR/MAP, coverage/gini/novelty; "
        "AUC off with `--set eval.auc=false` since RecBole computes none; rows before 2026-11-25 "
        "13:00 had AUC on); "
        "RecBole = its `eval_seconds`, `trainer.evaluate(test, load_best_model=True)` (checkpoint "
        "load included; Recall/NDCG only). `eval ratio` = genrec / RecBole (below 1: genrec is "
        "faster). `fit s`: genrec = `model.fit(train)`; RecBole = model init (where ItemKNN and "
        "EASE are fitted) + its one training epoch (where Pop counts). Times are medians of "
        "`--repeats` alternating genrec/RecBole runs (each run listed in `notes`); metrics are "
        "deterministic. One more difference: RecBole's closed-form models score a test user "
        "from the TRAIN items only (its prediction matrices are built at fit time), genrec from "
        "train + validation (the items it masks anyway); for EASE on ML-100k that was worth "
        "+0.004 to +0.008 NDCG@10 over five split seeds (measured once, by hand).",
        ["dataset", "protocol", "model (genrec / RecBole)", "Recall@10 (genrec / RecBole)",
         "NDCG@10 (genrec / RecBole)", "Recall@20 (genrec / RecBole)",
         "NDCG@20 (genrec / RecBole)", "fit s (genrec / RecBole)", "eval s (genrec / RecBole)",
         "eval ratio", "peak RSS (genrec / RecBole)", "config", *_TAIL]),
    "p2": (
        "Baselines — P2 Gowalla",
        "Protocol P2 (PROTOCOL.md): the LightGCN/NGCF fixed Gowalla split as shipped (train.txt "
        "810,128 / test.txt 217,242 interactions; 29,858 users, 40,981 items), full ranking, "
        "training items masked, Recall@20 / NDCG@20 (RecBole definitions). P2 has no validation "
        "set, so nothing is tuned: ItemCF k=100 (RecBole's ItemKNN default), EASE l2=500 (Steck). "
        "EASE inverts X^T X + l2 I in float32 in place (Cholesky, ~4 N^2 bytes = 6.7 GB; the "
        "float64 path would need ~20 GB). LightGCN paper: Recall@20 0.1830 / NDCG@20 0.1554. "
        "`fit s` = model.fit(train), `eval s` = the test pass, peak RSS = the process's.",
        ["dataset", "protocol", "model", "Recall@20", "NDCG@20", "Recall@10", "NDCG@10",
         "fit s", "eval s", "peak RSS", "config", *_TAIL]),
}
ORDER = ["ingest", "p1", "p3", "p2"]  # p2 last: Gowalla EASE alone takes 15-60 min on 2 cores


# ---- worker side: one measurement per process ---------------------------------------------------
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _load(config: str, sets: list[str]):
    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import make_config

    cfg = make_config(preset=config, sets=sets)
    cfg.validate()
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    return cfg, ds, split


def _run(cfg, ds, split):
    from genrec.config import from_dict
    from genrec.registry import model_classes
    from genrec.runs import Run

    model_cls, config_cls = model_classes(cfg.model)
    model = model_cls(from_dict(config_cls, {**cfg.params, "n_items": ds.n_items}))
    return Run(cfg, model, ds, split)


def work_ingest(spec: dict) -> dict:
    """prepare(name) into the (fresh) GENREC_HOME this process was started with."""
    from genrec.data.prepare import prepare

    start = time.perf_counter()
    ds = prepare(spec["dataset"])
    return {"prepare_s": time.perf_counter() - start, "users": ds.n_users, "items": ds.n_items,
            "interactions": ds.interactions.height, "source": ds.meta.get("source", "")}


def work_select(spec: dict) -> dict:
    """Fit on train and evaluate VALIDATION for each grid value; the test split is not touched."""
    from genrec.runs import evaluate_run, make_config

    _, ds, split = _load(spec["config"], spec["sets"])
    scores = []
    for value in spec["values"]:
        cfg = make_config(preset=spec["config"], sets=[*spec["sets"], f"{spec['key']}={value}"])
        run = _run(cfg, ds, split)
        t0 = time.perf_counter()
        run.model.fit(split.train_matrix())
        t1 = time.perf_counter()
        metrics = evaluate_run(run, "valid").metrics
        scores.append({"value": value, "metrics": metrics, "fit_s": t1 - t0,
                       "eval_s": time.perf_counter() - t1})
    return {"scores": scores}


def work_test(spec: dict) -> dict:
    """What ``genrec train`` does, timed step by step: fit on train, evaluate validation (when the
    split has one), refit on train + valid if eval.refit, evaluate the test split once."""
    import torch

    from genrec.runs import evaluate_run

    t0 = time.perf_counter()
    cfg, ds, split = _load(spec["config"], spec["sets"])
    run = _run(cfg, ds, split)
    t1 = time.perf_counter()
    run.model.fit(split.train_matrix())
    fit_s = time.perf_counter() - t1
    valid = evaluate_run(run, "valid").metrics if split.valid.height else {}
    refit = cfg.eval.refit and split.valid.height > 0
    if refit:
        t2 = time.perf_counter()
        run.model.fit(split.history("test"))
        fit_s = time.perf_counter() - t2
    t3 = time.perf_counter()
    result = evaluate_run(run, "test")
    return {"metrics": result.metrics, "valid_metrics": valid, "n_eval_users": result.n_users,
            "load_s": t1 - t0, "fit_s": fit_s, "eval_s": time.perf_counter() - t3,
            "refit": refit, "split": split.summary(), "torch_threads": torch.get_num_threads()}


def work_diagnose(spec: dict) -> dict:
    """Context for a P3 row, never a selection: test NDCG@10 on other split seeds, and for ItemCF
    the RecBole neighbour orientation (S transposed) on the same split."""
    from genrec.runs import evaluate_run

    out: dict[str, Any] = {"seeds": {}}
    for seed in spec["seeds"]:
        cfg, ds, split = _load(spec["config"], [f"data.seed={seed}"])
        run = _run(cfg, ds, split)
        run.model.fit(split.train_matrix())
        out["seeds"][seed] = evaluate_run(run, "test").metrics["NDCG@10"]
    cfg, ds, split = _load(spec["config"], [])
    if cfg.model == "itemcf":
        run = _run(cfg, ds, split)
        run.model.fit(split.train_matrix())
        run.model.sim = run.model.sim.T.tocsr()
        out["transposed_ndcg10"] = evaluate_run(run, "test").metrics["NDCG@10"]
    return out


WORKERS = {"ingest": work_ingest, "select": work_select, "test": work_test,
           "diagnose": work_diagnose}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    out = WORKERS[spec["kind"]](spec)
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out), flush=True)


# ---- parent side: jobs, tables ------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    shared = REPO.parent / "shared" / "data"
    if "GENREC_DATA" not in env and shared.is_dir():
        env["GENREC_DATA"] = str(shared)
    return {**env, **BLAS_ENV, **extra}


def job(spec: dict, **env: str) -> dict:
    """Run one worker process; returns its JSON plus process wall time and the load before."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=_env(**env), cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {spec} failed (exit {proc.returncode}):\n"
                           f"{(proc.stderr or proc.stdout)[-3000:]}")
    out = json.loads(lines[-1])
    out.update(process_s=time.perf_counter() - start, load_before=load,
               load_after=os.getloadavg()[0])
    return out


def _f(x: float, nd: int = 4) -> str:
    return f"{x:.{nd}f}"


def _s(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _load_note(*results: dict) -> str:
    """The machine's state: BLAS threads and the 1-min load average before each process."""
    return (f"OpenBLAS threads {BLAS_ENV.get('OPENBLAS_NUM_THREADS', 'default')}; load avg "
            f"(1 min) " + " / ".join(f"{r['load_before']:.1f}" for r in results))


def _cfg(model: str, data: str, proto: str) -> str:
    return f"configs/{model}_{data}_{proto}.toml"


def _frozen(config: str, key: str) -> Any:
    from genrec.runs import make_config

    return make_config(preset=REPO / config).params.get(key.split(".", 1)[1])


# ---- the parts ----------------------------------------------------------------------------------
def part_ingest(out: Path) -> None:
    for name in ["ml-100k", "amazon-beauty", "ml-1m", "gowalla"]:
        with tempfile.TemporaryDirectory(prefix="genrec_fresh_home_") as home:
            r = job({"kind": "ingest", "dataset": name}, GENREC_HOME=home)
        record(TABLES["ingest"][0], {
            "dataset": name, "raw source": r["source"],
            "users": f"{r['users']:,}", "items": f"{r['items']:,}",
            "interactions": f"{r['interactions']:,}", "prepare s": _s(r["prepare_s"]),
            "process s": _s(r["process_s"]), "peak RSS": f"{r['peak_rss_mb']:.0f} MB",
            "notes": _load_note(r)}, out)
        print(f"ingest {name}: {r['prepare_s']:.2f} s", flush=True)


def _p1_row(out: Path, name: str, model: str, r: dict, config: str, sets: list[str],
            selection: str, notes: list[str]) -> None:
    m = r["metrics"]
    cmd = config + "".join(f" --set {s}" for s in sets)
    record(TABLES["p1"][0], {
        "dataset": name, "protocol": "P1 loo, history masked, refit train+valid", "model": model,
        "selection (valid NDCG@10)": selection, "HR@10": _f(m["HR@10"]),
        "NDCG@10": _f(m["NDCG@10"]), "HR@5": _f(m["HR@5"]), "NDCG@5": _f(m["NDCG@5"]),
        "fit s": _s(r["fit_s"]), "eval s": _s(r["eval_s"]),
        "peak RSS": f"{r['peak_rss_mb']:.0f} MB", "config": cmd,
        "notes": "; ".join([*notes, f"{r['n_eval_users']:,} test users", _load_note(r)])}, out)
    print(f"P1 {name} {model}: HR@10 {m['HR@10']:.4f} NDCG@10 {m['NDCG@10']:.4f} "
          f"fit {r['fit_s']:.1f}s eval {r['eval_s']:.1f}s", flush=True)


def part_p1(out: Path) -> None:
    for data, name in P1_DATA:
        config = _cfg("popularity", data, "p1")
        r = job({"kind": "test", "config": config, "sets": []})
        _p1_row(out, name, "popularity", r, config, [], "– (no hyper-parameters)", [])
        for model, (key, values) in P1_GRIDS.items():
            config = _cfg(model, data, "p1")
            sel = job({"kind": "select", "config": config, "sets": [], "key": key,
                       "values": values})
            scores = sel["scores"]
            best = max(scores, key=lambda s: s["metrics"][P1_SELECT_ON])  # first max wins ties
            short = key.split(".")[1]
            selection = f"{short}={best['value']:g} from " + ", ".join(
                f"{s['value']:g}: {s['metrics'][P1_SELECT_ON]:.4f}" for s in scores)
            notes = [f"selection fits {sum(s['fit_s'] for s in scores):.0f} s in total"]
            frozen = _frozen(config, key)
            if frozen is not None and float(frozen) != float(best["value"]):
                notes.append(f"PRESET IS STALE: it says {short}={frozen:g}")
            sets = [f"{key}={best['value']}"]
            r = job({"kind": "test", "config": config, "sets": sets})
            is_500 = model == "ease" and float(best["value"]) == 500.0
            _p1_row(out, name, f"{model} {short}={best['value']:g}", r, config, sets,
                    selection, notes + (_ease_check(name, r) if is_500 else []))
            if model == "ease" and not is_500:  # the fixed-lambda check, reported beside
                sets = ["params.l2=500.0"]
                r = job({"kind": "test", "config": config, "sets": sets})
                _p1_row(out, name, "ease l2=500 (fixed)", r, config, sets, "none: fixed lambda",
                        _ease_check(name, r))


def _ease_check(name: str, r: dict) -> list[str]:
    """On Beauty, EASE l2=500 against PROTOCOL.md's independent implementation."""
    if name != "amazon-beauty":
        return []
    diff = {k: r["metrics"][k] - v for k, v in BEAUTY_EASE_500.items()}
    return [f"PROTOCOL.md's independent EASE l2=500: HR@10 0.0734 / NDCG@10 0.0400, "
            f"difference {diff['HR@10']:+.4f} / {diff['NDCG@10']:+.4f}"]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


P3_SETS = ["eval.auc=false"]  # RecBole's P3 run computes no AUC either


def part_p3(out: Path, repeats: int) -> None:
    for data, name, peer_data in P3_DATA:
        for model, peer_model in PEER_MODEL.items():
            config = _cfg(model, data, "p3")
            gs, ps = [], []
            for _ in range(repeats):  # alternate, so both libraries see the same load
                gs.append(job({"kind": "test", "config": config, "sets": P3_SETS}))
                load = os.getloadavg()[0]
                ps.append({**run_peer(peer_model, peer_data, threads=THREADS, env=BLAS_ENV),
                           "load_before": load})
            g, p = gs[0], ps[0]
            g_eval, p_eval = _median([x["eval_s"] for x in gs]), _median([x["eval_seconds"] for x in ps])
            g_fit = _median([x["fit_s"] for x in gs])
            p_fit = _median([x["model_init_seconds"] + x["train_seconds"] for x in ps])
            gm, pm = g["metrics"], p["metrics"]
            extra = job({"kind": "diagnose", "config": config, "seeds": [1, 2, 3, 4]
                         if data == "ml100k" else []})

            def pair(key: str) -> str:
                return f"{gm[key]:.4f} / {pm[key.lower()]:.4f}"

            split = g["split"]
            notes = [f"genrec train/valid/test {split['train']:,}/{split['valid']:,}/"
                     f"{split['test']:,} rows, RecBole {p['n_train_samples']:,} train rows"]
            if extra.get("seeds"):
                lo, hi = min(extra["seeds"].values()), max(extra["seeds"].values())
                notes.append(f"genrec NDCG@10 over split seeds 1-4: {lo:.4f}-{hi:.4f}")
            if "transposed_ndcg10" in extra:
                notes.append(f"genrec ItemCF keeps top-k neighbours per history item (rows of "
                             f"S), RecBole per candidate item (columns): with S transposed "
                             f"genrec gets NDCG@10 {extra['transposed_ndcg10']:.4f}")
            if model == "popularity":
                notes.append("RecBole 1.2.1 Pop counts an item at most once per 2048-row "
                             "training batch (item_cnt[item] = item_cnt[item] + 1 does not "
                             "accumulate repeated indices)")
            notes += [f"times are medians of {repeats} alternating runs (genrec eval "
                      + ", ".join(_s(x["eval_s"]) for x in gs) + "; RecBole eval "
                      + ", ".join(_s(x["eval_seconds"]) for x in ps) + ")",
                      f"torch threads RecBole {p['threads']} / genrec {g['torch_threads']}",
                      f"process s genrec {g['process_s']:.0f} / RecBole {p['process_seconds']:.0f}",
                      _load_note(*[x for pair_ in zip(gs, ps) for x in pair_])]
            record(TABLES["p3"][0], {
                "dataset": f"{name} / {peer_data}",
                "protocol": "P3 = gen-rs811: random 8:1:1 seed 2020, fit on train",
                "model (genrec / RecBole)": f"{model} / {peer_model}",
                "Recall@10 (genrec / RecBole)": pair("Recall@10"),
                "NDCG@10 (genrec / RecBole)": pair("NDCG@10"),
                "Recall@20 (genrec / RecBole)": pair("Recall@20"),
                "NDCG@20 (genrec / RecBole)": pair("NDCG@20"),
                "fit s (genrec / RecBole)": f"{_s(g_fit)} / {_s(p_fit)}",
                "eval s (genrec / RecBole)": f"{_s(g_eval)} / {_s(p_eval)}",
                "eval ratio": f"{g_eval / max(p_eval, 1e-9):.2f}",
                "peak RSS (genrec / RecBole)": f"{g['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} MB",
                "config": config + "".join(f" --set {s}" for s in P3_SETS), "notes": "; ".join(notes)}, out)
            print(f"P3 {name} {model}: genrec NDCG@10 {gm['NDCG@10']:.4f} eval {g_eval:.2f}s | "
                  f"RecBole {pm['ndcg@10']:.4f} eval {p_eval:.2f}s", flush=True)


def _mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def part_p2(out: Path, skip_ease: bool) -> None:
    for model in ["popularity", "itemcf", "ease"]:
        config = _cfg(model, "gowalla", "p2")
        row = {"dataset": "gowalla", "protocol": "P2 fixed LightGCN split, train masked",
               "model": model, "config": config}
        need_gb = 4 * 40_981**2 / 2**30 + 3  # float32 N x N in place + sparse G, data, scores
        if model == "ease" and (skip_ease or _mem_available_gb() < need_gb):
            why = ("skipped (--skip-gowalla-ease)" if skip_ease else
                   f"not run: {_mem_available_gb():.1f} GB available, needs ~{need_gb:.0f} GB")
            record(TABLES["p2"][0], {**row, "notes": why}, out)
            continue
        r = job({"kind": "test", "config": config, "sets": []})
        m = r["metrics"]
        record(TABLES["p2"][0], {
            **row, "model": model + (" l2=500 float32" if model == "ease" else
                                     " k=100" if model == "itemcf" else ""),
            "Recall@20": _f(m["Recall@20"]), "NDCG@20": _f(m["NDCG@20"]),
            "Recall@10": _f(m["Recall@10"]), "NDCG@10": _f(m["NDCG@10"]),
            "fit s": _s(r["fit_s"]), "eval s": _s(r["eval_s"]),
            "peak RSS": f"{r['peak_rss_mb'] / 1024:.2f} GB",
            "notes": f"{r['n_eval_users']:,} test users; " + _load_note(r)}, out)
        print(f"P2 gowalla {model}: Recall@20 {m['Recall@20']:.4f} NDCG@20 {m['NDCG@20']:.4f} "
              f"fit {r['fit_s']:.0f}s eval {r['eval_s']:.0f}s", flush=True)


def main() -> None:
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(ORDER), help=f"comma list of {ORDER}")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--append", action="store_true", help="keep the rows already in the tables")
    ap.add_argument("--skip-gowalla-ease", action="store_true",
                    help="leave out EASE on Gowalla (~1 h and ~7 GB on 2 cores)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="P3: alternating genrec/RecBole runs per model (median times)")
    ap.add_argument("--blas-threads", type=int, default=THREADS,
                    help="OPENBLAS_NUM_THREADS for every process, genrec and RecBole; 1 on a "
                         "machine shared with other jobs (multi-threaded OpenBLAS Cholesky/LU "
                         "was 8-50x slower than 1 thread there)")
    ap.add_argument("--threads", type=int, default=THREADS,
                    help="torch threads of every genrec and RecBole process (OMP_NUM_THREADS); "
                         "1 when other jobs share the cores (2 threads on a loaded machine "
                         "oversubscribe: an ML-100k evaluation took 8x longer)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    THREADS = a.threads
    BLAS_ENV["OPENBLAS_NUM_THREADS"] = str(a.blas_threads)
    BLAS_ENV["OMP_NUM_THREADS"] = str(a.threads)
    if a.worker:
        worker_main(a.worker)
        return
    parts = [p.strip() for p in a.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(ORDER))
    if unknown:
        ap.error(f"--only: unknown part(s) {unknown}; choose from {ORDER}")
    for key in [k for k in ORDER if k in parts]:
        reset_table(a.out, *TABLES[key], append=a.append)
        if key == "p2":
            part_p2(a.out, a.skip_gowalla_ease)
        elif key == "p3":
            part_p3(a.out, a.repeats)
        else:
            {"ingest": part_ingest, "p1": part_p1}[key](a.out)


if __name__ == "__main__":
    main()
