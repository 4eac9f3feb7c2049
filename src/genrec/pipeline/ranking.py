"""The recall -> rank pipeline on protocol P5: candidates, features, a ranker, one table of rows.

``train_pipeline(cfg, out)``:
  1. loads the recall runs the config names (trained by ``genrec train`` on a leave-one-out
     split with ``eval.refit = false``: P5's channels learn from the train part only, so their
     validation candidates never saw the label) and checks they share one split;
  2. candidates and features for the VALIDATION position (``genrec.pipeline.p5``,
     ``genrec.features.ranking``), label = the validation item;
  3. trains the ranker on them, early-stopping on a held-out share of the validation users
     (never on the test position): LightGBM lambdarank (group = user), or a neural ranker of
     kind "features" (din, dcnv2, mmoe, ranker) on ``FeatureBatch`` tensors;
  4. candidates and features for the TEST position, the ranker's scores, and the table: each
     channel alone (its own full ranking) and the pipeline, with P1's metrics, candidate recall,
     ILD@10 and the ranker's AUC / GAUC / logloss on the test candidate lists; with an active
     ``[rerank]`` (``genrec.pipeline.rerank``: MMR, per-category caps, unavailable items) the
     re-ranked pipeline is one more row. A channel that fails (raises) is reported in
     ``failed_channels`` and gets no row; the others still rank;
  5. writes the pipeline run directory atomically.

Pipeline run directory (marker ``pipeline.json``):

    pipeline.json     the resolved config, each recall run's path and content hash, the
                      dataset, ranker_state (LightGBM's Platt scaling, a neural ranker's
                      standardisation statistics), the report (defaults given per feature,
                      users without candidates from a channel, validation users whose item is
                      not among the candidates), timings
    metrics.json      {"rows": {row name: metrics}, "best_recall": name, "similarity": ILD's
                      item similarity, "failed_channels": {name: error}}
    per_user.parquet  user_idx and each row's per-user NDCG@10 (paired bootstrap comparisons)
    ranker.txt        the LightGBM booster (its best iteration), or
    ranker.pt         a neural ranker's state_dict

``evaluate_pipeline(run_dir)`` refuses a run whose recall runs moved or changed (their content
hash), then recomputes the test rows from the saved ranker.

Example:
    >>> cfg = load_pipeline_config("configs/pipeline_ml100k_p5.toml")   # doctest: +SKIP
    >>> rows = train_pipeline(cfg, Path("runs/pipeline_ml100k"))["rows"]  # doctest: +SKIP
    >>> rows["recall + lightgbm"]["NDCG@10"], rows["ease"]["NDCG@10"]     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl

from genrec import __version__
from genrec._files import atomic_dir, check_replaceable
from genrec.config import ConfigError, apply_overrides, from_dict, load_toml, to_dict
from genrec.data.dataset import DataError
from genrec.features.ranking import FeatureConfig, FeatureTable, build_features
from genrec.pipeline.p5 import (SAMPLERS, candidates, full_ranking, ranker_metrics,
                                sampled_negatives, stage_targets)
from genrec.pipeline.recall import FALLBACK, Channel, popularity_channel, run_channel
from genrec.pipeline.rerank import ItemSimilarity, RerankConfig, ild, rerank, unavailable_items

__all__ = ["ChannelConfig", "LightGBMConfig", "RankerConfig", "PipelineConfig", "RANKERS",
           "MARKER", "LoadedPipeline", "load_pipeline_config", "train_pipeline", "load_pipeline",
           "evaluate_pipeline", "run_hash", "feature_batches", "standardiser", "score_table",
           "rerank_parts", "item_vectors", "failing_channel"]

RANKERS = ("lightgbm", "din", "dcnv2", "mmoe", "ranker")
MARKER = "pipeline.json"
_RUN_FILES = ("config.toml", "run.json", "model.pt", "model.npz")


# ---- config -------------------------------------------------------------------------------------
@dataclass
class ChannelConfig:
    name: str
    """Row and feature name; "popularity" is the train-count channel and needs no run."""
    run: str = ""
    """The recall run directory (``genrec train ... --set eval.refit=false``)."""
    k: int = 100
    """Candidates this channel contributes per user."""


@dataclass
class LightGBMConfig:
    n_estimators: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.9
    early_stopping: int = 30
    """Stop after this many rounds without a better held-out NDCG@10."""
    threads: int = 1


@dataclass
class RankerConfig:
    model: str = "lightgbm"
    """lightgbm | din | dcnv2 | mmoe | ranker (the neural ones are of kind "features")."""
    holdout: float = 0.2
    """Share of the validation users held out for early stopping."""
    negatives: int = 0
    """Extra negatives per training user beside its candidates (1:N): items outside its
    candidates and history, drawn by ``negative_sampling``, label 0; the held-out users keep
    their candidate lists only (``genrec.pipeline.p5.sampled_negatives``)."""
    negative_sampling: str = "uniform"
    """uniform | popularity (train counts)."""
    seed: int = 42
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    params: dict[str, Any] = field(default_factory=dict)
    """A neural ranker's own config fields (sizes); the data-derived ones are filled in."""
    train: dict[str, Any] = field(default_factory=dict)
    """A neural ranker's training settings (``genrec.training.trainer.TrainConfig`` fields;
    train.metric defaults to GAUC on the held-out validation users)."""

    def validate(self) -> None:
        if self.model not in RANKERS:
            raise ConfigError(f"ranker.model {self.model!r} is not one of {', '.join(RANKERS)}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"ranker.holdout must be in (0, 1), got {self.holdout}")
        if self.negatives < 0 or self.negative_sampling not in SAMPLERS:
            raise ConfigError(f"ranker.negatives must be >= 0 and ranker.negative_sampling one of "
                              f"{', '.join(SAMPLERS)}; got {self.negatives} and "
                              f"{self.negative_sampling!r}")


@dataclass
class PipelineConfig:
    channels: list[ChannelConfig]
    features: FeatureConfig = field(default_factory=FeatureConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])

    def validate(self) -> None:
        names = [c.name for c in self.channels]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"pipeline channels need unique names, got {names}")
        for c in self.channels:
            if c.k < 1 or (c.name != FALLBACK and not c.run):
                raise ConfigError(f"channel {c.name!r}: needs k >= 1 and, unless it is "
                                  f"{FALLBACK!r}, run = a recall run directory")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be positive cut-offs, got {self.ks}")


def load_pipeline_config(path: str | Path, sets: list[str] | None = None) -> PipelineConfig:
    """The pipeline config of a TOML file with ``a.b=value`` overrides (unknown keys and feature
    names fail here)."""
    return from_dict(PipelineConfig, apply_overrides(load_toml(Path(path)), list(sets or [])))


# ---- recall runs --------------------------------------------------------------------------------
def run_hash(run_dir: str | Path) -> str:
    """A short SHA-256 of a run's config, run.json and weights: equal iff the run is unchanged."""
    h = hashlib.sha256()
    for name in _RUN_FILES:
        f = Path(run_dir) / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _load_runs(cfg: PipelineConfig) -> dict[str, Any]:
    from genrec.runs import load_run, model_kind  # the recall runs are genrec runs

    runs = {}
    for c in cfg.channels:
        if c.name == FALLBACK and not c.run:
            continue
        run = load_run(c.run)
        if run.config.eval.refit and not model_kind(run.config.model).trains:
            raise ConfigError(f"recall run {c.run} was refit on train + validation (eval.refit = "
                              f"true), so its validation candidates saw the labels; train it with "
                              f"--set eval.refit=false for P5")
        if run.split.name != "loo":
            raise ConfigError(f"recall run {c.run} uses the {run.split.name!r} split; P5 is "
                              f"leave-one-out: train it with data.split = 'loo'")
        runs[c.name] = run
    if not runs:
        raise ConfigError("a pipeline needs at least one recall run (the split comes from it)")
    return runs


def _check_recorded_runs(recorded: dict[str, dict[str, str]]) -> None:
    for name, rec in recorded.items():
        path = Path(rec["path"])
        if not path.is_dir():
            raise DataError(f"recall run {name!r} is not at {path} any more (moved or deleted); "
                            f"put it back, or train the pipeline again with its new path")
        now = run_hash(path)
        if now != rec["hash"]:
            raise DataError(f"recall run {name!r} at {path} changed since the pipeline was trained "
                            f"(hash {rec['hash']}, now {now}); train the pipeline again")


def failing_channel(name: str, error: Exception) -> Channel:
    """A channel whose every top-k raises ``error`` (it could not even be built)."""
    def topk(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise error

    return Channel(name, topk)


def _channels(cfg: PipelineConfig, runs: dict[str, Any], split: Any, stage: str
              ) -> list[tuple[Channel, int]]:
    """Each configured channel at ``stage``; one that cannot be built fails on use, where
    ``p5.union`` reports it and the others still rank."""
    out = []
    for c in cfg.channels:
        try:
            ch = (popularity_channel(split, stage) if c.name not in runs
                  else run_channel(runs[c.name], split, stage, name=c.name))
        except Exception as e:  # noqa: BLE001 - any error: reported, the other channels rank
            ch = failing_channel(c.name, e)
        out.append((ch, c.k))
    return out


def _stage_table(cfg: PipelineConfig, runs: dict[str, Any], stage: str
                 ) -> tuple[FeatureTable, dict[str, str]]:
    """Candidates and point-in-time features of every user's ``stage`` position, and the
    channels that failed (name -> error)."""
    run = next(iter(runs.values()))
    split, ds = run.split, run.dataset
    failed: dict[str, str] = {}
    cands = candidates(_channels(cfg, runs, split, stage), split, stage, failures=failed)
    # a channel that lists nothing for a user leaves its defaults there; the report counts it
    best = cands.group_by("user_idx").agg(pl.col(f"ch_{c.name}_rank").min() for c in cfg.channels)
    silent = {f"users_without_{c.name}_candidates": int((best[f"ch_{c.name}_rank"] > c.k).sum())
              for c in cfg.channels}
    sampled = stage == "valid" and cfg.ranker.negatives > 0
    if sampled:  # 1:N extra negatives; the column "sampled" marks them (kept off the hold-out)
        extra = sampled_negatives(cands, split, stage, {c.name: c.k for c in cfg.channels},
                                  cfg.ranker.negatives, cfg.ranker.negative_sampling,
                                  cfg.ranker.seed)
        cands = pl.concat([cands.with_columns(pl.lit(0, pl.Int8).alias("sampled")),
                           extra.with_columns(pl.lit(1, pl.Int8).alias("sampled"))]
                          ).sort(["user_idx", "item_idx"])
    events = split.train if stage == "valid" else pl.concat([split.train, split.valid])
    table = build_features(cands, events, ds.items, cfg.features, split.n_items,
                           item_vectors(cfg, ds))
    if sampled:  # the frame keeps the candidates' row order
        table = replace(table, frame=table.frame.with_columns(cands["sampled"]))
    table.defaults.update(silent)
    return table, failed


def item_vectors(cfg: PipelineConfig, ds: Any) -> np.ndarray | None:
    """The item content vectors ``content_sim`` needs (None when it is not a feature)."""
    if "content_sim" not in cfg.features.names:
        return None
    from genrec.features.store import load_vectors

    return load_vectors(ds, cfg.features.content)[0]


# ---- LightGBM -----------------------------------------------------------------------------------
def _matrix(table: FeatureTable) -> np.ndarray:
    return table.frame.select(*table.dense, *table.sparse).to_numpy().astype(np.float32)


def _groups(users: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal user ids (rows are sorted by user)."""
    return np.diff(np.flatnonzero(np.r_[True, users[1:] != users[:-1], True]))


def _fit_lightgbm(cfg: RankerConfig, train: FeatureTable, hold: FeatureTable) -> Any:
    """A lambdarank booster (group = user), early-stopped on the held-out users' NDCG@10."""
    import lightgbm as lgb

    g = cfg.lightgbm
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10],
              "learning_rate": g.learning_rate, "num_leaves": g.num_leaves,
              "min_data_in_leaf": g.min_child_samples, "feature_fraction": g.feature_fraction,
              "num_threads": g.threads, "seed": cfg.seed, "deterministic": True, "verbose": -1}
    categorical = list(range(len(train.dense), len(train.dense) + len(train.sparse)))

    def dataset(t: FeatureTable, reference: Any = None) -> Any:
        return lgb.Dataset(_matrix(t), t.frame["label"].to_numpy(),
                           group=_groups(t.frame["user_idx"].to_numpy()),
                           categorical_feature=categorical, reference=reference,
                           free_raw_data=False)

    fit_set = dataset(train)
    return lgb.train(params, fit_set, num_boost_round=g.n_estimators,
                     valid_sets=[dataset(hold, fit_set)],
                     callbacks=[lgb.early_stopping(g.early_stopping, verbose=False)])


def _platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * score + b), fitted on held-out validation rows: lambdarank scores
    are not probabilities, and logloss needs some."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(scores.reshape(-1, 1), labels)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


# ---- neural rankers (kind "features") -----------------------------------------------------------
def standardiser(table: FeatureTable) -> dict[str, list[float]]:
    """Mean and standard deviation (1 where constant) of each dense column over ``table``, the
    training rows."""
    x = table.frame.select(table.dense).to_numpy().astype(np.float64)
    sd = x.std(0)
    return {"mean": x.mean(0).tolist(), "sd": np.where(sd > 0, sd, 1.0).tolist()}


def feature_batches(table: FeatureTable, stats: dict[str, list[float]], batch_size: int,
                    shuffle_seed: int | None = None, labels: tuple[str, ...] = ("label",)
                    ) -> Iterator[Any]:
    """``FeatureBatch`` tensors of ``table`` (the contract in genrec.data.batches): dense
    standardised with ``stats``, sparse ids, the user's history, groups = user_idx, one label
    column per task (``labels``: columns of the frame)."""
    import torch

    from genrec.data.batches import FeatureBatch

    f = table.frame
    dense = (f.select(table.dense).to_numpy().astype(np.float64) - np.asarray(stats["mean"])) \
        / np.asarray(stats["sd"])
    sparse = f.select(table.sparse).to_numpy().astype(np.int64) if table.sparse else \
        np.zeros((f.height, 0), dtype=np.int64)
    users = f["user_idx"].to_numpy().astype(np.int64)
    hist_row = np.searchsorted(table.users, users)
    order = np.arange(f.height) if shuffle_seed is None else \
        np.random.default_rng(shuffle_seed).permutation(f.height)
    targets = f.select(labels).to_numpy().astype(np.float32)
    items = f["item_idx"].to_numpy().astype(np.int64)
    for lo in range(0, f.height, batch_size):
        r = order[lo:lo + batch_size]
        yield FeatureBatch(dense=torch.from_numpy(dense[r].astype(np.float32)),
                           sparse=torch.from_numpy(sparse[r]),
                           history=torch.from_numpy(table.history[hist_row[r]]),
                           target=torch.from_numpy(items[r]),
                           labels=torch.from_numpy(targets[r]),
                           groups=torch.from_numpy(users[r]))


def _features_kind() -> Any:
    from genrec.runs.kinds import features  # fit_features_model, score_features_model

    return features


def _neural_model(cfg: PipelineConfig, n_dense: int, sparse_cards: list[int], n_items: int
                  ) -> Any:
    from genrec.registry import model_classes

    model_cls, config_cls = model_classes(cfg.ranker.model)
    data = {"n_items": n_items, "n_dense": n_dense, "sparse_cards": sparse_cards,
            "n_tasks": 1, "max_len": cfg.features.max_len, **cfg.ranker.params}
    return model_cls(from_dict(config_cls, data, prefix="ranker.params."))


def _neural_train_config(cfg: PipelineConfig) -> Any:
    from genrec.training.trainer import TrainConfig

    return from_dict(TrainConfig, {"seed": cfg.ranker.seed, "metric": "GAUC", **cfg.ranker.train},
                     prefix="ranker.train.")


# ---- train and evaluate -------------------------------------------------------------------------
def _split_users(table: FeatureTable, share: float, seed: int) -> tuple[FeatureTable, FeatureTable]:
    """The training table cut by user: a seeded ``share`` of users held out for early stopping."""
    users = table.frame["user_idx"].unique().sort().to_numpy()
    held = np.random.default_rng(seed).random(len(users)) < share
    in_held = pl.col("user_idx").is_in(users[held].tolist())
    return (replace(table, frame=table.frame.filter(~in_held)),
            replace(table, frame=table.frame.filter(in_held)))


def _with_positive(table: FeatureTable) -> tuple[FeatureTable, int]:
    """Only the users whose label is among their candidates (the others teach a ranker
    nothing), and how many were dropped."""
    users = table.frame.filter(pl.col("label") == 1)["user_idx"].unique()
    n_all = table.frame["user_idx"].n_unique()
    kept = table.frame.filter(pl.col("user_idx").is_in(users.to_list()))
    return replace(table, frame=kept), n_all - users.len()


def score_table(cfg: PipelineConfig, ranker: Any, test: FeatureTable, state: dict[str, Any]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, probabilities) of a feature table's candidate rows (``state``: the run's
    ranker_state)."""
    if cfg.ranker.model == "lightgbm":
        raw = ranker.predict(_matrix(test))
        a, b = state["platt"]
        return raw, _sigmoid(a * raw + b)
    probs = _features_kind().score_features_model(
        ranker, feature_batches(test, state["standardise"], 4096))[:, 0]
    return probs, probs


def rerank_parts(cfg: PipelineConfig, ds: Any) -> tuple[ItemSimilarity, np.ndarray]:
    """The re-ranker's item similarity (also ILD's) and the unavailable items' indices."""
    vectors = None
    if cfg.rerank.content:
        from genrec.features.store import load_vectors

        vectors = load_vectors(ds, cfg.rerank.content)[0]
    sim = ItemSimilarity.of(ds.items, ds.n_items, cfg.features.category_column, vectors,
                            cfg.rerank.content)
    return sim, unavailable_items(cfg.rerank, ds.item_ids)


def _rows(cfg: PipelineConfig, runs: dict[str, Any], test: FeatureTable, scores: np.ndarray,
          probs: np.ndarray, failed: dict[str, str]) -> tuple[dict[str, Any], pl.DataFrame]:
    """The P5 table (each channel alone, by its full ranking, recall + the ranker, and that
    re-ranked when ``cfg.rerank`` is active) with ILD@K beside HR/NDCG, and every row's per-user
    NDCG@K (K = 10 when listed) for paired comparisons. Channels in ``failed`` get no row."""
    from genrec.evaluation import evaluate
    from genrec.runs import scorer

    run = next(iter(runs.values()))
    split = run.split
    ks = tuple(cfg.ks)
    K = 10 if 10 in ks else ks[0]
    key, diversity = f"NDCG@{K}", f"ILD@{K}"
    sim, unavailable = rerank_parts(cfg, run.dataset)
    rows: dict[str, dict[str, float]] = {}
    per_user: dict[str, np.ndarray] = {}
    counts = split.item_counts()
    n_users = stage_targets(split, "test").height
    for c in cfg.channels:
        if c.name in failed:
            continue
        score_fn = (lambda u: np.tile(counts, (len(u), 1))) if c.name not in runs \
            else scorer(runs[c.name], "test")
        res = evaluate(score_fn, split.history("test"), split.targets("test"), ks=ks, auc=False)
        rank = f"ch_{c.name}_rank"
        listed = test.frame.filter((pl.col("label") == 1) & (pl.col(rank) <= c.k))
        own_top = test.frame.filter(pl.col(rank) <= min(c.k, K))
        rows[c.name] = {**res.metrics, "candidate_recall": listed.height / max(n_users, 1),
                        diversity: ild(own_top, -own_top[rank].to_numpy(), sim, K)}
        per_user[c.name] = res.per_user[key]
    best = max(rows, key=lambda r: rows[r][key])
    name = f"recall + {cfg.ranker.model}"
    res = full_ranking(test.frame, scores, split, "test", ks)
    rows[name] = {**res.metrics, **ranker_metrics(test.frame, scores, probs),
                  diversity: ild(test.frame, scores, sim, K)}
    per_user[name], users = res.per_user[key], res.users
    if cfg.rerank.active:
        frame, reranked = rerank(test.frame, scores, cfg.rerank, sim, unavailable)
        name = f"{name} + {cfg.rerank.method if cfg.rerank.method != 'none' else 'filters'}"
        res = full_ranking(frame, reranked, split, "test", ks)
        rows[name] = {**res.metrics, diversity: ild(frame, reranked, sim, K)}
        per_user[name] = res.per_user[key]
    table = pl.DataFrame({"user_idx": users, **{f"{r} {key}": v for r, v in per_user.items()}})
    return {"rows": rows, "best_recall": best, "similarity": sim.source,
            "failed_channels": failed}, table


def train_pipeline(cfg: PipelineConfig, out: Path | None = None) -> dict[str, Any]:
    """Train the P5 pipeline of ``cfg`` and write it to ``out``; returns pipeline.json's content
    with the metrics (see the module docstring)."""
    if out is not None:
        check_replaceable(out, MARKER, "pipeline run")
    t0 = time.perf_counter()
    runs = _load_runs(cfg)
    recorded = {c.name: {"path": str(Path(c.run).resolve()), "hash": run_hash(c.run)}
                for c in cfg.channels if c.name in runs}
    split = next(iter(runs.values())).split
    valid_table, failed_valid = _stage_table(cfg, runs, "valid")
    valid, dropped = _with_positive(valid_table)
    if valid.frame.height == 0:
        raise DataError("no validation target is among its user's candidates: the ranker has "
                        "nothing to learn; raise the channels' k")
    fit_part, hold = _split_users(valid, cfg.ranker.holdout, cfg.ranker.seed)
    if "sampled" in hold.frame.columns:  # early stopping sees what the test position will
        hold = replace(hold, frame=hold.frame.filter(pl.col("sampled") == 0))
    if fit_part.frame.height == 0 or hold.frame.height == 0:
        raise DataError(f"{valid.frame['user_idx'].n_unique()} validation users have their item "
                        f"among the candidates: too few to train and hold out "
                        f"{cfg.ranker.holdout:.0%} of them; raise the channels' k or "
                        f"change ranker.holdout")
    t1 = time.perf_counter()
    state: dict[str, Any] = {}  # what scoring needs beside the weights
    if cfg.ranker.model == "lightgbm":
        ranker = _fit_lightgbm(cfg.ranker, fit_part, hold)
        state["platt"] = _platt(ranker.predict(_matrix(hold)), hold.frame["label"].to_numpy())
    else:
        kind, train_cfg = _features_kind(), _neural_train_config(cfg)
        state["standardise"] = stats = standardiser(fit_part)
        state["shape"] = {"n_dense": len(fit_part.dense), "sparse_cards": fit_part.sparse_cards}
        ranker = _neural_model(cfg, len(fit_part.dense), fit_part.sparse_cards, split.n_items)
        epochs = itertools.count(cfg.ranker.seed)  # a new row order every epoch
        kind.fit_features_model(
            ranker, lambda: feature_batches(fit_part, stats, train_cfg.batch_size, next(epochs)),
            lambda: feature_batches(hold, stats, 4096), train_cfg)
    fit_seconds = time.perf_counter() - t1
    test, failed = _stage_table(cfg, runs, "test")
    scores, probs = score_table(cfg, ranker, test, state)
    metrics, per_user = _rows(cfg, runs, test, scores, probs, failed)
    info = {"genrec_version": __version__, "config": to_dict(cfg), "recall_runs": recorded,
            "dataset": next(iter(runs.values())).dataset.name,
            "split": split.summary(), "ranker_state": state,
            "report": {"valid_users_without_positive": dropped,
                       "train_users": fit_part.frame["user_idx"].n_unique(),
                       "holdout_users": hold.frame["user_idx"].n_unique(),
                       "train_rows": fit_part.frame.height, "test_rows": test.frame.height,
                       "dense": valid.dense, "sparse": valid.sparse,
                       "defaults_valid": valid.defaults, "defaults_test": test.defaults,
                       "failed_channels_valid": failed_valid, "failed_channels_test": failed},
            "fit_seconds": round(fit_seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3)}
    if out is not None:
        with atomic_dir(out, marker=MARKER, what="pipeline run") as tmp:
            if cfg.ranker.model == "lightgbm":
                ranker.save_model(str(tmp / "ranker.txt"), num_iteration=ranker.best_iteration)
            else:
                import torch

                torch.save(ranker.state_dict(), tmp / "ranker.pt")
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
            per_user.write_parquet(tmp / "per_user.parquet")
            (tmp / MARKER).write_text(json.dumps(info, indent=2))
    return {**info, **metrics}


@dataclass
class LoadedPipeline:
    """A saved pipeline run, reloaded: what scoring candidates needs."""
    cfg: PipelineConfig
    info: dict[str, Any]   # pipeline.json
    runs: dict[str, Any]   # channel name -> its recall Run
    ranker: Any            # a LightGBM Booster or a neural ranker in eval mode


def load_pipeline(run_dir: str | Path) -> LoadedPipeline:
    """Reload a pipeline run directory (refused when a recall run moved or changed since it was
    trained, or when the run is damaged)."""
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / MARKER).read_text())
    except (OSError, ValueError):
        raise DataError(f"{run_dir} is not a pipeline run (no readable {MARKER}); create one with "
                        f"`genrec pipeline train CONFIG --out {run_dir}`") from None
    _check_recorded_runs(info["recall_runs"])
    cfg = from_dict(PipelineConfig, info["config"])
    weights = run_dir / ("ranker.txt" if cfg.ranker.model == "lightgbm" else "ranker.pt")
    if not weights.is_file():
        raise DataError(f"{run_dir} has no {weights.name}: the pipeline run is damaged; train it "
                        f"again with `genrec pipeline train`")
    runs = _load_runs(cfg)
    if cfg.ranker.model == "lightgbm":
        import lightgbm as lgb

        ranker = lgb.Booster(model_file=str(weights))
    else:
        import torch

        shape = info["ranker_state"]["shape"]
        ranker = _neural_model(cfg, shape["n_dense"], shape["sparse_cards"],
                               next(iter(runs.values())).split.n_items)
        ranker.load_state_dict(torch.load(weights, weights_only=True))
        ranker.eval()
    return LoadedPipeline(cfg, info, runs, ranker)


def evaluate_pipeline(run_dir: str | Path) -> dict[str, Any]:
    """Recompute the test rows of a saved pipeline run (refused when a recall run moved or
    changed since it was trained)."""
    p = load_pipeline(run_dir)
    test, failed = _stage_table(p.cfg, p.runs, "test")
    scores, probs = score_table(p.cfg, p.ranker, test, p.info["ranker_state"])
    return _rows(p.cfg, p.runs, test, scores, probs, failed)[0]
