"""The notebook API: a dataset, a trained model, its metrics and recommendations in five lines.

    >>> import genrec
    >>> ds = genrec.load_dataset("ml-100k")                      # prepared on first use
    >>> run = genrec.train("ease", data="ml-100k", l2=300)        # model params as keywords
    >>> round(run.evaluate()["NDCG@10"], 4)                       # full ranking, history masked
    0.0728
    >>> [r["title"] for r in run.recommend("1", k=2)]
    ['E.T. the Extra-Terrestrial (1982)', "One Flew Over the Cuckoo's Nest (1975)"]
    >>> genrec.compare([run, genrec.train("popularity", data="ml-100k")]).columns[:3]
    ['run', 'HR@10', 'NDCG@10']

Everything here is a thin layer over ``genrec.runs`` (the same code as ``genrec train``);
``out=`` saves the run directory, ``sets=["train.epochs=5", ...]`` sets any other config key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import polars as pl

from genrec.data.dataset import Dataset
from genrec.data.prepare import load_dataset as _load_dataset
from genrec.runs import Run, load_run, make_config
from genrec.runs import train as _train

__all__ = ["load_dataset", "train", "load_run", "compare"]

COMPARE_METRICS = ("HR@10", "NDCG@10", "Recall@20", "NDCG@20", "MRR@10", "coverage@10")


def load_dataset(name: str | Path) -> Dataset:
    """A prepared dataset by name (presets are prepared on first use) or folder."""
    return _load_dataset(name)


def train(model: str, data: str | None = None, *, split: str | None = None,
          out: str | Path | None = None, sets: Iterable[str] = (), config: str | Path | None = None,
          progress: bool = False, **params: Any) -> Run:
    """Train ``model`` on dataset ``data``; keyword arguments are the model's params
    (``l2=300`` is ``--set params.l2=300``). Returns the Run (saved to ``out`` when given)."""
    overrides = list(sets) + [f"params.{k}={_toml(v)}" for k, v in params.items()]
    overrides += [f"data.name={data}"] if data else []
    overrides += [f"data.split={split}"] if split else []
    cfg = make_config(model, overrides, config)
    return _train(cfg, Path(out) if out is not None else None, progress=progress)


def compare(runs: Iterable[Run], stage: str = "test",
            metrics: Iterable[str] = COMPARE_METRICS) -> pl.DataFrame:
    """One row per run (its model name, or ``label`` in run.info), one column per metric, from
    the metrics measured when it was trained (re-evaluated when it has none for ``stage``)."""
    rows = []
    for run in runs:
        found = run.info.get("metrics", {}).get(stage) or run.evaluate(stage)
        label = run.info.get("label") or run.config.model
        rows.append({"run": label, **{m: found.get(m) for m in metrics}})
    return pl.DataFrame(rows)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
