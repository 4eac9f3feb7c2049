"""Runs: config -> dataset + split -> fitted model -> metrics, saved to a run directory.

A run directory holds everything needed to reload and serve without the training code path:

    config.toml    the resolved RunConfig (model params and train settings included)
    run.json       model name, dataset directory and content hash, timings, versions, what the
                   builder read (content, user_features, semantic_ids), cold_start, training
    model.npz      a closed-form model's state_dict (numpy arrays), or
    model.pt       a torch model's state_dict (the best validated epoch)
    metrics.json   {"valid": {...}, "test": {...}} from the full-ranking evaluator
    gate.png       a session generator's experts: mean gate weight per decoder position (test)

The package: ``config`` (RunConfig and its parts), ``assemble`` (``build_model``: the model
built from the data), ``kinds`` (one adapter per model input kind: how a kind trains and is
scored), ``recommend`` (the one top-k of CLI and HTTP); this module trains, evaluates, saves and
loads. Nothing here inspects a model: it asks the model's kind (``genrec.runs.kinds.model_kind``).

Models of a kind that trains (pairs, sequence) are trained by ``genrec.training.trainer.fit`` on
the kind's batches: early stopping on the validation metric, best weights restored, then the
test split evaluated once. The trainer also leaves ``checkpoint.pt``, ``best.pt``,
``train_log.jsonl`` and ``curves.png`` in the run directory; ``train(..., resume=True)``
continues from the checkpoint. Under torchrun (``genrec train --nproc N``) every process calls
``train``; they train together with DDP and rank 0 alone evaluates and writes the run directory,
which then loads like any other. Closed-form models (matrix kind) are fitted once.

Pair models (BPR, LightGCN) have no vector for users without a training interaction; evaluation
gives them the popularity channel (items' training counts), counted in run.json
(``cold_start``), and serving folds in their known items (``genrec.runs.recommend``).

Example:
    >>> cfg = make_config("ease", ["data.name=ml-100k", "params.l2=300"])       # doctest: +SKIP
    >>> result = train(cfg, Path("runs/ease"))
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from genrec import __version__
from genrec._files import atomic_dir, check_replaceable
from genrec.config import ConfigError, from_dict, load_toml, to_dict, to_toml
from genrec.data.dataset import DataError, Dataset
from genrec.data.prepare import load_dataset
from genrec.data.splits import Split, make_split
from genrec.evaluation import EvalResult, evaluate, slice_metrics
from genrec.runs.assemble import build_model, content_vectors, model_shell, user_feature_codes
from genrec.runs.config import DataConfig, EvalConfig, RunConfig, make_config
from genrec.runs.kinds import model_kind
from genrec.runs.recommend import Recommendation, Recommender, recommend, recommend_all
from genrec.training import distributed
from genrec.training.trainer import fit

__all__ = ["DataConfig", "EvalConfig", "RunConfig", "Run", "make_config", "train", "load_run",
           "evaluate_run", "recommend", "recommend_all", "content_vectors", "user_feature_codes",
           "check_run_out", "RUN_MARKERS", "build_model", "scorer", "check_run_dir", "save_run",
           "Recommendation", "Recommender", "model_kind", "STAGES", "check_stage"]


@dataclass
class Run:
    config: RunConfig
    model: Any
    dataset: Dataset
    split: Split
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, stage: str = "test") -> dict[str, float]:
        """Full-ranking metrics of ``stage`` ("valid" or "test"), history masked."""
        check_stage(stage)
        return evaluate_run(self, stage).metrics

    def recommend(self, user: str, k: int = 10, fallback: str | None = None) -> list[dict]:
        """Top-``k`` unseen items for raw user id ``user``: ``[{"item_id", "title", "score"}]``;
        ``fallback="popular"`` serves unknown users the most popular items."""
        return recommend(self, str(user), k, fallback)["items"]


def scorer(run: Run, stage: str) -> Callable[[np.ndarray], Any]:
    """score(users) -> (B, n_items + 1) from what is known before ``stage`` ("all" = serving),
    as the model's kind feeds it (``genrec.runs.kinds``)."""
    return model_kind(run.config.model).scorer(run, stage)


STAGES = ("valid", "test")


def check_stage(stage: str) -> None:
    """ConfigError unless ``stage`` is one that runs are evaluated on."""
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r} is not one of {', '.join(STAGES)}; the train part is "
                          f"what the model learned from, so it is not evaluated")


def evaluate_run(run: Run, stage: str = "test", keep_topk: bool = False,
                 auc: bool | None = None) -> EvalResult:
    """Full-ranking evaluation of ``stage`` (history masked, every item a candidate).

    ``auc``: compute AUC (default ``run.config.eval.auc``); without it only ranks <= max(ks)
    are computed, about twice as fast. A split with new items (P1-new) also reports the users
    whose target is a new item: the same metrics prefixed ``new/``, and ``new/users``. The
    kind's ``stage_metrics`` are added too: on a ``next_k`` split (P6) the session metrics, which
    read the top lists kept here rather than score every user again."""
    split = run.split
    targets = split.targets(stage)
    if targets.nnz == 0:
        raise DataError(f"the {split.name} split of {run.dataset.name} has no {stage} interactions")
    masked = split.seen(stage)  # every earlier interaction, new items too (not in inputs)
    popularity = split.item_counts()
    result = evaluate(scorer(run, stage), masked, targets, ks=run.config.eval.ks,
                      batch_users=run.config.eval.batch_users, item_popularity=popularity,
                      keep_topk=keep_topk or split.name == "next_k",  # P6 lists them
                      auc=run.config.eval.auc if auc is None else auc)
    if len(split.new_items):
        result.metrics.update(slice_metrics(result, split.new_target_users(stage)[result.users],
                                            "new/"))
    result.metrics.update(model_kind(run.config.model).stage_metrics(run, stage, result))
    if not keep_topk:  # kept for the session metrics only
        result.topk = result.topk_scored = None
    return result


def _validator(run: Run) -> Callable[[], dict[str, float]] | None:
    """Validation metrics for early stopping (None when the split has no validation part); AUC,
    which needs every target's exact rank, only when it is the metric that stops training."""
    if not run.split.valid.height:
        return None
    return lambda: evaluate_run(run, "valid", auc=run.config.train.metric == "AUC").metrics


def train(cfg: RunConfig, out: Path | None = None, progress: bool = False,
          resume: bool = False, force: bool = False) -> Run:
    """Fit ``cfg.model`` on the train split, evaluate valid and test, save to ``out``.

    Gradient models train with ``cfg.train`` (seeded by ``train.seed``) and keep their best
    validated epoch; ``resume`` continues from ``out/checkpoint.pt``. ``out`` must be new,
    empty or a run of the same model (``force``: of any model); checked before any work.
    """
    model_kind(cfg.model).check_train(cfg.model)
    if out is not None:
        check_run_out(Path(out), cfg.model, force or resume)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    cfg.eval.check_catalogue(ds.n_items, ds.name)
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio,
                       new_items=cfg.data.new_items)
    info: dict[str, Any] = {}
    tested = np.diff(split.targets("test").indptr) > 0
    unseen = int((tested & (np.diff(split.history("test").indptr) == 0)).sum())
    if unseen:  # typical of a temporal split: users who first appear after the cut
        info["test_users_without_history"] = unseen
        warnings.warn(f"{unseen:,} of {int(tested.sum()):,} test users of the {split.name} split "
                      f"have no interaction before their test items, so every model can only guess "
                      f"for them; their metrics are counted (see run.json)", stacklevel=2)
    model, built = build_model(cfg, ds, split)
    info.update(built)
    kind = model_kind(cfg.model)
    cold = kind.cold_users(split)
    if cold is not None:  # pair models: users without training items get popularity in evaluation
        info["cold_start"] = {"n_users_without_train_items": int(cold.sum()),
                              "n_test_users_without_train_items":
                                  int((cold & tested).sum()),
                              "fallback": kind.cold_fallback}
    run = Run(cfg, model, ds, split)

    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    if kind.trains:  # the one trainer, early-stopping on validation (when the split has one)
        batches, steps = kind.batches(run)
        result = fit(model, cfg.train, batches, _validator(run),
                     run_dir=Path(out) if out is not None else None, steps_per_epoch=steps,
                     resume=resume, progress=progress)
        if distributed.rank() != 0:  # rank 0 evaluates and writes the run; this one is done
            run.info = {"model": cfg.model, "rank": distributed.rank(), "train": result.summary()}
            return run
        info.update(fit_seconds=round(time.perf_counter() - t0, 3), device=cfg.train.device,
                    world_size=distributed.world_size(), train=result.summary())
        best = [h for h in result.history if h["epoch"] == result.best_epoch and "valid" in h]
        if best:  # the restored weights' validation metrics, as measured during training
            metrics["valid"] = best[0]["valid"]
    else:
        kind.fit(model, split.train_matrix())
        info["fit_seconds"] = round(time.perf_counter() - t0, 3)
    if split.valid.height and "valid" not in metrics:
        metrics["valid"] = evaluate_run(run, "valid").metrics
    if cfg.eval.refit and split.valid.height and not kind.trains:
        kind.fit(model, split.history("test"))  # hyper-parameters fixed on valid; test untouched
    t1 = time.perf_counter()
    result = evaluate_run(run, "test")
    metrics["test"] = result.metrics
    info.update(eval_seconds=round(time.perf_counter() - t1, 3), n_eval_users=result.n_users)
    run.info = {"model": cfg.model, "dataset": ds.name, "dataset_dir": str(ds.path),
                "dataset_hash": ds.content_hash,
                "split": split.summary(), "genrec_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
    if out is not None:
        save_run(run, Path(out), metrics)
    run.info["metrics"] = metrics
    return run


_TRAINER_FILES = ("checkpoint.pt", "best.pt", "train_log.jsonl", "curves.png")
RUN_MARKERS = ("run.json", "checkpoint.pt", "train_log.jsonl")  # a folder holding one is a run


def check_run_out(out: Path, model: str, force: bool = False) -> None:
    """Refuse ``out`` before training unless it is new, empty or a run of ``model``; a run of
    another model is replaced only with ``force``. Nothing of the user's is ever replaced."""
    out = Path(out)
    check_replaceable(out, RUN_MARKERS, "run")
    try:  # an --out that cannot be written fails now, not after training
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {out.parent} for the run ({e.strerror}); pass --out a "
                          f"folder you can write to") from None
    info = out / "run.json"
    if force or not info.is_file():
        return
    try:
        old = json.loads(info.read_text()).get("model")
    except (ValueError, UnicodeDecodeError):
        old = None
    if old != model:
        raise ConfigError(f"{out} holds a run of {old or 'an unknown model'!r}, not {model!r}; pass "
                          f"--out a new folder, or --force to replace that run")


def save_run(run: Run, out: Path, metrics: dict[str, Any]) -> Path:
    """Write the run directory atomically (temp dir, then rename).

    A torch model's trainer files, written into ``out`` while it trained, are kept.
    """
    out = Path(out)
    with atomic_dir(out, marker=RUN_MARKERS, what="run") as tmp:
        (tmp / "config.toml").write_text(to_toml(to_dict(run.config)))
        (tmp / "run.json").write_text(json.dumps(run.info, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if "test" in metrics:  # a session generator's experts: gate weight per position
            from genrec.evaluation.plots import gate_chart

            gate_chart(metrics["test"], tmp / "gate.png",
                       f"{run.info.get('model', '')}: gate usage on test sessions")
        if isinstance(run.model, nn.Module):
            torch.save(run.model.state_dict(), tmp / "model.pt")
            for name in _TRAINER_FILES:
                if (out / name).is_file():
                    shutil.copy2(out / name, tmp / name)
        else:
            np.savez(tmp / "model.npz", **run.model.state_dict())
    run.path = out
    return out


_WEIGHTS = ("model.pt", "model.npz")


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it holds a run's files (cheap: nothing is read), else a DataError that
    says what is missing. ``load_run`` and ``genrec serve`` check with it."""
    run_dir = Path(run_dir)
    missing = [n for n in ("config.toml", "run.json") if not (run_dir / n).is_file()]
    missing += [] if any((run_dir / n).is_file() for n in _WEIGHTS) else ["model.pt or model.npz"]
    if missing:
        raise DataError(f"{run_dir} is not a genrec run directory (missing {', '.join(missing)}); "
                        f"create one with `genrec train MODEL --data NAME`")
    return run_dir


def load_run(run_dir: str | Path) -> Run:
    """Reload a saved run: config, dataset, split and model weights (no refitting)."""
    run_dir = check_run_dir(run_dir)
    cfg = from_dict(RunConfig, load_toml(run_dir / "config.toml"))
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{run_dir / 'run.json'} is not valid JSON ({e}); the run directory is "
                        f"damaged: train it again with `genrec train {cfg.model} ...`") from None
    if not isinstance(info, dict) or info.get("model") != cfg.model:
        found = info.get("model") if isinstance(info, dict) else None
        raise ConfigError(f"{run_dir}: run.json says model {found!r} but config.toml "
                          f"says {cfg.model!r}; the run directory is inconsistent")
    ds = _run_dataset(run_dir, cfg, info)
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio,
                       new_items=cfg.data.new_items)
    # content vectors, user features and semantic IDs are in the weights: only sizes are needed
    model = model_shell(cfg, ds, info)
    weights = next(run_dir / n for n in _WEIGHTS if (run_dir / n).is_file())
    try:
        if weights.suffix == ".pt":
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            model.eval()
        else:
            with np.load(weights, allow_pickle=False) as z:
                model.load_state_dict({k: z[k] for k in z.files})
    except Exception as e:  # KeyError, size mismatch, not a zip/pickle, truncated: all one story
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DataError(f"{weights} does not hold {cfg.model} weights for this run ({type(e).__name__}: "
                        f"{detail}); the run directory is damaged or mixed with another run's "
                        f"files: train it again") from None
    model_kind(cfg.model).attach(model, split)  # data beside the weights (a training graph)
    return Run(cfg, model, ds, split, run_dir, info)


def _run_dataset(run_dir: Path, cfg: RunConfig, info: dict[str, Any]) -> Dataset:
    """The run's dataset: its recorded folder, else found by name (a run copied to another
    machine); refused when its content differs from what the run was trained on."""
    ds_dir = Path(info.get("dataset_dir", ""))
    if ds_dir.is_dir() and (ds_dir / "meta.json").is_file():
        ds = Dataset.load(ds_dir)
    else:
        name = cfg.data.name  # a name, or a folder that may not exist on this machine
        if "/" in name and not Path(name).expanduser().is_dir():
            name = str(info.get("dataset", name))
        ds = load_dataset(name, cfg.data.filters())
    want = info.get("dataset_hash")
    if want and ds.content_hash != want:
        raise DataError(f"{run_dir} was trained on dataset {info.get('dataset')!r} with content "
                        f"hash {want}, but {ds.path} now holds other data (hash "
                        f"{ds.content_hash}): it was prepared again from another file; train "
                        f"the run again, or prepare the original data under its name")
    return ds
