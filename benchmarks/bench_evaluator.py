"""Full-ranking evaluator speed on a synthetic ML-1M-shaped problem (prints only, records nothing).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_evaluator.py [--repeat 3] [--ks 5,10,20,50]

6,040 users x 3,706 items, seeded random float32 scores, ~80 history items per user (masked) and
~16 targets per user (disjoint from the history). Times ``evaluate`` (best of ``--repeat``, one
torch thread) with AUC (the default) and without it (``auc=False``, where this version of
``evaluate`` has that option), next to a top-k-only lower bound (mask + ``torch.topk``).
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import scipy.sparse as sp
import torch

from genrec.evaluation import evaluate

N_USERS, N_ITEMS = 6040, 3706


def make_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = rng.random((N_USERS, N_ITEMS + 1), dtype=np.float32)
    n_hist = rng.integers(20, 141, N_USERS)   # mean 80
    n_tgt = rng.integers(1, 32, N_USERS)      # mean 16
    h_rows, h_cols, t_rows, t_cols = [], [], [], []
    for u in range(N_USERS):
        items = rng.choice(np.arange(1, N_ITEMS + 1), n_hist[u] + n_tgt[u], replace=False)
        h_rows.append(np.full(n_hist[u], u)), h_cols.append(items[:n_hist[u]])
        t_rows.append(np.full(n_tgt[u], u)), t_cols.append(items[n_hist[u]:])

    def csr(rows, cols):
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                             shape=(N_USERS, N_ITEMS + 1))

    return scores, csr(h_rows, h_cols), csr(t_rows, t_cols)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ks", default="5,10,20,50", help="cut-offs (runs.EvalConfig default)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ks = tuple(int(k) for k in args.ks.split(","))
    scores, hist, tgt = make_case()
    print(f"{N_USERS} users x {N_ITEMS} items, {hist.nnz / N_USERS:.1f} history and "
          f"{tgt.nnz / N_USERS:.1f} targets per user, ks={ks}, torch threads="
          f"{torch.get_num_threads()}, best of {args.repeat}")

    def score_fn(u):
        return scores[u]

    def topk_only():
        for lo in range(0, N_USERS, 1024):
            s = torch.from_numpy(scores[lo:lo + 1024].copy())
            h = hist[lo:lo + 1024]
            rows = torch.from_numpy(np.repeat(np.arange(h.shape[0]), np.diff(h.indptr)))
            s[rows, torch.from_numpy(h.indices.astype(np.int64))] = -np.inf
            s[:, 0] = -np.inf
            torch.topk(s, max(ks), dim=1)

    has_auc_flag = "auc" in inspect.signature(evaluate).parameters
    runs = {"evaluate (with AUC)": lambda: evaluate(score_fn, hist, tgt, ks=ks)}
    if has_auc_flag:
        runs["evaluate (auc=False)"] = lambda: evaluate(score_fn, hist, tgt, ks=ks, auc=False)
    runs["top-k only (mask + topk)"] = topk_only
    for name, fn in runs.items():
        print(f"{name:28s} {best_of(fn, args.repeat):6.3f} s")
    res = evaluate(score_fn, hist, tgt, ks=ks)
    print("NDCG@10 = {:.6f}, AUC = {:.6f}".format(res.metrics["NDCG@10"], res.metrics["AUC"]))


if __name__ == "__main__":
    main()
