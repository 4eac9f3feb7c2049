"""Sequential training jobs, each in a subprocess of its own: the worker, its metrics, the runner.

Shared by ``bench_sequential.py`` (P1 tables, peer) and ``experiments/cold_tail.py``. A job is one
preset plus ``--set`` overrides, trained by ``python benchmarks/_jobs.py --worker SPEC OUT`` in a
fresh process, so its peak RSS (ru_maxrss) and CPU time (getrusage user+sys) are that run's alone.
Everything lands in benchmarks/out/sequential/: <tag>.spec.json (what to train), <tag>.json (the
summary: config, epochs, valid and test metrics masked and unmasked, wall / CPU time, peak RSS),
per-user metrics in <tag>.npz (test) and <tag>.valid.npz, the per-epoch <tag>.curve.jsonl, the
trainer's checkpoints in <tag>.run/ and the worker's <tag>.log.

The runner's options (``add_job_arguments`` / ``configure``, in OPTIONS): ``--parallel N`` trains up
to N jobs at once (one torch thread each); ``--reuse`` takes a job's <tag>.json of an earlier run
(same preset and overrides); ``--resume`` continues the jobs that stopped on their wall-clock
budget (train.max_minutes), or were killed, from their checkpoint, adding up epochs, wall and CPU
time; ``--finish`` (with --resume) stops them at once on their best checkpoint. Selection is on
VALID only: the trainer keeps the best-valid epoch, and the test split is scored once, afterwards.

    job = run_one("sasrec-ce", "configs/sasrec_beauty_p1.toml", [], "beauty_sasrec-ce")
    job["test_masked"]["NDCG@10"], job["cpu_seconds"], job["peak_rss_mb"]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

__all__ = ["REPO", "OUT_DIR", "P1", "DATASET", "UNMASKED", "OPTIONS", "add_job_arguments",
           "configure", "evaluate_both", "save_per_user", "best_run", "worker", "run_one",
           "run_all", "fmt_metrics", "load_avg", "machine", "cpu_seconds"]

OUT_DIR = REPO / "benchmarks" / "out" / "sequential"
P1 = "P1 leave-one-out, full ranking"
DATASET = {"beauty": "amazon-beauty", "sports": "amazon-sports", "ml100k": "ml-100k"}
UNMASKED = "unmasked:"  # prefix of the validation keys computed without masking history
FINISH_MINUTES = 0.05  # --finish: a resumed job's budget, i.e. stop now on the best checkpoint


@dataclass
class Options:
    """The runner's command-line options (``configure``), one set per process."""

    parallel: int = 1  # jobs of one section that train at the same time (one thread each)
    reuse: bool = False  # take a job's result JSON from an earlier invocation when it exists
    resume: bool = False  # continue jobs that stopped on their time budget, from their checkpoint
    finish: bool = False  # resumed jobs get FINISH_MINUTES, i.e. stop now on the best checkpoint
    note: str = ""  # "; <--note>": appended to the machine column (e.g. the load during the runs)


OPTIONS = Options()


def add_job_arguments(ap: argparse.ArgumentParser) -> None:
    """The runner's flags, shared by every script that trains jobs."""
    ap.add_argument("--no-record", action="store_true", help="print, do not touch BENCHMARKS.md")
    ap.add_argument("--reuse", action="store_true",
                    help="record from benchmarks/out/sequential/<job>.json of an earlier run "
                         "instead of training again (same preset and overrides only)")
    ap.add_argument("--resume", action="store_true",
                    help="continue jobs that stopped on train.max_minutes from their checkpoint "
                         "(the budget restarts), reuse the finished ones")
    ap.add_argument("--finish", action="store_true",
                    help="with --resume: give resumed jobs a 3-second budget, so they stop at once "
                         "and are scored from their best checkpoint (the row says time_budget)")
    ap.add_argument("--note", default="", help="text appended to the machine column")
    ap.add_argument("--parallel", type=int, default=1,
                    help="train up to this many jobs of a section at once (one thread each)")


def configure(a: argparse.Namespace) -> None:
    """Set OPTIONS from the parsed ``add_job_arguments`` flags; warn about a missing environment."""
    OPTIONS.parallel, OPTIONS.reuse, OPTIONS.resume, OPTIONS.finish = (a.parallel, a.reuse,
                                                                       a.resume, a.finish)
    OPTIONS.note = f"; {a.note}" if a.note else ""
    for env in ("GENREC_DATA", "GENREC_HOME"):
        if not os.environ.get(env):
            print(f"warning: {env} is not set", file=sys.stderr)


# ---- worker: one training run in its own process ------------------------------------------------
def evaluate_both(run: Any, stage: str, ks: tuple[int, ...],
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


def save_per_user(split: Any, stage: str, both: dict[str, Any], path: Path) -> None:
    """Per-user metrics of ``stage`` with each user's target and the items' training counts."""
    tgt = split.targets(stage)[both["users"]]
    np.savez(path, users=both["users"], target=tgt.indices[tgt.indptr[:-1]],
             train_count=split.item_counts(),
             **{f"{m}_{k}": v for m, d in both["per_user"].items() for k, v in d.items()})


def best_run(spec_path: Path, out_path: Path) -> Any:
    """The finished job's best.pt as a ``genrec.runs.Run`` (one thread)."""
    import torch

    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import Run, build_model, make_config

    spec = json.loads(spec_path.read_text())
    cfg = make_config(preset=REPO / spec["preset"], sets=spec.get("sets", []))
    torch.set_num_threads(1)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = build_model(cfg, ds, split)[0]
    best = Path(out_path).with_suffix(".run") / "best.pt"
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    return Run(cfg, model.eval(), ds, split)


def worker(spec_path: Path, out_path: Path) -> None:
    """Train one config (spec: preset, sets, select, curve) and write a JSON summary."""
    t_proc = time.time()
    import torch

    from genrec.config import to_dict
    from genrec.data.batches import n_train_batches, train_batches
    from genrec.data.prepare import load_dataset
    from genrec.data.splits import make_split
    from genrec.runs import Run, build_model, make_config
    from genrec.training.trainer import fit

    spec = json.loads(spec_path.read_text())
    cfg = make_config(preset=REPO / spec["preset"], sets=spec.get("sets", []))
    if spec.get("max_minutes"):  # --finish: this invocation's budget only (not part of "sets")
        cfg.train.max_minutes = spec["max_minutes"]
    if spec.get("select") == "unmasked":  # RecBole's selection: valid NDCG@10 without masking
        cfg.train.metric = UNMASKED + cfg.train.metric
    ks = tuple(cfg.eval.ks)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = build_model(cfg, ds, split)[0]
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
        both = evaluate_both(run, "valid", ks)
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
    test = evaluate_both(run, "test", ks)
    test_seconds = time.time() - t
    save_per_user(split, "test", test, Path(out_path).with_suffix(".npz"))
    save_per_user(split, "valid", evaluate_both(run, "valid", ks),
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
    """Start ``python benchmarks/_jobs.py --worker <tag>.spec.json <tag>.json``, logging to
    <tag>.log; a fresh (not resumed) job first loses its old result and checkpoints."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    spec = OUT_DIR / f"{tag}.spec.json"
    curve = curve or OUT_DIR / f"{tag}.curve.jsonl"  # per-epoch progress of every job
    spec.write_text(json.dumps({"label": label, "preset": preset, "sets": sets, "select": select,
                                "curve": str(curve), "resume": resume,
                                "max_minutes": (FINISH_MINUTES if resume and OPTIONS.finish
                                                else None)}))
    out = OUT_DIR / f"{tag}.json"
    if not resume:
        out.unlink(missing_ok=True)
        shutil.rmtree(out.with_suffix(".run"), ignore_errors=True)
    log = (OUT_DIR / f"{tag}.log").open("w")
    return subprocess.Popen([sys.executable, __file__, "--worker", str(spec), str(out)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def run_one(label: str, preset: str, sets: list[str], tag: str, reuse: bool = False,
            **kw: Any) -> dict[str, Any]:
    """One job, waited for (``_spawn``'s keywords: select, curve, resume); ``reuse`` or --reuse:
    the result of an earlier run of the same preset and overrides, when there is one."""
    done = OUT_DIR / f"{tag}.json"
    if (OPTIONS.reuse or reuse) and done.is_file():
        prev = json.loads(done.read_text())
        if (prev["preset"], prev["sets"]) == (preset, sets):
            return prev
    proc = _spawn(label, preset, sets, tag, **kw)
    if proc.wait() != 0:
        raise RuntimeError(f"worker {tag} failed; see {OUT_DIR / (tag + '.log')}")
    return json.loads((OUT_DIR / f"{tag}.json").read_text())


def run_all(jobs: list[tuple[str, str, list[str], str]]) -> list[dict[str, Any]]:
    """Run the jobs, at most OPTIONS.parallel at a time; results in job order."""
    results: dict[str, dict[str, Any]] = {}
    running: list[tuple[str, subprocess.Popen]] = []
    for label, preset, sets, tag in jobs:
        done = OUT_DIR / f"{tag}.json"
        prev = json.loads(done.read_text()) if done.is_file() else None
        same = prev is not None and (prev["preset"], prev["sets"]) == (preset, sets)
        # a job stopped by its time budget, or killed (a checkpoint but no result JSON)
        killed = prev is None and (OUT_DIR / f"{tag}.run" / "checkpoint.pt").is_file()
        resume = OPTIONS.resume and ((same and prev["stop_reason"] == "time_budget") or killed)
        if (OPTIONS.reuse or OPTIONS.resume) and same and not resume:  # --resume: reuse finished
            results[tag] = prev
            continue
        while len(running) >= OPTIONS.parallel:
            running = _reap(running, results)
        print(f"[{tag}] {'resume' if resume else 'start'} ({load_avg()})", flush=True)
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
            print(f"[{tag}] done ({load_avg()})", flush=True)
    return still


# ---- small helpers for the rows ----------------------------------------------------------------
def fmt_metrics(m: dict[str, float]) -> str:
    """'R@5 / N@5 / R@10 / N@10' of a job's metrics dict, 4 decimals."""
    return " / ".join(f"{m[k]:.4f}" for k in ("Recall@5", "NDCG@5", "Recall@10", "NDCG@10"))


def load_avg() -> str:
    return "load avg %.1f/%.1f/%.1f" % os.getloadavg()


def machine() -> str:
    """'2 cores (<CPU model>), 23 GB RAM' (``_record.machine``)."""
    import _record

    return _record.machine()


def cpu_seconds() -> float:
    """This process's CPU time so far (user + sys)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Train one job (spawned by the runner).")
    ap.add_argument("--worker", nargs=2, type=Path, metavar=("SPEC", "OUT"), required=True)
    worker(*ap.parse_args().worker)
