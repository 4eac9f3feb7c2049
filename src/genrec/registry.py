"""One explicit table: model name -> (module, model class, config class), imported lazily.

Adding a model of an existing input kind is one line here plus its own file under
``genrec.models``, whose class declares the kind (``kind = "sequence"``); the adapter of each
kind is found through ``genrec.runs.kinds.KINDS`` (a new kind: one adapter file and one line
there).
"""

from __future__ import annotations

import importlib
from typing import Any

from genrec.config import ConfigError

__all__ = ["MODELS", "model_classes"]

MODELS: dict[str, tuple[str, str, str]] = {
    "popularity": ("genrec.models.popularity", "Popularity", "PopularityConfig"),
    "itemcf": ("genrec.models.itemcf", "ItemCF", "ItemCFConfig"),
    "ease": ("genrec.models.ease", "EASE", "EASEConfig"),
    "gfcf": ("genrec.models.gfcf", "GFCF", "GFCFConfig"),
    "sasrec": ("genrec.models.sasrec", "SASRec", "SASRecConfig"),
    "hstu": ("genrec.models.hstu", "HSTU", "HSTUConfig"),
    "genius": ("genrec.models.genius", "Genius", "GeniusConfig"),
    "tiger": ("genrec.models.tiger", "TIGER", "TIGERConfig"),
    "semid": ("genrec.models.semid", "SemID", "SemIDConfig"),
    "two_tower": ("genrec.models.two_tower", "TwoTower", "TwoTowerConfig"),
    "bpr": ("genrec.models.bpr", "BPR", "BPRConfig"),
    "lightgcn": ("genrec.models.lightgcn", "LightGCN", "LightGCNConfig"),
    "din": ("genrec.models.din", "DIN", "DINConfig"),
    "dcnv2": ("genrec.models.dcnv2", "DCNV2", "DCNV2Config"),
    "mmoe": ("genrec.models.mmoe", "MMoE", "MMoEConfig"),
    "ranker": ("genrec.models.ranker", "Ranker", "RankerConfig"),
}


def model_classes(name: str) -> tuple[type, type]:
    """(Model class, Config class) for a registered model name."""
    try:
        module, model, config = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None
    mod: Any = importlib.import_module(module)
    return getattr(mod, model), getattr(mod, config)
