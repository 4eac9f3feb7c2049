"""Run configuration: what ``genrec train`` reads from a TOML preset and ``--set`` overrides.

``RunConfig`` holds the model name, its own config fields (``params``, checked against the
model's config dataclass), and the data, evaluation and training settings; the resolved config
is saved with every run (``config.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.config import ConfigError, apply_overrides, from_dict, load_toml
from genrec.data.ingest import Filters
from genrec.data.splits import SPLITS
from genrec.registry import model_classes
from genrec.training.trainer import TrainConfig

__all__ = ["DataConfig", "EvalConfig", "RunConfig", "make_config"]


@dataclass
class DataConfig:
    name: str = "ml-100k"  # preset name, prepared dataset name, or dataset directory
    split: str = "loo"  # loo | ratio | temporal | fixed
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # ratio/temporal split shares
    seed: int = 2020  # seed of the random (ratio) split
    valid_ratio: float = 0.0  # share of train carved out as validation (fixed; ratio w/o valid)
    new_items: float = 0.0  # loo: share of items declared new (P1-new), drawn with ``seed``
    min_user: int = 0  # k-core: minimum interactions per user
    min_item: int = 0  # k-core: minimum interactions per item
    rating_threshold: float | None = None  # keep ratings >= this

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"data.split: {self.split!r} is not one of {list(SPLITS)}")
        if self.new_items and (self.split != "loo" or not 0 < self.new_items < 1):
            raise ConfigError(f"data.new_items: {self.new_items} needs data.split = \"loo\" and "
                              f"0 < new_items < 1 (P1-new declares e.g. 0.1 of the items new)")
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
