"""Runs: config -> dataset + split -> fitted model -> metrics, saved to a run directory.

A run directory holds everything needed to reload and serve without the training code path:

    config.toml    the resolved RunConfig (model params included)
    run.json       model name, dataset directory, timings, versions
    model.npz      the model's state_dict
    metrics.json   {"valid": {...}, "test": {...}} from the full-ranking evaluator

Example:
    >>> cfg = make_config("ease", ["data.name=ml-100k", "params.l2=300"])       # doctest: +SKIP
    >>> result = train(cfg, Path("runs/ease"))
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrec import __version__
from genrec.config import ConfigError, apply_overrides, from_dict, load_toml, to_dict, to_toml
from genrec.data.dataset import DataError, Dataset
from genrec.data.ingest import Filters
from genrec.data.prepare import load_dataset
from genrec.data.splits import SPLITS, Split, make_split
from genrec.evaluation import EvalResult, evaluate
from genrec.registry import model_classes

__all__ = ["DataConfig", "EvalConfig", "RunConfig", "Run", "make_config", "train", "load_run",
           "evaluate_run", "recommend"]


@dataclass
class DataConfig:
    name: str = "ml-100k"  # preset name, prepared dataset name, or dataset directory
    split: str = "loo"  # loo | ratio | temporal | fixed
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # ratio/temporal split shares
    seed: int = 2020  # seed of the random (ratio) split
    valid_ratio: float = 0.0  # fixed split: share of train carved out as validation
    min_user: int = 0  # k-core: minimum interactions per user
    min_item: int = 0  # k-core: minimum interactions per item
    rating_threshold: float | None = None  # keep ratings >= this

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"data.split: {self.split!r} is not one of {list(SPLITS)}")

    def filters(self) -> Filters:
        return Filters(self.min_user, self.min_item, self.rating_threshold)


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50)  # cut-offs for @K metrics
    batch_users: int = 1024  # users scored per chunk
    refit: bool = False  # non-gradient models: refit on train+valid before the test pass


@dataclass
class RunConfig:
    model: str = "ease"  # a name from genrec.registry.MODELS
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    params: dict[str, Any] = field(default_factory=dict)  # the model's own config fields

    def validate(self) -> None:
        _, config_cls = model_classes(self.model)
        from_dict(config_cls, self.params, prefix="params.")  # unknown keys fail here, early


def make_config(model: str | None = None, sets: list[str] = (), preset: str | Path | None = None) -> RunConfig:
    """A RunConfig from an optional TOML preset, the model name and ``--set`` overrides."""
    data: dict[str, Any] = load_toml(preset) if preset else {}
    if model:
        data["model"] = model
    return from_dict(RunConfig, apply_overrides(data, list(sets)))


@dataclass
class Run:
    config: RunConfig
    model: Any
    dataset: Dataset
    split: Split
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _build_model(cfg: RunConfig, n_items: int) -> Any:
    model_cls, config_cls = model_classes(cfg.model)
    return model_cls(from_dict(config_cls, {**cfg.params, "n_items": n_items}))


def _score_fn(model: Any, history: Any):
    return lambda users: model.score(users, history)


def evaluate_run(run: Run, stage: str = "test", keep_topk: bool = False) -> EvalResult:
    """Full-ranking evaluation of ``stage`` (history masked, every item a candidate)."""
    split = run.split
    targets = split.targets(stage)
    if targets.nnz == 0:
        raise DataError(f"the {split.name} split of {run.dataset.name} has no {stage} interactions")
    history = split.history(stage)
    popularity = np.asarray(split.train_matrix().sum(axis=0)).ravel()
    return evaluate(_score_fn(run.model, history), history, targets, ks=run.config.eval.ks,
                    batch_users=run.config.eval.batch_users, item_popularity=popularity,
                    keep_topk=keep_topk)


def train(cfg: RunConfig, out: Path | None = None, progress: bool = False) -> Run:
    """Fit ``cfg.model`` on the train split, evaluate valid and test, save to ``out``."""
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = _build_model(cfg, ds.n_items)
    run = Run(cfg, model, ds, split)

    t0 = time.perf_counter()
    model.fit(split.train_matrix())
    info: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - t0, 3)}
    metrics: dict[str, Any] = {}
    if split.valid.height:
        metrics["valid"] = evaluate_run(run, "valid").metrics
    if cfg.eval.refit and split.valid.height and hasattr(model, "fit"):
        model.fit(split.history("test"))  # hyper-parameters were fixed on valid; test is untouched
    t1 = time.perf_counter()
    result = evaluate_run(run, "test")
    metrics["test"] = result.metrics
    info.update(eval_seconds=round(time.perf_counter() - t1, 3), n_eval_users=result.n_users)
    run.info = {"model": cfg.model, "dataset": ds.name, "dataset_dir": str(ds.path),
                "split": split.summary(), "genrec_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
    if out is not None:
        save_run(run, Path(out), metrics)
    run.info["metrics"] = metrics
    return run


def save_run(run: Run, out: Path, metrics: dict[str, Any]) -> Path:
    """Write the run directory atomically (temp dir, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "config.toml").write_text(to_toml(to_dict(run.config)))
        (tmp / "run.json").write_text(json.dumps(run.info, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        np.savez(tmp / "model.npz", **run.model.state_dict())
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run.path = out
    return out


def load_run(run_dir: str | Path) -> Run:
    """Reload a saved run: config, dataset, split and model weights (no refitting)."""
    run_dir = Path(run_dir)
    missing = [n for n in ("config.toml", "run.json", "model.npz") if not (run_dir / n).is_file()]
    if missing:
        raise DataError(f"{run_dir} is not a genrec run directory (missing {', '.join(missing)}); "
                        f"create one with `genrec train MODEL --data NAME`")
    cfg = from_dict(RunConfig, load_toml(run_dir / "config.toml"))
    info = json.loads((run_dir / "run.json").read_text())
    if info.get("model") != cfg.model:
        raise ConfigError(f"{run_dir}: run.json says model {info.get('model')!r} but config.toml "
                          f"says {cfg.model!r}; the run directory is inconsistent")
    ds_dir = Path(info.get("dataset_dir", ""))
    ds = Dataset.load(ds_dir) if ds_dir.is_dir() else load_dataset(cfg.data.name, cfg.data.filters())
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    model = _build_model(cfg, ds.n_items)
    with np.load(run_dir / "model.npz", allow_pickle=False) as z:
        model.load_state_dict({k: z[k] for k in z.files})
    return Run(cfg, model, ds, split, run_dir, info)


def recommend(run: Run, raw_user: str, k: int = 10, fallback: str | None = None) -> dict[str, Any]:
    """Top-``k`` unseen items for a raw user id, with titles.

    Unknown users raise DataError unless ``fallback="popular"``, which serves the most popular
    training items and says so in the result.
    """
    ds = run.dataset
    known = run.split.known()
    try:
        u = ds.user_index(raw_user)
        scores = np.asarray(run.model.score(np.array([u]), known), dtype=np.float64)[0]
        seen, used_fallback = known[u].indices, False
    except DataError:
        if fallback != "popular":
            raise
        scores = np.asarray(run.split.train_matrix().sum(axis=0), dtype=np.float64).ravel()
        seen, used_fallback = np.array([], dtype=np.int64), True
    scores[0] = -np.inf
    scores[seen] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=np.int64)
    top = top[np.lexsort((top, -scores[top]))]
    titles, ids = ds.titles(), ds.item_ids
    return {
        "user": str(raw_user),
        "fallback": "popular" if used_fallback else None,
        "items": [{"item_id": ids[i], "title": titles[i], "score": float(scores[i])} for i in top],
    }
