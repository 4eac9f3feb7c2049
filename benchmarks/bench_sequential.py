"""Sequential recommenders (SASRec, HSTU) on protocol P1, and time-to-quality against RecBole 1.2.1.

    .venv/bin/python benchmarks/bench_sequential.py [--only beauty,sports,ml100k,speed,peer]
        [--parallel N] [--resume [--finish]] [--reuse] [--peer-dir DIR] [--peer-minutes M]
        [--start-recbole DIR] [--no-record] [--note TEXT]

The regenerable tables of BENCHMARKS.md (rows go there through ``_record.record``):
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

The cold-tail research that used to live here (sections ablation, seeds, calibration, and
--ablation-sets / --ablation-variants) is ``experiments/cold_tail.py``, with the same flags:

    .venv/bin/python experiments/cold_tail.py --only ablation --ablation-sets beauty

Every training run is a fresh subprocess (``benchmarks/_jobs.py``: the worker, the runner behind
--parallel / --reuse / --resume / --finish, and what lands in benchmarks/out/sequential/), so its
peak RSS and CPU time are that run's alone. Selection is on VALID only: the trainer keeps the
best-valid epoch and the test split is scored once, afterwards.

Environment: GENREC_DATA (raw data, e.g. /work/shared/data) and GENREC_HOME (prepared datasets,
outside the repo); for ``peer`` also PEER_VENV / PEER_DATA (see benchmarks/peer.py) with
``amazon-beauty`` prepared by shared/peers/prepare_s3rec.py. ``--peer-dir`` reuses a RecBole run
that is already going (or done) in DIR instead of starting one: DIR holds ``curve.jsonl`` and
``result.jsonl`` written by the wrapper ``benchmarks/_recbole_curve.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _jobs import (DATASET, OPTIONS, OUT_DIR, P1, REPO, add_job_arguments,  # noqa: E402
                   configure, cpu_seconds, fmt_metrics, load_avg, machine, run_all, run_one)

SECTIONS = ("beauty", "sports", "ml100k", "speed", "peer")
MOVED = ("ablation", "seeds", "calibration")  # sections of experiments/cold_tail.py
TABLE_P1 = "Sequential — P1 leave-one-out"
TABLE_SPEED = "Sequential — training and scoring speed"
TABLE_PEER = "Sequential — time-to-quality vs RecBole 1.2.1"

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
TARGETS = {  # from the issue / PROTOCOL.md: (R@10, N@10)
    "beauty": {"SASRec (TIGER paper)": (0.0605, 0.0318), "TIGER": (0.0648, 0.0384),
               "EASE masked": (0.0734, 0.0400)},
    "sports": {"SASRec (TIGER paper)": (0.0350, 0.0192), "TIGER": (0.0400, 0.0225),
               "EASE masked": (0.0512, 0.0279)},
}


# ---- P1 and speed ------------------------------------------------------------------------------
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

    results = run_all([(label, preset, sets, f"{section}_{label}")
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
            "metrics": f"masked {fmt_metrics(r['test_masked'])}",
            "unmasked R@5/N@5/R@10/N@10": fmt_metrics(r["test_unmasked"]),
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
        row["machine"] = f"{machine()}, threads={r['threads']}, {load_avg()}{OPTIONS.note}"
        row["command"] = f".venv/bin/python benchmarks/bench_sequential.py --only {section}"
        if record_rows:
            record(TABLE_P1, row, REPO / "BENCHMARKS.md")
    return results


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
    from genrec.runs import Run, build_model, make_config, scorer

    torch.set_num_threads(1)
    rows = []
    sasrec_bf16 = ("sasrec-ce-bf16", JOBS["beauty"][0][1], ["train.precision=bf16"])
    for label, preset, sets in [*JOBS["beauty"], sasrec_bf16]:
        cfg = make_config(preset=REPO / preset, sets=sets)
        bf16 = cfg.train.precision == "bf16"  # the trainer's autocast, here around the loss
        ds = load_dataset(cfg.data.name, cfg.data.filters())
        split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed,
                           cfg.data.valid_ratio)
        model = build_model(cfg, ds, split)[0]
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        batches = train_batches(split, model.config.max_len, cfg.train.batch_size, 0, 0)
        model.train()
        seqs, marks = 0, {}
        for i, batch in enumerate(batches):
            if i == 3:
                marks["t"], marks["cpu"] = time.perf_counter(), cpu_seconds()
            if i == 3 + n_batches:
                break
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seqs += len(batch) if i >= 3 else 0
        train_wall, train_cpu = time.perf_counter() - marks["t"], cpu_seconds() - marks["cpu"]
        score = scorer(Run(cfg, model, ds, split), "test")
        users = np.arange(min(n_users, split.n_users))
        t, c = time.perf_counter(), cpu_seconds()
        for lo in range(0, len(users), 512):
            score(users[lo:lo + 512])
        score_wall, score_cpu = time.perf_counter() - t, cpu_seconds() - c
        r = {"label": label, "seq_per_s": seqs / train_wall, "seq_per_cpu_s": seqs / train_cpu,
             "score_ms_1k": 1e6 * score_wall / len(users),
             "score_cpu_ms_1k": 1e6 * score_cpu / len(users)}
        rows.append(r)
        print(f"[speed] {json.dumps(r)} ({load_avg()})", flush=True)
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
                "machine": f"{machine()}, 1 torch thread, {load_avg()}",
                "command": ".venv/bin/python benchmarks/bench_sequential.py --only speed"},
                REPO / "BENCHMARKS.md")
    return rows


# ---- peer: time-to-quality against RecBole -------------------------------------------------------
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

    The wrapper, ``benchmarks/_recbole_curve.py``, is copied into ``peer_dir`` and run from there
    by the RecBole venv's python (so the directory keeps what ran); run_recbole itself runs
    unchanged."""
    from peer import peer_paths

    paths = peer_paths()
    peer_dir.mkdir(parents=True, exist_ok=True)
    wrapper = peer_dir / "run_recbole_curve.py"
    shutil.copyfile(Path(__file__).with_name("_recbole_curve.py"), wrapper)
    for name in ("curve.jsonl", "result.jsonl"):
        (peer_dir / name).unlink(missing_ok=True)
    env = {**os.environ, "PEER_DATA": str(paths["data"]), "PEER_THREADS": "1",
           "PEER_HARNESS": str(paths["harness"]), "PEER_WORK": str(peer_dir / "work"),
           "CURVE_OUT": str(peer_dir / "curve.jsonl")}
    cmd = [str(paths["python"]), str(wrapper), "SASRec", "amazon-beauty",
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
    print(f"[peer] genrec SASRec side by side with RecBole in {peer_dir} ({load_avg()})",
          flush=True)
    # the same wall-clock budget as RecBole's, so that genrec is not cut off before RecBole's best
    g = run_one("sasrec-ce-ttq", "configs/sasrec_beauty_p1.toml",
                [*PEER_SETS, f"train.max_minutes={PEER_BUDGET_MIN}"], "peer_genrec",
                select="unmasked", curve=curve)
    if proc is not None:
        proc.wait()
    while not (peer_dir / "result.jsonl").is_file():  # a reused run may still be going
        time.sleep(30)
    rb = json.loads((peer_dir / "result.jsonl").read_text().splitlines()[-1])
    summary, row = peer_row(rb, _curve(peer_dir / "curve.jsonl"), g, _curve(curve))
    (OUT_DIR / "peer_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if record_rows:
        record(TABLE_PEER, row, REPO / "BENCHMARKS.md")
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
        "machine": f"{machine()}, 1 torch thread each, {load_avg()}{OPTIONS.note}",
        "command": ".venv/bin/python benchmarks/bench_sequential.py --only peer "
                   f"(genrec: configs/sasrec_beauty_p1.toml --set {' --set '.join(PEER_SETS)})",
    }
    return summary, row


def main() -> None:
    global PEER_BUDGET_MIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections: {', '.join(SECTIONS)} ({', '.join(MOVED)}: "
                         f"experiments/cold_tail.py)")
    ap.add_argument("--peer-dir", type=Path, default=None,
                    help="reuse a RecBole run (curve.jsonl, result.jsonl) instead of starting one")
    ap.add_argument("--peer-minutes", type=float, default=None,
                    help=f"wall-clock train+valid budget of each side of the peer run "
                         f"(default {PEER_BUDGET_MIN:g})")
    ap.add_argument("--start-recbole", type=Path, default=None, metavar="DIR",
                    help="only start RecBole's side of the peer run in DIR and exit (then run "
                         "--only peer --peer-dir DIR)")
    add_job_arguments(ap)
    a = ap.parse_args()
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    if moved := sorted(set(only) & set(MOVED)):
        ap.error(f"section(s) {moved} moved to experiments/cold_tail.py (same flags): "
                 f".venv/bin/python experiments/cold_tail.py --only {','.join(moved)}")
    if unknown := sorted(set(only) - set(SECTIONS)):
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    configure(a)
    PEER_BUDGET_MIN = a.peer_minutes or PEER_BUDGET_MIN
    if a.start_recbole:
        proc = _start_recbole(a.start_recbole, PEER_BUDGET_MIN)
        print(f"RecBole started (pid {proc.pid}) in {a.start_recbole}")
        return
    record_rows = not a.no_record
    for section in only:
        if section in JOBS:
            section_p1(section, record_rows)
        elif section == "speed":
            section_speed(record_rows)
        elif section == "peer":
            section_peer(a.peer_dir, record_rows)


if __name__ == "__main__":
    main()
