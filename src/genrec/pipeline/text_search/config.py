"""The text-search run's config: ``TextSearchConfig`` and its parts, and ``load_config``.

A run is configured by layers: this module's defaults (the generator's training settings differ
from ``TrainConfig``'s), then a TOML preset (``configs/text2items_beauty.toml``) or a dataset
name, then ``--set`` overrides (``genrec.config.from_layers``). The resolved config is saved as
the run's ``config.toml``, which ``TextSearch.load`` reads back.

Example:
    >>> cfg = load_config("amazon-beauty", ["ids.levels=4", "ranker.enabled=false"])
    >>> cfg.ids.file_name(), cfg.train.lr
    ('minilm-rq_kmeans-4x256-s0', 0.001)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.config import ConfigError, from_dict, from_layers, load_toml, to_dict
from genrec.models.text2items import Text2ItemsConfig
from genrec.pipeline.human_baselines import BiEncoderConfig
from genrec.pipeline.human_queries import HumanQueryConfig
from genrec.pipeline.text_queries import QueryConfig
from genrec.training.trainer import TrainConfig

__all__ = ["IdsConfig", "RankerConfig", "SearchEvalConfig", "TextSearchConfig", "load_config"]


@dataclass
class IdsConfig:
    vectors: str = "minilm"     # item vectors to quantise (made by `genrec embed items` if absent;
    #                             with people's queries: the encoder of their item text)
    method: str = "rq_kmeans"   # rq_kmeans | rq_vae
    levels: int = 3             # C codebook levels (a dedup token is added)
    codebook_size: int = 256    # K codes per level
    seed: int = 0               # k-means seed
    name: str = ""              # file name under <dataset>/semantic_ids; "" = from the above

    def file_name(self) -> str:
        auto = f"{self.vectors}-{self.method}-{self.levels}x{self.codebook_size}-s{self.seed}"
        return self.name or auto


@dataclass
class RankerConfig:
    enabled: bool = True        # train the cross-encoder (generator+ce needs it)
    train_queries: int = 2000   # training queries whose generator candidates give hard negatives
    candidates: int = 20        # generator candidates mined per training query
    positives: int = 4          # training items per query given as positives (seeded sample)
    depth: int = 30             # serving: generator candidates the cross-encoder re-scores
    # the CE's logits interpolated with the generator's order (cross_encoder.fused_scores):
    # z(logit) - fuse_weight * ln(1 + rank); 0 = the CE alone. With choose_fuse_weight the
    # training picks it on the validation queries (and writes it into the run's config.toml)
    fuse_weight: float = 0.0
    choose_fuse_weight: bool = True
    params: dict[str, Any] = field(default_factory=dict)  # CrossEncoderConfig fields

    def validate(self) -> None:
        if not self.fuse_weight >= 0:
            raise ConfigError(f"ranker.fuse_weight must be >= 0, got {self.fuse_weight}")
        if min(self.train_queries, self.candidates, self.positives, self.depth) < 1:
            raise ConfigError(f"ranker: train_queries, candidates, positives and depth must be "
                              f">= 1, got {self}")


@dataclass
class SearchEvalConfig:
    k: int = 10                 # cut-off of Recall / NDCG / HeldOutRecall
    valid_queries: int = 500    # fixed seeded sample of validation queries (selection only)
    valid_beam: int = 20        # beam of the validation passes (speed; serving uses generator's)
    test_queries: int = 200     # test queries scored into metrics.json (the benchmark does more)
    seed: int = 0               # query samples

    def validate(self) -> None:
        if min(self.k, self.valid_queries, self.valid_beam) < 1 or self.test_queries < 0:
            raise ConfigError("eval: k, valid_queries, valid_beam must be >= 1, test_queries >= 0")
        if self.valid_beam < self.k:
            raise ConfigError(f"eval.valid_beam ({self.valid_beam}) must be >= eval.k ({self.k})")


def _train_defaults() -> TrainConfig:
    return TrainConfig(epochs=30, lr=1e-3, batch_size=128, warmup_steps=100, patience=3,
                       threads=1, max_minutes=15.0, metric="NDCG@10", seed=0)


@dataclass
class TextSearchConfig:
    data: str = "amazon-beauty"      # dataset preset, prepared name or directory
    text_fields: tuple[str, ...] = ()  # item text columns; () = every text column present
    queries: QueryConfig = field(default_factory=QueryConfig)
    # datasets of people's queries (lastfm-tags: T1, tomt-books: T2) read their own queries and
    # item text instead (genrec.pipeline.human_queries); ``queries`` and ``text_fields`` then
    # do not apply
    human: HumanQueryConfig = field(default_factory=HumanQueryConfig)
    # DSI "indexing": the generator also trains on one (item text -> item) pair per item, so an
    # item no training query names is still learnable
    index_items: bool = False
    # people's queries only: first fine-tune MiniLM on the training (query, item) pairs as a
    # bi-encoder (``encoder``: genrec.pipeline.human_baselines.finetune_biencoder); it then
    # embeds the item text the semantic IDs are built from and is the generator's frozen
    # encoder (saved in the run as encoder/), so the code prior starts from a trained retriever
    finetune_encoder: bool = False
    encoder: BiEncoderConfig = field(default_factory=BiEncoderConfig)
    ids: IdsConfig = field(default_factory=IdsConfig)
    generator: Text2ItemsConfig = field(default_factory=Text2ItemsConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    eval: SearchEvalConfig = field(default_factory=SearchEvalConfig)

    def validate(self) -> None:
        if self.finetune_encoder:
            self.encoder.validate()
            if self.generator.encoder != "minilm":
                raise ConfigError("finetune_encoder needs generator.encoder = 'minilm' (the "
                                  "fine-tuned MiniLM becomes the generator's encoder)")
        if self.ranker.enabled and self.ranker.params:
            try:
                from genrec.models.cross_encoder import CrossEncoderConfig
            except ImportError:  # checked again, loudly, when the ranker is trained
                return
            from_dict(CrossEncoderConfig, self.ranker.params, prefix="ranker.params.")


def load_config(spec: str | Path, sets: list[str] = ()) -> TextSearchConfig:
    """A TextSearchConfig from a TOML preset path or a dataset name, plus ``--set`` overrides.

    Layered: this file's defaults (e.g. the generator's train settings, which differ from
    TrainConfig's), then the preset, then ``sets``: ``--set train.lr=3e-4`` keeps the rest of
    ``train`` as it was."""
    p = Path(spec)
    data = load_toml(p) if p.suffix == ".toml" or p.is_file() else {"data": str(spec)}
    defaults = {k: v for k, v in to_dict(TextSearchConfig()).items() if isinstance(v, dict)}
    defaults["ranker"].pop("params")  # CrossEncoderConfig's own defaults apply
    return from_layers(TextSearchConfig, data, sets, defaults=defaults)
