"""Runs: config -> dataset + split -> fitted model -> metrics, saved to a run directory.

A run directory holds everything needed to reload and serve without the training code path:

    config.toml    the resolved RunConfig (model params and train settings included)
    run.json       model name, dataset directory, timings, versions (and the training summary)
    model.npz      a non-gradient model's state_dict (numpy arrays), or
    model.pt       a torch model's state_dict (the best validated epoch)
    metrics.json   {"valid": {...}, "test": {...}} from the full-ranking evaluator

Gradient models (those with a ``loss`` method) are trained by ``genrec.training.trainer.fit``:
early stopping on the validation metric, best weights restored, then the test split evaluated
once. The trainer also leaves ``checkpoint.pt``, ``best.pt``, ``train_log.jsonl`` and
``curves.png`` in the run directory; ``train(..., resume=True)`` continues from the checkpoint.
Under torchrun (``genrec train --nproc N``) every process calls ``train``; they train together
with DDP and rank 0 alone evaluates and writes the run directory, which then loads like any other.

Sequence models with ``params.item_repr = "content" | "gated"`` get item content vectors from
``params.content``: an encoder name (``<dataset>/item_vectors/<name>.parquet``, written by
``genrec embed items``) or a .parquet/.npz/.npy file keyed by raw item id. They are aligned to
item_idx here and stored in the model's weights, so ``load_run`` needs no vector file. Items
without a vector are counted in run.json (``content.n_without_vector``); see
``genrec.models._layers`` for what the model does with them.

``params.user_features`` (two_tower) names categorical columns of the dataset's users table;
they are coded here (``user_feature_codes``: 0 = missing), their cardinalities go to run.json
(``user_features``) and the codes into the model's weights.

Pair models (``input_kind = "pairs"``: BPR, LightGCN) train on (user, positive, negative) triples
from ``genrec.data.batches.pair_batches`` (negatives by the model's ``negatives``) and score from
the training graph; LightGCN gets that graph with ``set_graph(split.train_matrix())`` here and in
``load_run``, and its ``fusion`` reads text vectors from ``params.content`` as above. Users with
no training interaction get the popularity channel (items' training counts) instead of the
model's scores: counted in run.json (``cold_start``) and flagged by ``recommend`` (``fallback``).

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
import polars as pl
import torch
from torch import nn

from genrec import __version__
from genrec._files import atomic_dir, check_replaceable
from genrec.config import ConfigError, apply_overrides, from_dict, load_toml, to_dict, to_toml
from genrec.data.batches import (PairBatch, eval_batch, n_pair_batches, n_train_batches,
                                 pair_batches, train_batches, user_sequences)
from genrec.data.dataset import DataError, Dataset
from genrec.data.ingest import Filters
from genrec.data.prepare import load_dataset
from genrec.data.splits import SPLITS, Split, make_split
from genrec.evaluation import EvalResult, evaluate
from genrec.registry import model_classes
from genrec.training import distributed
from genrec.training.trainer import TrainConfig, TrainResult, fit

__all__ = ["DataConfig", "EvalConfig", "RunConfig", "Run", "make_config", "train", "load_run",
           "evaluate_run", "recommend", "recommend_all", "content_vectors", "user_feature_codes",
           "check_run_out", "RUN_MARKERS"]


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
        if self.min_user < 0 or self.min_item < 0:
            raise ConfigError(f"data.min_user / data.min_item must be >= 0, got {self.min_user}, "
                              f"{self.min_item}")

    def filters(self) -> Filters:
        return Filters(self.min_user, self.min_item, self.rating_threshold)


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50)  # cut-offs for @K metrics
    batch_users: int = 1024  # users scored per chunk
    refit: bool = False  # non-gradient models: refit on train+valid before the test pass
    auc: bool = True  # AUC needs every target's exact rank; off, only ranks <= max(ks) are computed

    def validate(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"eval.ks must be positive cut-offs, e.g. [10, 20], got {list(self.ks)}")
        if self.batch_users < 1:
            raise ConfigError(f"eval.batch_users must be >= 1, got {self.batch_users}")

    def check_catalogue(self, n_items: int, dataset: str) -> None:
        """Cut-offs you chose beyond the catalogue would rank more items than exist: refused
        before any work (the default cut-offs stay usable on a small catalogue)."""
        if tuple(self.ks) != EvalConfig().ks and max(self.ks) > n_items:
            raise ConfigError(f"eval.ks: {max(self.ks)} is more than the {n_items:,} items of "
                              f"{dataset}; use cut-offs <= {n_items}")


@dataclass
class RunConfig:
    model: str = "ease"  # a name from genrec.registry.MODELS
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # gradient models only
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


def _build_model(cfg: RunConfig, n_items: int, content_dim: int = 0, n_users: int = 0,
                 **data_fields: Any) -> Any:
    """The model with the config fields that come from the data filled in."""
    model_cls, config_cls = model_classes(cfg.model)
    filled = {"n_items": n_items, **({"content_dim": content_dim} if content_dim else {}),
              **data_fields}
    if "n_users" in getattr(config_cls, "__dataclass_fields__", {}):  # user-embedding models
        filled["n_users"] = n_users
    return model_cls(from_dict(config_cls, {**cfg.params, **filled}))


def _content_spec(cfg: RunConfig) -> tuple[str, str]:
    """(item_repr, content) from the model's params; ("id", "") for models without them."""
    _, config_cls = model_classes(cfg.model)
    model_cfg = from_dict(config_cls, dict(cfg.params))
    if getattr(model_cfg, "fusion", "none") != "none":  # lightgcn's semantic fusion
        return "fusion", model_cfg.content
    return getattr(model_cfg, "item_repr", "id"), getattr(model_cfg, "content", "")


def set_content(model: Any, vectors: torch.Tensor, present: torch.Tensor, split: Split) -> None:
    """Give ``model`` its content vectors, and each item's training count when its gate uses it."""
    if getattr(model.config, "count_gate", False):
        model.set_content(vectors, present, counts=torch.from_numpy(split.item_counts()))
    else:
        model.set_content(vectors, present)


def set_item_counts(model: Any, split: Split) -> None:
    """Each item's training count, for a model whose loss adjusts its logits by it
    (``logit_adjust``); models without the option are left as they are."""
    if getattr(getattr(model, "config", None), "logit_adjust", 0):
        model.set_item_counts(torch.from_numpy(split.item_counts()))


def user_feature_codes(ds: Dataset, columns: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    """``(codes (n_users, F) int64, info)`` for categorical columns of the users table.

    Each column's distinct values (as strings, sorted) get codes 1..V by user_idx; 0 = missing
    (null or empty). ``info``: columns, cards (V + 1 per column), n_missing per column.
    """
    missing = [c for c in columns if c not in ds.users.columns]
    if missing:
        found = ", ".join(c for c in ds.users.columns if c not in ("user_idx", "user_id"))
        raise ConfigError(f"params.user_features: {', '.join(map(repr, missing))} not in the "
                          f"users table of {ds.name} (found: {found or 'no feature columns'}); "
                          f"name columns of its users.parquet")
    users = ds.users.sort("user_idx")
    codes = np.zeros((ds.n_users, len(columns)), dtype=np.int64)
    cards, n_missing = [], {}
    for f, col in enumerate(columns):
        values = users[col].cast(pl.Utf8).fill_null("").to_list()
        lookup = {v: i for i, v in enumerate(sorted(set(values) - {""}), start=1)}
        codes[:, f] = [lookup.get(v, 0) for v in values]
        cards.append(len(lookup) + 1)
        n_missing[col] = int((codes[:, f] == 0).sum())
    return codes, {"columns": list(columns), "cards": cards, "n_missing": n_missing}


def _user_cards(info: dict[str, Any]) -> dict[str, Any]:
    """Config fields a user-feature model (two_tower) needs before its weights load."""
    return {"user_cards": info["user_features"]["cards"]} if "user_features" in info else {}


def _id_sizes(info: dict[str, Any]) -> dict[str, Any]:
    """Config fields a semantic-ID model (tiger) needs before its weights load."""
    return {"id_sizes": info["semantic_ids"]["sizes"]} if "semantic_ids" in info else {}


_VECTOR_FILES = (".parquet", ".npz", ".npy")
_FALLBACK = {"content": "items without a vector share one learned vector (the projection of a "
                        "zero vector)",
             "gated": "items without a vector use their id embedding alone (gate fixed to 1)",
             "fusion": "items without a vector use their id embedding alone (text part zero); a "
                       "user's text vector is the mean over their training items that have one "
                       "(none: id embedding alone)"}


def content_vectors(ds: Dataset, spec: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(vectors (n_items + 1, C) float32, present (n_items + 1,) bool, info)`` for ``spec``.

    ``spec``: an encoder name in the dataset's item_vectors, or a vector file keyed by raw item
    id (a path ending in .parquet/.npz/.npy). Rows are aligned to item_idx, row 0 (PAD) is zero;
    items the file lacks, and all-zero rows, are zero rows with ``present`` False; rows of ids
    the dataset does not know are dropped (``info["n_unknown_ids"]``).
    """
    from genrec.features.image import read_precomputed
    from genrec.features.store import load_vectors, vectors_dir

    if not spec:
        folder = vectors_dir(ds) if ds.path is not None else None
        found = sorted(p.stem for p in folder.glob("*.parquet")) if folder and folder.is_dir() \
            else []
        raise ConfigError(f"params.item_repr 'content'/'gated' needs params.content: an encoder "
                          f"name whose vectors `genrec embed items --data {ds.name} --encoder "
                          f"...` wrote (found for this dataset: {', '.join(found) or 'none'}), or "
                          f"a .parquet/.npz/.npy file keyed by raw item id")
    if Path(spec).suffix.lower() in _VECTOR_FILES:
        path = Path(spec).expanduser()
        item_ids = [str(i) for i in ds.item_ids[1:]]
        ids, vecs = read_precomputed(path, item_ids)
        row_of = {raw: idx for idx, raw in enumerate(item_ids, start=1)}
        rows = np.array([row_of.get(str(i), -1) for i in ids], dtype=np.int64)
        vectors = np.zeros((ds.n_items + 1, vecs.shape[1]), dtype=np.float32)
        vectors[rows[rows >= 0]] = vecs[rows >= 0]
        present = np.abs(vectors).sum(axis=1) > 0
        source = {"file": str(path.resolve()), "n_unknown_ids": int((rows < 0).sum())}
    else:
        vectors, present, meta = load_vectors(ds, spec)
        source = {"encoder": spec, "file": meta["path"], "n_unknown_ids": meta["n_unknown"]}
    present[0] = False
    info = {**source, "dim": int(vectors.shape[1]),
            "n_without_vector": int(ds.n_items - present[1:].sum())}
    return vectors, present, info


_SUB_BATCH = 256  # sequences per forward pass when scoring


def _is_gradient(model: Any) -> bool:
    return hasattr(model, "loss")


_COLD_FALLBACK = "popularity: the items' training counts"


def _cold_users(split: Split) -> np.ndarray:
    """(n_users,) True where a user has no training interaction: a pair model (BPR, LightGCN)
    never saw them, so they get the popularity channel instead, with a flag."""
    return np.diff(split.train_matrix().indptr) == 0


def _pair_scorer(run: Run) -> Callable[[np.ndarray], torch.Tensor]:
    """score(users) of a PairBatch model; users without training items get popularity scores."""
    model, cold = run.model, _cold_users(run.split)
    popularity = torch.from_numpy(run.split.item_counts())
    popularity[0] = -np.inf
    model.eval()

    def score(users: np.ndarray) -> torch.Tensor:
        device = next(model.parameters()).device
        users = np.asarray(users, dtype=np.int64)
        with torch.no_grad():  # LightGCN propagates once and reuses it for every chunk
            out = model.score(PairBatch(torch.from_numpy(users)).to(device))
        rows = torch.from_numpy(cold[users]).to(device)
        if rows.any():
            out[rows] = popularity.to(device, out.dtype)
        return out

    return score


def _scorer(run: Run, stage: str) -> Callable[[np.ndarray], Any]:
    """score(users) -> (B, n_items+1) from what is known before ``stage`` ("all" = serving)."""
    model = run.model
    if getattr(model, "input_kind", None) == "pairs":  # scores from the training graph alone
        return _pair_scorer(run)
    if getattr(model, "input_kind", None) == "sequence":
        max_len = model.config.max_len
        lengths = user_sequences(run.split, stage).lengths()
        model.eval()  # dropout off; the trainer switches back to train mode each epoch

        def score(users: np.ndarray) -> torch.Tensor:
            device = next(model.parameters()).device
            # users of similar length share a sub-batch, so few columns are all-PAD
            order = np.argsort(lengths[users], kind="stable")
            out = None
            with torch.no_grad():
                for lo in range(0, len(users), _SUB_BATCH):
                    rows = order[lo:lo + _SUB_BATCH]
                    part = model.score(eval_batch(run.split, stage, users[rows], max_len).to(device))
                    if out is None:
                        out = part.new_empty((len(users), part.shape[1]))
                    out[torch.from_numpy(rows).to(device)] = part
            return out

        return score
    if _is_gradient(model):
        raise ConfigError(f"{run.config.model}: input_kind {getattr(model, 'input_kind', None)!r} "
                          f"has no batch builder in genrec.runs yet")
    history = run.split.known() if stage == "all" else run.split.history(stage)
    return lambda users: model.score(users, history)


def evaluate_run(run: Run, stage: str = "test", keep_topk: bool = False,
                 auc: bool | None = None) -> EvalResult:
    """Full-ranking evaluation of ``stage`` (history masked, every item a candidate).

    ``auc``: compute AUC (default ``run.config.eval.auc``); without it only ranks <= max(ks)
    are computed, about twice as fast."""
    split = run.split
    targets = split.targets(stage)
    if targets.nnz == 0:
        raise DataError(f"the {split.name} split of {run.dataset.name} has no {stage} interactions")
    history = split.history(stage)
    popularity = split.item_counts()
    return evaluate(_scorer(run, stage), history, targets, ks=run.config.eval.ks,
                    batch_users=run.config.eval.batch_users, item_popularity=popularity,
                    keep_topk=keep_topk, auc=run.config.eval.auc if auc is None else auc)


def _validator(run: Run) -> Callable[[], dict[str, float]] | None:
    """Validation metrics for early stopping (None when the split has no validation part); AUC,
    which needs every target's exact rank, only when it is the metric that stops training."""
    if not run.split.valid.height:
        return None
    return lambda: evaluate_run(run, "valid", auc=run.config.train.metric == "AUC").metrics


def _fit_gradient(run: Run, out: Path | None, progress: bool, resume: bool) -> TrainResult:
    """Train with the one trainer, early-stopping on validation (when the split has one)."""
    cfg, split, model = run.config.train, run.split, run.model
    if getattr(model, "input_kind", None) == "pairs":  # BPR, LightGCN: (user, pos, neg) triples
        negatives, steps = model.config.negatives, n_pair_batches(split, cfg.batch_size)
        if steps == 0:
            raise DataError(f"{run.dataset.name}: the {split.name} split has no training "
                            f"interactions, so {run.config.model} has nothing to learn from")
        return fit(model, cfg,
                   lambda epoch: pair_batches(split, cfg.batch_size, cfg.seed, epoch, negatives),
                   _validator(run), run_dir=out, steps_per_epoch=steps, resume=resume,
                   progress=progress)
    if getattr(model, "input_kind", None) != "sequence":
        raise ConfigError(f"{run.config.model}: input_kind {getattr(model, 'input_kind', None)!r} "
                          f"has no batch builder in genrec.runs yet")
    max_len = model.config.max_len

    def batches(epoch: int):
        return train_batches(split, max_len, cfg.batch_size, cfg.seed, epoch)

    steps = n_train_batches(split, cfg.batch_size)
    if steps == 0:
        raise DataError(f"{run.dataset.name}: no user has 2 or more training interactions, so a "
                        f"sequence model has nothing to learn from; check the split and filters")
    return fit(model, cfg, batches, _validator(run), run_dir=out, steps_per_epoch=steps, resume=resume,
               progress=progress)


def train(cfg: RunConfig, out: Path | None = None, progress: bool = False,
          resume: bool = False, force: bool = False) -> Run:
    """Fit ``cfg.model`` on the train split, evaluate valid and test, save to ``out``.

    Gradient models train with ``cfg.train`` (seeded by ``train.seed``) and keep their best
    validated epoch; ``resume`` continues from ``out/checkpoint.pt``. ``out`` must be new,
    empty or a run of the same model (``force``: of any model); checked before any work.
    """
    if out is not None:
        check_run_out(Path(out), cfg.model, force or resume)
    ds = load_dataset(cfg.data.name, cfg.data.filters())
    cfg.eval.check_catalogue(ds.n_items, ds.name)
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    info: dict[str, Any] = {}
    tested = np.diff(split.targets("test").indptr) > 0
    unseen = int((tested & (np.diff(split.history("test").indptr) == 0)).sum())
    if unseen:  # typical of a temporal split: users who first appear after the cut
        info["test_users_without_history"] = unseen
        warnings.warn(f"{unseen:,} of {int(tested.sum()):,} test users of the {split.name} split "
                      f"have no interaction before their test items, so every model can only guess "
                      f"for them; their metrics are counted (see run.json)", stacklevel=2)
    content = None
    item_repr, spec = _content_spec(cfg)
    if item_repr != "id":
        vectors, present, info["content"] = content_vectors(ds, spec)
        content = (torch.from_numpy(vectors), torch.from_numpy(present))
        info["content"]["fallback"] = _FALLBACK[item_repr]
    user_codes = None
    columns = getattr(from_dict(model_classes(cfg.model)[1], dict(cfg.params)), "user_features", ())
    if columns:  # two_tower's user tower: categorical columns of users.parquet
        user_codes, info["user_features"] = user_feature_codes(ds, tuple(columns))
    id_codes = None
    if hasattr(model_classes(cfg.model)[0], "set_semantic_ids"):  # tiger: items as semantic IDs
        from genrec.semantic_ids.store import semantic_ids_for_run

        id_codes, info["semantic_ids"] = semantic_ids_for_run(ds, cfg.params.get("semantic_ids", ""))
    torch.manual_seed(cfg.train.seed)  # the initial weights of gradient models
    model = _build_model(cfg, ds.n_items, info["content"]["dim"] if content else 0, ds.n_users,
                         **_user_cards(info), **_id_sizes(info))
    if id_codes is not None:  # a buffer of the model: load_run needs no semantic-ID file
        model.set_semantic_ids(torch.from_numpy(id_codes))
    if content is not None:
        set_content(model, *content, split)
    set_item_counts(model, split)
    if user_codes is not None:  # a buffer of the model: load_run needs no users table
        model.set_user_features(torch.from_numpy(user_codes))
    if hasattr(model, "set_graph"):  # LightGCN: the training graph is data, rebuilt on load
        model.set_graph(split.train_matrix())
    if getattr(model, "input_kind", None) == "pairs":
        cold = _cold_users(split)
        info["cold_start"] = {"n_users_without_train_items": int(cold.sum()),
                              "n_test_users_without_train_items":
                                  int((cold & (np.diff(split.targets("test").indptr) > 0)).sum()),
                              "fallback": _COLD_FALLBACK}
    run = Run(cfg, model, ds, split)

    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    if _is_gradient(model):
        result = _fit_gradient(run, Path(out) if out is not None else None, progress, resume)
        if distributed.rank() != 0:  # rank 0 evaluates and writes the run; this one is done
            run.info = {"model": cfg.model, "rank": distributed.rank(), "train": result.summary()}
            return run
        info.update(fit_seconds=round(time.perf_counter() - t0, 3), device=cfg.train.device,
                    world_size=distributed.world_size(), train=result.summary())
        best = [h for h in result.history if h["epoch"] == result.best_epoch and "valid" in h]
        if best:  # the restored weights' validation metrics, as measured during training
            metrics["valid"] = best[0]["valid"]
    else:
        model.fit(split.train_matrix())
        info["fit_seconds"] = round(time.perf_counter() - t0, 3)
    if split.valid.height and "valid" not in metrics:
        metrics["valid"] = evaluate_run(run, "valid").metrics
    if cfg.eval.refit and split.valid.height and hasattr(model, "fit"):
        model.fit(split.history("test"))  # hyper-parameters were fixed on valid; test is untouched
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
        if isinstance(run.model, nn.Module):
            torch.save(run.model.state_dict(), tmp / "model.pt")
            for name in _TRAINER_FILES:
                if (out / name).is_file():
                    shutil.copy2(out / name, tmp / name)
        else:
            np.savez(tmp / "model.npz", **run.model.state_dict())
    run.path = out
    return out


def load_run(run_dir: str | Path) -> Run:
    """Reload a saved run: config, dataset, split and model weights (no refitting)."""
    run_dir = Path(run_dir)
    found = [run_dir / n for n in ("model.pt", "model.npz") if (run_dir / n).is_file()]
    missing = [n for n in ("config.toml", "run.json") if not (run_dir / n).is_file()]
    missing += [] if found else ["model.pt or model.npz"]
    if missing:
        raise DataError(f"{run_dir} is not a genrec run directory (missing {', '.join(missing)}); "
                        f"create one with `genrec train MODEL --data NAME`")
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
    split = make_split(ds, cfg.data.split, cfg.data.ratios, cfg.data.seed, cfg.data.valid_ratio)
    # the content vectors are in the weights; only their width is needed to build the model
    content_dim = int(info.get("content", {}).get("dim", 0))
    model = _build_model(cfg, ds.n_items, content_dim, ds.n_users, **_user_cards(info),
                         **_id_sizes(info))
    weights = found[0]
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
    if hasattr(model, "set_graph"):
        model.set_graph(split.train_matrix())
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


def recommend(run: Run, raw_user: str, k: int = 10, fallback: str | None = None) -> dict[str, Any]:
    """Top-``k`` unseen items for a raw user id, with titles.

    Unknown users raise DataError unless ``fallback="popular"``, which serves the most popular
    training items and says so in the result.
    """
    ds = run.dataset
    known = run.split.known()
    try:
        u = ds.user_index(raw_user)
        scores = torch.as_tensor(_scorer(run, "all")(np.array([u]))).cpu().double().numpy()[0]
        seen = known[u].indices
        # a pair model scored a user without training items by popularity (_pair_scorer)
        used_fallback = bool(getattr(run.model, "input_kind", None) == "pairs"
                             and _cold_users(run.split)[u])
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


def recommend_all(run: Run, k: int = 10, batch_users: int = 1024) -> pl.DataFrame:
    """Top-``k`` unseen items for every user: columns user_id, rank (1..k), item_id, score.

    The same ranking as ``recommend`` (history masked, ties by item index), chunked by users."""
    ds, known = run.dataset, run.split.known()
    score_fn = _scorer(run, "all")
    ids, user_ids = ds.item_ids, ds.users.sort("user_idx")["user_id"].cast(pl.Utf8).to_numpy()
    parts = []
    for lo in range(0, ds.n_users, batch_users):
        users = np.arange(lo, min(lo + batch_users, ds.n_users))
        scores = torch.as_tensor(score_fn(users)).cpu().double().numpy()
        scores[:, 0] = -np.inf
        rows = known[users]
        scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        kk = min(k, scores.shape[1] - 1)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # score descending, then item index
        top, top_scores = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
        keep = np.isfinite(top_scores)
        parts.append(pl.DataFrame({
            "user_id": np.repeat(user_ids[users], kk)[keep.ravel()],
            "rank": np.tile(np.arange(1, kk + 1), len(users))[keep.ravel()],
            "item_id": ids[top].ravel()[keep.ravel()].astype(str),
            "score": top_scores.ravel()[keep.ravel()]}))
    return pl.concat(parts) if parts else pl.DataFrame(
        schema={"user_id": pl.Utf8, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64})
