"""Model assembly: the model of a RunConfig, built from the data and given the data it needs.

``build_model(cfg, ds, split) -> (model, info)`` is how ``genrec.runs.train`` (and benchmarks)
make a model: the config fields that come from the data are filled, the weights are seeded
(``train.seed``), and data the model keeps in its weights is handed over. What a model needs is
read from the fields its config declares, never guessed from the model:

    n_items, n_users      always / when declared: counts of the dataset
    item_repr, content    item_repr "content" | "gated" (sequence models), fusion != "none"
      -> content_dim      (lightgcn) or text_weight > 0 (gfcf): item vectors from
                          ``params.content`` (``content_vectors``),
                          aligned to item_idx and stored in the weights (``set_content``); with
                          ``count_gate`` the gate also gets each item's training count
    experts, content      genius: its content expert is fed as above when ``content`` is set,
    experts, image        its image expert from ``params.image`` (same readers) -> image_dim,
      -> image_dim        into the weights (``set_image``)
    user_features         categorical users.parquet columns (two_tower), coded here
      -> user_cards       (``user_feature_codes``: 0 = missing) into the weights
    id_sizes              semantic IDs (tiger) from ``params.semantic_ids`` into the weights
    logit_adjust, loss    each item's training count (``set_item_counts``) for logit_adjust > 0
                          (sasrec, hstu) or loss = "catalogue" (semid: unseen items sit out)

plus what the model's kind attaches (``genrec.runs.kinds``: a pair model's training graph).
``info`` records what was read (content, user_features, semantic_ids) for run.json, so that
``model_shell(cfg, ds, info)`` rebuilds the same shapes on load without any vector, users or
semantic-ID file: the weights bring them.

Sequence models with ``params.item_repr = "content" | "gated"`` get item content vectors from
``params.content``: an encoder name (``<dataset>/item_vectors/<name>.parquet``, written by
``genrec embed items``) or a .parquet/.npz/.npy file keyed by raw item id. Items without a vector
are counted in run.json (``content.n_without_vector``); see ``genrec.models._layers`` for what
the model does with them.

Example:
    >>> cfg = make_config("sasrec", ["data.name=ml-100k"])                    # doctest: +SKIP
    >>> ds = load_dataset(cfg.data.name); split = make_split(ds, "loo")
    >>> model, info = build_model(cfg, ds, split)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from genrec.config import ConfigError, from_dict
from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.registry import model_classes
from genrec.runs.config import RunConfig
from genrec.runs.kinds import model_kind

__all__ = ["build_model", "model_shell", "content_vectors", "user_feature_codes", "set_content",
           "set_item_counts"]


def _declared(config: Any, name: str, default: Any = None) -> Any:
    """Field ``name`` of a model config, or ``default`` when this model's config has no such
    field: the fields a config declares are its contract with the builder (STYLE #2)."""
    names = {f.name for f in dataclasses.fields(config)}
    return getattr(config, name) if name in names else default


def _model_config(cfg: RunConfig) -> Any:
    return from_dict(model_classes(cfg.model)[1], dict(cfg.params))


def _construct(cfg: RunConfig, ds: Dataset, content_dim: int = 0, **data_fields: Any) -> Any:
    """The model with the config fields that come from the data filled in."""
    model_cls, config_cls = model_classes(cfg.model)
    filled = {"n_items": ds.n_items, **({"content_dim": content_dim} if content_dim else {}),
              **data_fields}
    if "n_users" in {f.name for f in dataclasses.fields(config_cls)}:  # user-embedding models
        filled["n_users"] = ds.n_users
    return model_cls(from_dict(config_cls, {**cfg.params, **filled}))


def _content_spec(model_cfg: Any) -> tuple[str, str]:
    """(item_repr, content) from the model's config; ("id", "") for models without them."""
    if _declared(model_cfg, "fusion", "none") != "none":  # lightgcn's semantic fusion
        return "fusion", model_cfg.content
    if _declared(model_cfg, "text_weight", 0.0) > 0:  # gfcf's text term
        return "text", model_cfg.content
    if "content" in _declared(model_cfg, "experts", ()):  # genius's content expert
        return ("experts", model_cfg.content) if model_cfg.content else ("id", "")
    return _declared(model_cfg, "item_repr", "id"), _declared(model_cfg, "content", "")


def set_content(model: Any, vectors: torch.Tensor, present: torch.Tensor, split: Split) -> None:
    """Give ``model`` its content vectors, and each item's training count when its gate uses it."""
    if _declared(model.config, "count_gate", False):
        model.set_content(vectors, present, counts=torch.from_numpy(split.item_counts()))
    else:
        model.set_content(vectors, present)


def set_item_counts(model: Any, split: Split) -> None:
    """Each item's training count, for a model whose loss uses it (``logit_adjust``, or
    semid's ``loss = "catalogue"``); models without either are left as they are."""
    if _declared(model.config, "logit_adjust", 0) \
            or _declared(model.config, "loss") == "catalogue":
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


def _image_dim(info: dict[str, Any]) -> dict[str, Any]:
    """Config fields an image-expert model (genius) needs before its weights load."""
    return {"image_dim": info["image"]["dim"]} if "image" in info else {}


def _id_sizes(info: dict[str, Any]) -> dict[str, Any]:
    """Config fields a semantic-ID model (tiger) needs before its weights load."""
    return {"id_sizes": info["semantic_ids"]["sizes"]} if "semantic_ids" in info else {}


_VECTOR_FILES = (".parquet", ".npz", ".npy")
_FALLBACK = {"content": "items without a vector share one learned vector (the projection of a "
                        "zero vector)",
             "gated": "items without a vector use their id embedding alone (gate fixed to 1)",
             "experts": "items without a vector drop the content expert from their gate",
             "text": "items without a vector get no text term (zero row and column of the "
                     "cosine matrix); a user's text vector is the mean over their history items "
                     "that have one (none: no text term)",
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


def build_model(cfg: RunConfig, ds: Dataset, split: Split) -> tuple[Any, dict[str, Any]]:
    """``(model, info)``: ``cfg.model`` built for ``ds`` and seeded by ``cfg.train.seed``, with
    its data (content vectors, user features, semantic IDs, item counts, its kind's data) given;
    ``info`` is what was read, for run.json (keys content, user_features, semantic_ids)."""
    model_cfg = _model_config(cfg)
    info: dict[str, Any] = {}
    content = None
    item_repr, spec = _content_spec(model_cfg)
    if item_repr != "id":
        vectors, present, info["content"] = content_vectors(ds, spec)
        content = (torch.from_numpy(vectors), torch.from_numpy(present))
        info["content"]["fallback"] = _FALLBACK[item_repr]
    image = None
    if "image" in _declared(model_cfg, "experts", ()) and model_cfg.image:  # genius's images
        vectors, present, info["image"] = content_vectors(ds, model_cfg.image)
        image = (torch.from_numpy(vectors), torch.from_numpy(present))
    user_codes = None
    columns = _declared(model_cfg, "user_features", ())
    if columns:  # two_tower's user tower: categorical columns of users.parquet
        user_codes, info["user_features"] = user_feature_codes(ds, tuple(columns))
    id_codes = None
    if _declared(model_cfg, "id_sizes") is not None:  # tiger: items as semantic IDs
        from genrec.semantic_ids.store import semantic_ids_for_run

        id_codes, info["semantic_ids"] = semantic_ids_for_run(ds, cfg.params.get("semantic_ids", ""))
    torch.manual_seed(cfg.train.seed)  # the initial weights of gradient models
    model = _construct(cfg, ds, info["content"]["dim"] if content else 0, **_image_dim(info),
                       **_user_cards(info), **_id_sizes(info))
    if id_codes is not None:  # a buffer of the model: load_run needs no semantic-ID file
        model.set_semantic_ids(torch.from_numpy(id_codes))
    if content is not None:
        set_content(model, *content, split)
    if image is not None:  # a buffer of the model, as content vectors
        model.set_image(*image)
    set_item_counts(model, split)
    if user_codes is not None:  # a buffer of the model: load_run needs no users table
        model.set_user_features(torch.from_numpy(user_codes))
    model_kind(cfg.model).attach(model, split)
    return model, info


def model_shell(cfg: RunConfig, ds: Dataset, info: dict[str, Any]) -> Any:
    """The model of a saved run with the shapes its run.json ``info`` recorded, ready for its
    weights (which hold the content vectors, user features and semantic IDs); not seeded."""
    content_dim = int(info.get("content", {}).get("dim", 0))
    return _construct(cfg, ds, content_dim, **_image_dim(info), **_user_cards(info),
                      **_id_sizes(info))
