"""Sequential recommenders (SASRec, HSTU) on protocol P1, and time-to-quality against RecBole 1.2.1.

    .venv/bin/python benchmarks/bench_sequential.py
        [--only beauty,sports,ml100k,speed,peer,ablation,seeds,calibration] [--parallel N]
        [--resume] [--reuse] [--peer-dir DIR] [--no-record] [--ablation-sets beauty,ml100k,sports]

Sections (rows go to BENCHMARKS.md through ``_record.record``):
    beauty, sports, ml100k   P1 leave-one-out, full ranking, from the frozen ``configs/*_p1.toml``:
                             SASRec and HSTU (sampled softmax T=0.05 and CE; the one with the
                             better VALID NDCG@10 is marked), test metrics with the user's history
                             masked (genrec's protocol) and unmasked (RecBole's), epochs, s/epoch,
                             wall, CPU time, peak RSS, and which published targets it passes.
    speed                    training sequences/s and scoring ms per 1k users on Beauty, wall and
                             CPU time (a few batches per model, one thread).
    peer                     RecBole's SASRec and genrec's SASRec, same sizes, one thread each,
                             started side by side; both log (wall seconds, valid NDCG@10) after
                             every epoch with history NOT masked (RecBole's sequential protocol),
                             then: time for genrec to first reach RecBole's best valid value.
    ablation                 item_repr id / content / gated (three gated variants, the one with
                             the best VALID cold-tail Recall@10 compared with id) on the datasets
                             of --ablation-sets: Beauty and ML-100k with MiniLM text vectors,
                             Sports with TF-IDF vectors of its item2attributes.json ids; then
                             id and gated trained with logit adjustment (logit_adjust 0.5, 1);
                             the cold tail both in full ranking and ranking the tail items only.
    seeds                    the ablation's id and chosen gated model, and its logit-adjusted pair
                             (id, gated) with the best VALID gated tail, retrained with 3 more
                             train.seed values: per-seed values, mean ± sd, gated minus its id.
    calibration              the ablation's models (best.pt) with each item's score lowered by
                             tau * log(1 + training count): tau chosen on VALID (best tail with
                             overall VALID N@10 not below id's), test overall and tail, and the
                             trade-off curves as PNGs in benchmarks/out/sequential/.

Every training run is a fresh subprocess of this script (``--worker SPEC OUT``), so its peak RSS
(ru_maxrss) and CPU time (getrusage user+sys) are that run's alone; ``--parallel N`` trains up to N
jobs of a section at once (one torch thread each). Results land in benchmarks/out/sequential/
(<job>.json, per-user test metrics in <job>.npz, per-epoch <job>.curve.jsonl, the worker's log);
``--reuse`` records from them without training again; ``--resume`` continues the jobs that stopped
on their wall-clock budget (train.max_minutes) from their checkpoint (<job>.run/), adding up epochs,
wall and CPU time. Selection is on VALID only: the trainer keeps the best-valid epoch and the test
split is scored once, afterwards.

Environment: GENREC_DATA (raw data, e.g. /work/shared/data) and GENREC_HOME (prepared datasets,
outside the repo); for ``peer`` also PEER_VENV / PEER_DATA (see benchmarks/peer.py) with
``amazon-beauty`` prepared by shared/peers/prepare_s3rec.py. ``--peer-dir`` reuses a RecBole run
that is already going (or done) in DIR instead of starting one: DIR holds ``curve.jsonl`` and
``result.jsonl`` written by the wrapper below.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))

SECTIONS = ("beauty", "sports", "ml100k", "speed", "peer", "ablation", "seeds",
            "calibration")
OUT_DIR = _REPO / "benchmarks" / "out" / "sequential"
P1 = "P1 leave-one-out, full ranking"
TABLE_P1 = "Sequential — P1 leave-one-out"
TABLE_SPEED = "Sequential — training and scoring speed"
TABLE_PEER = "Sequential — time-to-quality vs RecBole 1.2.1"
TABLE_ABLATION = "Sequential — item representation ablation"

# (label, preset, extra --set overrides). HSTU's own default is sampled softmax (128 negatives) over
# cosine / T with T = 0.05; "ce" keeps that geometry with the full softmax over the catalogue (the
# HSTU authors' TF port). The better one on VALID NDCG@10 is marked in the table.
JOBS: dict[str, list[tuple[str, str, list[str]]]] = {
    "beauty": [("sasrec-ce", "configs/sasrec_beauty_p1.toml", []),
               ("hstu-sampled", "configs/hstu_beauty_p1.toml", ["params.loss=sampled"]),
               ("hstu-ce", "configs/hstu_beauty_p1.toml", ["params.loss=ce"])],
    "sports": [("sasrec-ce", "configs/sasrec_sports_p1.toml", []),
               ("hstu-sampled", "configs/hstu_sports_p1.toml", ["params.loss=sampled"]),
               ("hstu-ce", "configs/hstu_sports_p1.toml", ["params.loss=ce"])],
    "ml100k": [("sasrec-ce", "configs/sasrec_ml100k_p1.toml", []),
               ("hstu-sampled", "configs/hstu_ml100k_p1.toml", ["params.loss=sampled"]),
               ("hstu-ce", "configs/hstu_ml100k_p1.toml", ["params.loss=ce"])],
}
DATASET = {"beauty": "amazon-beauty", "sports": "amazon-sports", "ml100k": "ml-100k"}
TARGETS = {  # from the issue / PROTOCOL.md: (R@10, N@10)
    "beauty": {"SASRec (TIGER paper)": (0.0605, 0.0318), "TIGER": (0.0648, 0.0384),
               "EASE masked": (0.0734, 0.0400)},
    "sports": {"SASRec (TIGER paper)": (0.0350, 0.0192), "TIGER": (0.0400, 0.0225),
               "EASE masked": (0.0512, 0.0279)},
}
UNMASKED = "unmasked:"  # prefix of the validation keys computed without masking history


# ---- worker: one training run in its own process ------------------------------------------------
def _evaluate_both(run: Any, stage: str, ks: tuple[int, ...],
                   penalties: dict[str, Any] | None = None) -> dict[str, Any]:
    """Masked and unmasked full-ranking metrics of ``stage`` from ONE scoring pass.

    Users are scored in chunks; each chunk's scores go to ``evaluate`` twice, once with the
    stage's history (genrec's protocol) and once with an empty history (RecBole's sequential
    protocol, which ranks the user's own past items too). ``penalties``: name -> a per-item
    tensor (n_items + 1,) subtracted from the scores, one more masked evaluation each.
    """
    import scipy.sparse as sp

    from genrec.evaluation import evaluate
    from genrec.runs import scorer

    split = run.split
    targets, history = split.targets(stage), split.history(stage)
    empty = sp.csr_matrix(history.shape, dtype=np.float32)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    score = scorer(run, stage)
    chunk = max(1, min(512, (1 << 23) // history.shape[1]))  # one evaluate chunk per call
    views = [("masked", history, None), ("unmasked", empty, None),
             *((name, history, p) for name, p in (penalties or {}).items())]
    parts: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name, *_ in views}
    score_s = 0.0
    for lo in range(0, len(users), chunk):
        u = users[lo:lo + chunk]
        t = time.perf_counter()
        s = score(u)
        score_s += time.perf_counter() - t
        for name, hist, p in views:
            s_ = s if p is None else s - p.to(s.device, s.dtype)
            res = evaluate(lambda _u, s_=s_: s_, hist, targets, ks=ks, users=u,
                           batch_users=len(u))
            for key, val in res.per_user.items():
                if key.split("@")[0] in ("HR", "Recall", "NDCG", "MRR"):
                    parts[name].setdefault(key, []).append(val)
    per_user = {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in parts.items()}
    means = {name: {k: float(np.nanmean(v)) for k, v in d.items()} for name, d in per_user.items()}
    return {**means, "users": users, "per_user": per_user, "score_seconds": score_s}


def _save_per_user(split: Any, stage: str, both: dict[str, Any], path: Path) -> None:
    """Per-user metrics of ``stage`` with each user's target and the items' training counts."""
    tgt = split.targets(stage)[both["users"]]
    np.savez(path, users=both["users"], target=tgt.indices[tgt.indptr[:-1]],
             train_count=split.item_counts(),
             **{f"{m}_{k}": v for m, d in both["per_user"].items() for k, v in d.items()})


def _best_run(spec_path: Path, out_path: Path) -> Any:
    """The finished job's best.pt as a ``genrec.runs.Run`` (one thread)."""
    import torch

    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import Run, make_config

    spec = json.loads(spec_path.read_text())
    cfg = make_config(preset=_REPO / spec["preset"], sets=spec.get("sets", []))
    torch.set_num_threads(1)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = _build_model(cfg, ds, split)
    best = Path(out_path).with_suffix(".run") / "best.pt"
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    return Run(cfg, model.eval(), ds, split)


def valid_worker(spec_path: Path, out_path: Path) -> None:
    """``<tag>.valid.npz`` of a job that finished before the worker wrote one: its best.pt."""
    run = _best_run(spec_path, out_path)
    _save_per_user(run.split, "valid", _evaluate_both(run, "valid", tuple(run.config.eval.ks)),
                   Path(out_path).with_suffix(".valid.npz"))


def within_tail_worker(spec_path: Path, out_path: Path) -> None:
    """``<tag>.{valid,test}.within.npz``: the best.pt ranking ONLY the cold-tail items
    (``_tail_cut``): every other item's score is -inf, so the target competes with the tail
    alone, whatever the model's head-vs-tail calibration."""
    run = _best_run(spec_path, out_path)
    counts = run.split.item_counts()
    head = counts > _tail_cut(counts)  # PAD (column 0) is -inf already
    score = run.model.score

    def tail_only(batch: Any) -> Any:
        scores = score(batch)
        scores[:, head] = -np.inf
        return scores

    run.model.score = tail_only
    for stage in ("valid", "test"):
        _save_per_user(run.split, stage, _evaluate_both(run, stage, (10,)),
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

    t0, cpu0 = time.perf_counter(), _cpu()
    run = _best_run(spec_path, out_path)
    log_count = torch.from_numpy(np.log1p(run.split.item_counts()).astype(np.float32))
    taus = _calibration_taus(float(run.config.params.get("logit_adjust", 0.0)))
    penalties = {f"tau{t:g}": t * log_count for t in taus}
    for stage in ("valid", "test"):
        _save_per_user(run.split, stage, _evaluate_both(run, stage, (10,), penalties),
                       Path(out_path).with_suffix(f".{stage}.calib.npz"))
    Path(out_path).with_suffix(".calib.json").write_text(json.dumps({
        "wall_seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - cpu0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _build_model(cfg: Any, ds: Any, split: Any) -> Any:
    """The model as ``genrec.runs.train`` builds it: seeded, with content vectors when asked."""
    from genrec.runs import build_model

    return build_model(cfg, ds, split)[0]


def worker(spec_path: Path, out_path: Path) -> None:
    """Train one config (spec: preset, sets, select, curve) and write a JSON summary."""
    t_proc = time.time()
    import torch

    from genrec.config import to_dict
    from genrec.data.batches import n_train_batches, train_batches
    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import Run, make_config
    from genrec.training.trainer import fit

    spec = json.loads(spec_path.read_text())
    cfg = make_config(preset=_REPO / spec["preset"], sets=spec.get("sets", []))
    if spec.get("max_minutes"):  # --finish: this invocation's budget only (not part of "sets")
        cfg.train.max_minutes = spec["max_minutes"]
    if spec.get("select") == "unmasked":  # RecBole's selection: valid NDCG@10 without masking
        cfg.train.metric = UNMASKED + cfg.train.metric
    ks = tuple(cfg.eval.ks)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = _build_model(cfg, ds, split)
    run = Run(cfg, model, ds, split)
    curve_path = Path(spec["curve"]) if spec.get("curve") else None
    run_dir = Path(out_path).with_suffix(".run")  # trainer checkpoints: a cut-off job resumes
    resume = bool(spec.get("resume"))
    prev = json.loads(Path(out_path).read_text()) if resume and Path(out_path).is_file() else None
    cut = (_cut_invocations(curve_path, prev) if resume
           else {"n": 0, "cpu": 0.0, "wall": 0.0, "fit": 0.0})
    t_fit = time.time()
    epoch = [_epochs_logged(curve_path) if resume else 0]

    def validate() -> dict[str, float]:
        both = _evaluate_both(run, "valid", ks)
        now = time.time()
        if curve_path is not None:
            with curve_path.open("a") as fh:
                ru = resource.getrusage(resource.RUSAGE_SELF)
                fh.write(json.dumps({"epoch": epoch[0], "valid": both["unmasked"]["NDCG@10"],
                                     "valid_masked": both["masked"]["NDCG@10"],
                                     "t_process": round(now - t_proc, 2),
                                     "cpu": round(ru.ru_utime + ru.ru_stime, 2),
                                     "t_fit": round(now - t_fit, 2)}) + "\n")
        epoch[0] += 1
        return {**both["masked"], **{UNMASKED + k: v for k, v in both["unmasked"].items()}}

    max_len = model.config.max_len

    def batches(epoch: int):
        return train_batches(split, max_len, cfg.train.batch_size, cfg.train.seed, epoch)

    steps = n_train_batches(split, cfg.train.batch_size)
    if curve_path is not None:
        start = {"event": "fit_start", "t_process": round(t_fit - t_proc, 2)}
        with curve_path.open("a" if resume else "w") as fh:
            fh.write(json.dumps({**start, "resumed": resume}) + "\n")
    result = fit(model, cfg.train, batches, validate, run_dir=run_dir, steps_per_epoch=steps,
                 resume=resume)
    fit_seconds = time.time() - t_fit

    t = time.time()
    test = _evaluate_both(run, "test", ks)
    test_seconds = time.time() - t
    _save_per_user(split, "test", test, Path(out_path).with_suffix(".npz"))
    _save_per_user(split, "valid", _evaluate_both(run, "valid", ks),
                   Path(out_path).with_suffix(".valid.npz"))  # the cold tail on VALID, to select
    ru = resource.getrusage(resource.RUSAGE_SELF)
    summary = result.summary()
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    full = [h for h in result.history if h["steps"] == steps]
    out = {
        "label": spec["label"], "preset": spec["preset"], "sets": spec.get("sets", []),
        "select": cfg.train.metric, "config": to_dict(cfg),
        "n_users": split.n_users, "n_items": ds.n_items, "n_test_users": len(test["users"]),
        "n_params": sum(p.numel() for p in model.parameters()),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason, "sec_per_epoch": summary["sec_per_epoch"],
        "seq_per_s": round(float(np.mean([h["seq_per_s"] for h in full])) if full else 0.0, 1),
        "valid_seconds_mean": round(float(np.mean([h["valid_seconds"] for h in result.history
                                                   if "valid_seconds" in h])), 2),
        "valid_masked": {k: v for k, v in best["valid"].items() if not k.startswith(UNMASKED)},
        "valid_unmasked": {k[len(UNMASKED):]: v for k, v in best["valid"].items()
                           if k.startswith(UNMASKED)},
        "test_masked": test["masked"], "test_unmasked": test["unmasked"],
        "test_seconds": round(test_seconds, 2),
        "score_ms_per_1k_users": round(1000 * test["score_seconds"] / len(test["users"]) * 1000, 1),
        # a resumed job adds up its invocations (each one reloads data and the checkpoint)
        # plus invocations that were killed (no result written): their time up to their last
        # logged validation, from the curve file (a lower bound)
        "invocations": (prev["invocations"] if prev else 0) + cut["n"] + 1,
        "killed_invocations": (prev.get("killed_invocations", 0) if prev else 0) + cut["n"],
        "fit_seconds": round(fit_seconds + (prev["fit_seconds"] if prev else 0) + cut["fit"], 1),
        "wall_seconds": round(time.time() - t_proc + (prev["wall_seconds"] if prev else 0)
                              + cut["wall"], 1),
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime + (prev["cpu_seconds"] if prev else 0)
                             + cut["cpu"], 1),
        "peak_rss_mb": round(max(ru.ru_maxrss / 1024, prev["peak_rss_mb"] if prev else 0), 1),
        "threads": torch.get_num_threads(), "loadavg_end": os.getloadavg(),
        "history": result.history,
    }
    Path(out_path).write_text(json.dumps(out, indent=1))


def _curve_segments(curve_path: Path | None) -> list[list[dict[str, Any]]]:
    """The curve file's rows, one list per invocation (each starts with a fit_start event)."""
    if curve_path is None or not curve_path.is_file():
        return []
    segments: list[list[dict[str, Any]]] = []
    for row in map(json.loads, curve_path.read_text().splitlines()):
        if row.get("event") == "fit_start" or not segments:
            segments.append([])
        segments[-1].append(row)
    return segments


def _epochs_logged(curve_path: Path | None) -> int:
    """Validations logged so far over every invocation = epochs the checkpoint holds."""
    return sum("epoch" in r for seg in _curve_segments(curve_path) for r in seg)


def _cut_invocations(curve_path: Path | None, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Invocations after the last result JSON that were killed before writing one: how many, and
    their CPU / wall / fit seconds up to their last logged validation."""
    killed = [seg for seg in _curve_segments(curve_path)[prev["invocations"] if prev else 0:]
              if any("epoch" in r for r in seg)]
    last = [[r for r in seg if "epoch" in r][-1] for seg in killed]
    return {"n": len(killed), "cpu": sum(r.get("cpu", 0.0) for r in last),
            "wall": sum(r["t_process"] for r in last), "fit": sum(r["t_fit"] for r in last)}


# ---- driver ----------------------------------------------------------------------------------
def _spawn(label: str, preset: str, sets: list[str], tag: str, select: str = "masked",
           curve: Path | None = None, resume: bool = False) -> subprocess.Popen:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    spec = OUT_DIR / f"{tag}.spec.json"
    curve = curve or OUT_DIR / f"{tag}.curve.jsonl"  # per-epoch progress of every job
    spec.write_text(json.dumps({"label": label, "preset": preset, "sets": sets, "select": select,
                                "curve": str(curve), "resume": resume,
                                "max_minutes": FINISH_MINUTES if resume and FINISH else None}))
    out = OUT_DIR / f"{tag}.json"
    if not resume:
        out.unlink(missing_ok=True)
        shutil.rmtree(out.with_suffix(".run"), ignore_errors=True)
    log = (OUT_DIR / f"{tag}.log").open("w")
    return subprocess.Popen([sys.executable, __file__, "--worker", str(spec), str(out)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=_REPO)


REUSE = False  # --reuse: take a job's result JSON from an earlier invocation when it exists


def _run(label: str, preset: str, sets: list[str], tag: str, reuse: bool = False,
         **kw: Any) -> dict[str, Any]:
    done = OUT_DIR / f"{tag}.json"
    if (REUSE or reuse) and done.is_file():
        prev = json.loads(done.read_text())
        if (prev["preset"], prev["sets"]) == (preset, sets):
            return prev
    proc = _spawn(label, preset, sets, tag, **kw)
    if proc.wait() != 0:
        raise RuntimeError(f"worker {tag} failed; see {OUT_DIR / (tag + '.log')}")
    return json.loads((OUT_DIR / f"{tag}.json").read_text())


PARALLEL = 1  # --parallel: jobs of one section that train at the same time (one thread each)
RESUME = False  # --resume: continue jobs that stopped on their time budget, from their checkpoint
NOTE = ""  # --note: appended to the machine column (e.g. the load during the runs)
FINISH = False  # --finish: resumed jobs get FINISH_MINUTES, i.e. stop now on the best checkpoint
FINISH_MINUTES = 0.05


def _run_all(jobs: list[tuple[str, str, list[str], str]]) -> list[dict[str, Any]]:
    """Run the jobs, at most PARALLEL at a time; results in job order."""
    results: dict[str, dict[str, Any]] = {}
    running: list[tuple[str, subprocess.Popen]] = []
    for label, preset, sets, tag in jobs:
        done = OUT_DIR / f"{tag}.json"
        prev = json.loads(done.read_text()) if done.is_file() else None
        same = prev is not None and (prev["preset"], prev["sets"]) == (preset, sets)
        # a job stopped by its time budget, or killed (a checkpoint but no result JSON)
        killed = prev is None and (OUT_DIR / f"{tag}.run" / "checkpoint.pt").is_file()
        resume = RESUME and ((same and prev["stop_reason"] == "time_budget") or killed)
        if (REUSE or RESUME) and same and not resume:  # --resume reuses the finished ones
            results[tag] = prev
            continue
        while len(running) >= PARALLEL:
            running = _reap(running, results)
        print(f"[{tag}] {'resume' if resume else 'start'} ({_load()})", flush=True)
        running.append((tag, _spawn(label, preset, sets, tag, resume=resume)))
    while running:
        running = _reap(running, results)
    return [results[tag] for *_, tag in jobs]


def _reap(running: list[tuple[str, subprocess.Popen]], results: dict[str, dict[str, Any]]
          ) -> list[tuple[str, subprocess.Popen]]:
    time.sleep(5)
    still = []
    for tag, proc in running:
        if proc.poll() is None:
            still.append((tag, proc))
        elif proc.returncode != 0:
            raise RuntimeError(f"worker {tag} failed; see {OUT_DIR / (tag + '.log')}")
        else:
            results[tag] = json.loads((OUT_DIR / f"{tag}.json").read_text())
            print(f"[{tag}] done ({_load()})", flush=True)
    return still


def _fmt(m: dict[str, float]) -> str:
    return " / ".join(f"{m[k]:.4f}" for k in ("Recall@5", "NDCG@5", "Recall@10", "NDCG@10"))


def _load() -> str:
    return "load avg %.1f/%.1f/%.1f" % os.getloadavg()


def _verdict(section: str, r: dict[str, Any], best_seq: bool) -> str:
    """Which published / baseline targets this row passes (masked test R@10 / N@10)."""
    if section not in TARGETS:
        return "–"
    rec, ndcg = r["test_masked"]["Recall@10"], r["test_masked"]["NDCG@10"]
    names = [n for n in TARGETS[section] if n != "EASE masked" or best_seq]
    out = "; ".join(f"{'≥' if rec >= t[0] and ndcg >= t[1] else 'MISSES'} {n} {t[0]}/{t[1]}"
                    for n, t in ((n, TARGETS[section][n]) for n in names))
    if "MISSES" in out and r["stop_reason"] == "time_budget":
        out += (f" (stopped by the time budget at epoch {r['epochs_run']}, best valid epoch "
                f"{r['best_epoch']})")
    return out


def section_p1(section: str, record_rows: bool) -> list[dict[str, Any]]:
    from _record import record

    results = _run_all([(label, preset, sets, f"{section}_{label}")
                        for label, preset, sets in JOBS[section]])
    hstu = [r for r in results if r["label"].startswith("hstu")]
    chosen = max(hstu, key=lambda r: r["valid_masked"]["NDCG@10"])["label"] if hstu else None
    best_seq = max(results, key=lambda r: r["valid_masked"]["NDCG@10"])["label"]
    for r in results:
        p = r["config"]["params"]
        model = (f"{r['config']['model']} loss={p.get('loss')} T={p.get('temperature', 1.0)} "
                 f"d={p.get('dim')} L={p.get('max_len')} layers={p.get('n_layers')}")
        note = []
        if r["label"] == chosen:
            note.append("HSTU picked on valid")
        if r["label"] == best_seq:
            note.append("best sequential on valid")
        row = {
            "dataset": DATASET[section], "protocol": P1,
            "model": model + (f" ({', '.join(note)})" if note else ""),
            "metrics": f"masked {_fmt(r['test_masked'])}",
            "unmasked R@5/N@5/R@10/N@10": _fmt(r["test_unmasked"]),
            "valid N@10 masked/unmasked": f"{r['valid_masked']['NDCG@10']:.4f} / "
                                          f"{r['valid_unmasked']['NDCG@10']:.4f}",
            "epochs (best)": f"{r['epochs_run']} ({r['best_epoch']}) {r['stop_reason']}"
                             + (f", {r['invocations']} invocations (resumed from checkpoint)"
                                if r.get("invocations", 1) > 1 else ""),
            "s/epoch": f"{r['sec_per_epoch']:.0f} wall",
            "wall time": f"{r['wall_seconds']:.0f} s",
            "CPU time": f"{r['cpu_seconds']:.0f} s "
                        f"({r['cpu_seconds'] / max(r['epochs_run'], 1):.0f} s/epoch incl. valid)",
            "peak memory": f"{r['peak_rss_mb']:.0f} MB RSS",
            "targets (masked test R@10/N@10)": _verdict(section, r, r["label"] == best_seq),
        }
        row["machine"] = f"{_machine()}, threads={r['threads']}, {_load()}{NOTE}"
        row["command"] = f".venv/bin/python benchmarks/bench_sequential.py --only {section}"
        if record_rows:
            record(TABLE_P1, row, _REPO / "BENCHMARKS.md")
    return results


def _machine() -> str:
    from _record import machine

    return machine()


def section_speed(record_rows: bool, n_batches: int = 30, n_users: int = 2048) -> list[dict]:
    """Training sequences/s and full-ranking scoring time per 1k users on Beauty, one thread.

    Wall AND CPU time (getrusage user+sys of this process) are reported: on a shared machine the
    wall numbers move with the load, the CPU ones much less. Each model trains ``n_batches``
    batches after 3 warm-up batches, then scores the test inputs of ``n_users`` users."""
    import torch

    from _record import record
    from genrec.data.batches import train_batches
    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import Run, make_config, scorer

    torch.set_num_threads(1)
    rows = []
    sasrec_bf16 = ("sasrec-ce-bf16", JOBS["beauty"][0][1], ["train.precision=bf16"])
    for label, preset, sets in [*JOBS["beauty"], sasrec_bf16]:
        cfg = make_config(preset=_REPO / preset, sets=sets)
        bf16 = cfg.train.precision == "bf16"  # the trainer's autocast, here around the loss
        ds = load_dataset(cfg.data.name, cfg.data.filters())
        split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed,
                           cfg.data.valid_ratio)
        model = _build_model(cfg, ds, split)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        batches = train_batches(split, model.config.max_len, cfg.train.batch_size, 0, 0)
        model.train()
        seqs, marks = 0, {}
        for i, batch in enumerate(batches):
            if i == 3:
                marks["t"], marks["cpu"] = time.perf_counter(), _cpu()
            if i == 3 + n_batches:
                break
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seqs += len(batch) if i >= 3 else 0
        train_wall, train_cpu = time.perf_counter() - marks["t"], _cpu() - marks["cpu"]
        score = scorer(Run(cfg, model, ds, split), "test")
        users = np.arange(min(n_users, split.n_users))
        t, c = time.perf_counter(), _cpu()
        for lo in range(0, len(users), 512):
            score(users[lo:lo + 512])
        score_wall, score_cpu = time.perf_counter() - t, _cpu() - c
        r = {"label": label, "seq_per_s": seqs / train_wall, "seq_per_cpu_s": seqs / train_cpu,
             "score_ms_1k": 1e6 * score_wall / len(users),
             "score_cpu_ms_1k": 1e6 * score_cpu / len(users)}
        rows.append(r)
        print(f"[speed] {json.dumps(r)} ({_load()})", flush=True)
        p = cfg.params
        if record_rows:
            record(TABLE_SPEED, {
                "dataset": "amazon-beauty", "protocol": "train step / full-ranking scores",
                "model": f"{cfg.model} loss={p.get('loss')} d={p.get('dim')} L={p.get('max_len')}"
                         + (" train.precision=bf16 (scoring float32)" if bf16 else ""),
                "metrics": f"train {r['seq_per_s']:.0f} sequences/s wall, "
                           f"{r['seq_per_cpu_s']:.0f} per CPU-second ({n_batches} batches of "
                           f"{cfg.train.batch_size}, loss + backward + AdamW); scoring "
                           f"{r['score_ms_1k']:.0f} ms wall / {r['score_cpu_ms_1k']:.0f} ms CPU "
                           f"per 1k users (forward + scores over {ds.n_items} items, no ranking)",
                "wall time": f"{train_wall + score_wall:.1f} s",
                "peak memory": "–",
                "machine": f"{_machine()}, 1 torch thread, {_load()}",
                "command": ".venv/bin/python benchmarks/bench_sequential.py --only speed"},
                _REPO / "BENCHMARKS.md")
    return rows


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---- peer: time-to-quality against RecBole -------------------------------------------------------
RECBOLE_WRAPPER = '''
import json, os, resource, sys, time
T0 = time.time()
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
sys.path.insert(0, os.path.dirname(os.environ["PEER_HARNESS"]))
import recbole.trainer.trainer as rbt
import run_recbole
out, state = os.environ["CURVE_OUT"], {"fit": None, "epoch": 0}
orig_es, orig_fit = rbt.early_stopping, rbt.Trainer.fit
def es(value, best, cur_step, max_step, bigger=True):  # called once per validation
    now = time.time()
    with open(out, "a") as f:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        f.write(json.dumps({"epoch": state["epoch"], "valid": float(value),
                            "t_process": round(now - T0, 2),
                            "cpu": round(ru.ru_utime + ru.ru_stime, 2),
                            "t_fit": round(now - state["fit"], 2) if state["fit"] else None})
                + "\\n")
    state["epoch"] += 1
    return orig_es(value, best, cur_step, max_step, bigger)
def fit(self, *a, **k):
    state["fit"] = time.time()
    with open(out, "a") as f:
        f.write(json.dumps({"event": "fit_start", "t_process": round(state["fit"] - T0, 2)})
                + "\\n")
    return orig_fit(self, *a, **k)
rbt.early_stopping, rbt.Trainer.fit = es, fit
run_recbole.main()
'''


PEER_BUDGET_MIN = 50.0  # train + valid minutes for each side of the time-to-quality run
# genrec's learning rate for the time-to-quality run, chosen on VALIDATION: with batch 128 genrec
# takes 175 steps per Beauty epoch (one sequence per user) where RecBole takes 1,027 (one per
# prefix), so RecBole's lr 1e-3 under-trains genrec per epoch. Probe (3 epochs, masked valid
# NDCG@10 after each): lr 1e-3 0.0158 / 0.0291 / 0.0427, lr 4e-3 0.0235 / 0.0424 / 0.0557.
# bfloat16 autocast (train.precision) cuts the CPU time of a step ~1.6x on this AVX512-BF16 CPU;
# probe (unmasked valid NDCG@10 after epochs 0-2): fp32 0.0203 / 0.0352 / 0.0445, bf16 0.0209 /
# 0.0345 / 0.0438. With bf16, a second lr probe (unmasked valid NDCG@10 after epochs 2-5):
# lr 4e-3 0.0438 / 0.0488 / 0.0493 / 0.0495, 6e-3 0.0447 / 0.0486 / 0.0502 / 0.0505, 8e-3 0.0429
# / 0.0485 / 0.0494 (stopped): 6e-3.
PEER_SETS = ["train.lr=0.006", "train.precision=bf16"]


def _start_recbole(peer_dir: Path, budget_min: float) -> subprocess.Popen:
    """RecBole's SASRec through run_recbole.py, wrapped to log (time, valid NDCG@10) per epoch.

    The wrapper (written into ``peer_dir``, outside the repo's tree of sources) patches
    ``recbole.trainer.trainer.early_stopping`` before run_recbole.main() wraps it for its budget,
    so run_recbole itself runs unchanged."""
    from peer import peer_paths

    paths = peer_paths()
    peer_dir.mkdir(parents=True, exist_ok=True)
    (peer_dir / "run_recbole_curve.py").write_text(RECBOLE_WRAPPER)
    for name in ("curve.jsonl", "result.jsonl"):
        (peer_dir / name).unlink(missing_ok=True)
    env = {**os.environ, "PEER_DATA": str(paths["data"]), "PEER_THREADS": "1",
           "PEER_HARNESS": str(paths["harness"]), "PEER_WORK": str(peer_dir / "work"),
           "CURVE_OUT": str(peer_dir / "curve.jsonl")}
    cmd = [str(paths["python"]), str(peer_dir / "run_recbole_curve.py"), "SASRec", "amazon-beauty",
           "--max-len", "50", "--budget-min", str(budget_min),
           "--out", str(peer_dir / "result.jsonl")]
    return subprocess.Popen(cmd, env=env, stdout=(peer_dir / "recbole.out").open("w"),
                            stderr=(peer_dir / "recbole.err").open("w"))


def _curve(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if "valid" in r]


def section_peer(peer_dir: Path | None, record_rows: bool) -> dict[str, Any]:
    from _record import record

    started = peer_dir is None
    peer_dir = peer_dir or Path(tempfile.mkdtemp(prefix="recbole_ttq_"))
    proc = _start_recbole(peer_dir, PEER_BUDGET_MIN) if started else None
    curve = OUT_DIR / "peer_genrec_curve.jsonl"
    print(f"[peer] genrec SASRec side by side with RecBole in {peer_dir} ({_load()})", flush=True)
    # the same wall-clock budget as RecBole's, so that genrec is not cut off before RecBole's best
    g = _run("sasrec-ce-ttq", "configs/sasrec_beauty_p1.toml",
             [*PEER_SETS, f"train.max_minutes={PEER_BUDGET_MIN}"], "peer_genrec", select="unmasked",
             curve=curve)
    if proc is not None:
        proc.wait()
    while not (peer_dir / "result.jsonl").is_file():  # a reused run may still be going
        time.sleep(30)
    rb = json.loads((peer_dir / "result.jsonl").read_text().splitlines()[-1])
    summary, row = peer_row(rb, _curve(peer_dir / "curve.jsonl"), g, _curve(curve))
    (OUT_DIR / "peer_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if record_rows:
        record(TABLE_PEER, row, _REPO / "BENCHMARKS.md")
    print(json.dumps({k: v for k, v in summary.items() if "curve" not in k and k not in
                      ("recbole", "genrec")}, indent=1))
    return summary


def peer_row(rb: dict[str, Any], rb_curve: list[dict[str, Any]], g: dict[str, Any],
             g_curve: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, BENCHMARKS row): RecBole's best valid and when genrec first reached it.

    Curve rows: {"epoch", "valid" (unmasked NDCG@10), "t_fit", "t_process"[, "cpu"]}. RecBole
    rounds its metrics to 4 decimals, so genrec's value is compared with the rounded one."""
    top = max(r["valid"] for r in rb_curve)
    best = [r for r in rb_curve if r["valid"] == top][-1]  # RecBole: ties go to the later epoch
    reach = next((r for r in g_curve if r["valid"] >= best["valid"]), None)
    summary = {"recbole_best": best, "genrec_reach": reach,
               "genrec_best_valid_unmasked": g["valid_unmasked"]["NDCG@10"],
               "recbole": rb, "recbole_curve": rb_curve, "genrec_curve": g_curve, "genrec": g}

    def times(r: dict[str, Any]) -> str:
        cpu = f", {r['cpu']:.0f} s CPU" if r.get("cpu") is not None else ""
        return f"{r['t_fit']:.0f} s fit ({r['t_process']:.0f} s process{cpu})"

    ratios, verdict = [], "MISSES the target ≤ 0.1×"
    if reach:
        ratios = [f"{reach['t_fit'] / best['t_fit']:.2f}× wall (fit)",
                  f"{reach['t_process'] / best['t_process']:.2f}× wall (process)"]
        ratio = reach["t_fit"] / best["t_fit"]
        if reach.get("cpu") and best.get("cpu"):  # fairer when the two got unequal CPU shares
            ratios.append(f"{reach['cpu'] / best['cpu']:.2f}× CPU")
            ratio = reach["cpu"] / best["cpu"]
        verdict = "meets the target ≤ 0.1×" if ratio <= 0.1 else verdict
    curve_txt = lambda c: ", ".join(f"{r['valid']:.4f}@{r['t_fit']:.0f}s" for r in c)  # noqa: E731
    row = {
        "dataset": "amazon-beauty",
        "protocol": f"{P1}; valid AND test with history NOT masked (RecBole's sequential protocol)",
        "metrics": (
            f"RecBole best valid N@10 {best['valid']:.4f} (epoch {best['epoch']}) after "
            f"{times(best)}; genrec first ≥ that "
            + (f"at epoch {reach['epoch']} after {times(reach)}" if reach else "never")
            + f"; genrec/RecBole {', '.join(ratios) or 'not reached'}: {verdict}. "
            f"Test N@10 unmasked: RecBole {rb['metrics']['ndcg@10']:.4f}, genrec "
            f"{g['test_unmasked']['NDCG@10']:.4f} (genrec masked "
            f"{g['test_masked']['NDCG@10']:.4f}); "
            f"HR@10 unmasked: RecBole {rb['metrics']['hit@10']:.4f}, genrec "
            f"{g['test_unmasked']['HR@10']:.4f} (masked {g['test_masked']['HR@10']:.4f})"),
        "runs": (f"RecBole {rb['epochs']} epochs (best {rb['best_epoch']}, {rb['stop_reason']}, "
                 f"{rb['sec_per_epoch_train']} s/epoch train, {rb['n_train_samples']} prefix "
                 f"samples/epoch); genrec {g['epochs_run']} epochs (best {g['best_epoch']}, "
                 f"{g['stop_reason']}, {g['sec_per_epoch']} s/epoch, one sequence per user, "
                 f"selected on unmasked valid N@10). Valid N@10@fit-seconds: RecBole "
                 f"{curve_txt(rb_curve)}; genrec {curve_txt(g_curve)}"),
        "wall time": f"RecBole {rb['total_seconds']:.0f} s, genrec {g['wall_seconds']:.0f} s",
        "CPU time": f"genrec {g['cpu_seconds']:.0f} s",
        "peak memory": f"RecBole {rb['peak_rss_mb']:.0f} MB, genrec {g['peak_rss_mb']:.0f} MB RSS",
        "machine": f"{_machine()}, 1 torch thread each, {_load()}{NOTE}",
        "command": ".venv/bin/python benchmarks/bench_sequential.py --only peer "
                   f"(genrec: configs/sasrec_beauty_p1.toml --set {' --set '.join(PEER_SETS)})",
    }
    return summary, row


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
                       stdout=log, stderr=subprocess.STDOUT, cwd=_REPO, check=True)


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
    """(Re)start one of the ablation's tables in BENCHMARKS.md with its intro; a run on a subset
    (of the datasets or variants) appends its rows and keeps the others'."""
    from _record import COLUMNS, reset_table

    reset_table(_REPO / "BENCHMARKS.md", table, intro, COLUMNS + extra_columns, append=subset)


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
    done = {tag: r for (*_, tag), r in zip(jobs, _run_all(jobs))}
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
            print(f"[ablation] {section} {name}: test {_fmt(r['test_masked'])}; tail valid R@10 "
                  f"{vcold['Recall@10']:.4f} test R@10 {cold['Recall@10']:.4f} / N@10 "
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
                "metrics": f"masked {_fmt(r['test_masked'])}; cold tail (target among the 20% "
                           f"least-trained items: ≤ {cold['cut']:.0f} train interactions, "
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
                "machine": f"{_machine()}, threads={r['threads']}, {_load()}{NOTE}"},
                _REPO / "BENCHMARKS.md")  # command: this run's own (record fills it in)
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
        _run_all(jobs)
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
                    "machine": f"{_machine()}, threads=1, {_load()}{NOTE}"},
                    _REPO / "BENCHMARKS.md")
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
                    "machine": f"{_machine()}, threads=1, {_load()}{NOTE}"},
                    _REPO / "BENCHMARKS.md")
    return rows


def main() -> None:
    global PEER_BUDGET_MIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--peer-dir", type=Path, default=None,
                    help="reuse a RecBole run (curve.jsonl, result.jsonl) instead of starting one")
    ap.add_argument("--no-record", action="store_true", help="print, do not touch BENCHMARKS.md")
    ap.add_argument("--reuse", action="store_true",
                    help="record from benchmarks/out/sequential/<job>.json of an earlier run "
                         "instead of training again (same preset and overrides only)")
    ap.add_argument("--resume", action="store_true",
                    help="continue jobs that stopped on train.max_minutes from their checkpoint "
                         "(the budget restarts), reuse the finished ones")
    ap.add_argument("--peer-minutes", type=float, default=None,
                    help=f"wall-clock train+valid budget of each side of the peer run "
                         f"(default {PEER_BUDGET_MIN:g})")
    ap.add_argument("--start-recbole", type=Path, default=None, metavar="DIR",
                    help="only start RecBole's side of the peer run in DIR and exit (then run "
                         "--only peer --peer-dir DIR)")
    ap.add_argument("--finish", action="store_true",
                    help="with --resume: give resumed jobs a 3-second budget, so they stop at once "
                         "and are scored from their best checkpoint (the row says time_budget)")
    ap.add_argument("--note", default="", help="text appended to the machine column")
    ap.add_argument("--ablation-sets", default="beauty,ml100k,sports",
                    help=f"datasets of --only ablation, from {', '.join(ABLATION_SETS)}")
    ap.add_argument("--ablation-variants", default=None,
                    help=f"variants of --only ablation besides id, from "
                         f"{', '.join(VARIANTS)} (default all)")
    ap.add_argument("--parallel", type=int, default=1,
                    help="train up to this many jobs of a section at once (one thread each)")
    ap.add_argument("--worker", nargs=2, type=Path, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--valid-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--within-tail-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--calibration-worker", nargs=2, type=Path, metavar=("SPEC", "OUT"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.calibration_worker:
        calibration_worker(*a.calibration_worker)
        return
    if a.worker:
        worker(*a.worker)
        return
    if a.valid_worker:
        valid_worker(*a.valid_worker)
        return
    if a.within_tail_worker:
        within_tail_worker(*a.within_tail_worker)
        return
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    ablation_sets = [s.strip() for s in a.ablation_sets.split(",") if s.strip()]
    if unknown := sorted(set(ablation_sets) - set(ABLATION_SETS)):
        ap.error(f"--ablation-sets: unknown {unknown}; choose from {', '.join(ABLATION_SETS)}")
    variants = a.ablation_variants and [v.strip() for v in a.ablation_variants.split(",")]
    if variants and (unknown := sorted(set(variants) - set(VARIANTS))):
        ap.error(f"--ablation-variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    for env in ("GENREC_DATA", "GENREC_HOME"):
        if not os.environ.get(env):
            print(f"warning: {env} is not set", file=sys.stderr)
    global REUSE, PARALLEL, RESUME, NOTE, FINISH
    FINISH = a.finish
    PEER_BUDGET_MIN = a.peer_minutes or PEER_BUDGET_MIN
    if a.start_recbole:
        proc = _start_recbole(a.start_recbole, PEER_BUDGET_MIN)
        print(f"RecBole started (pid {proc.pid}) in {a.start_recbole}")
        return
    REUSE, PARALLEL, RESUME = a.reuse, a.parallel, a.resume
    NOTE = f"; {a.note}" if a.note else ""
    record_rows = not a.no_record
    for section in only:
        if section in JOBS:
            section_p1(section, record_rows)
        elif section == "speed":
            section_speed(record_rows)
        elif section == "peer":
            section_peer(a.peer_dir, record_rows)
        elif section == "ablation":
            section_ablation(record_rows, ablation_sets, variants or None)
        elif section == "seeds":
            section_seeds(record_rows, ablation_sets)
        elif section == "calibration":
            section_calibration(record_rows, ablation_sets)


if __name__ == "__main__":
    main()
