"""Image vectors for items: precomputed files (the default path) and open_clip (optional).

An image encoder maps the items frame to ``(item ids, vectors, fallback flags)``:

- ``precomputed:FILE`` reads vectors computed elsewhere, keyed by raw item id:
    Parquet  columns ``item_id`` + ``vector`` (a list column), or ``item_id`` + numeric columns
    .npz     arrays ``item_id`` (n,) and ``vector`` (n, D)
    .npy     one (n_items, D) array in item_idx order 1..N, or (n_items + 1, D) with row 0 = PAD
  Items absent from the file are left out (``load_vectors`` reports them as missing); ids the
  dataset does not know are dropped and counted.
- ``open_clip:WEIGHTS`` encodes the local images named in an items column (``image_path`` by
  default; relative paths are resolved against the dataset directory) with an open_clip model
  (``arch``, e.g. ViT-B-32) and local weights. The open_clip package is optional: without it
  ImageEncoderUnavailable says how to get it. An item whose image file is missing gets a zero
  vector flagged "zero".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from genrec.data.dataset import DataError

__all__ = ["ImageEncoder", "PrecomputedVectors", "OpenClipEncoder", "ImageEncoderUnavailable",
           "read_precomputed"]


class ImageEncoderUnavailable(DataError):
    """The encoder's optional package or weights are not here; the message says what to install."""


class ImageEncoder(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def encode_items(self, items: pl.DataFrame, root: Path
                     ) -> tuple[list[str], np.ndarray, list[str | None]]: ...


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def read_precomputed(path: str | Path, item_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(raw ids, (n, D) float32) from a precomputed file; ``item_ids`` (in item_idx order 1..N)
    give the order of a bare .npy array."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"precomputed vector file not found: tried {path.resolve()}; pass "
                        f"precomputed:FILE with a .parquet, .npz or .npy file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pl.read_parquet(path)
        if "item_id" not in df.columns:
            raise DataError(f"{path} has columns {df.columns}; expected item_id + vector "
                            f"(or item_id + numeric columns)")
        ids = df["item_id"].cast(pl.Utf8).to_list()
        if "vector" in df.columns:
            vecs = np.array(df["vector"].to_list(), dtype=np.float32)
        else:
            vecs = df.drop("item_id").to_numpy().astype(np.float32)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if not {"item_id", "vector"} <= set(z.files):
                raise DataError(f"{path} holds arrays {z.files}; expected item_id and vector")
            ids, vecs = [str(i) for i in z["item_id"]], z["vector"].astype(np.float32)
    elif suffix == ".npy":
        vecs = np.load(path, allow_pickle=False).astype(np.float32)
        n = len(item_ids)
        if vecs.ndim != 2 or vecs.shape[0] not in (n, n + 1):
            raise DataError(f"{path} is {vecs.shape}; a bare .npy must be (n_items={n}, D) in "
                            f"item_idx order or ({n + 1}, D) with row 0 = PAD; use .npz/.parquet "
                            f"with item ids otherwise")
        vecs = vecs[-n:] if n else vecs[:0]
        ids = list(item_ids)
    else:
        raise DataError(f"{path}: unknown vector file type {suffix!r}; use .parquet, .npz or .npy")
    if vecs.ndim != 2 or len(ids) != len(vecs):
        raise DataError(f"{path}: {len(ids)} ids but vectors of shape {vecs.shape}")
    return ids, vecs


@dataclass
class PrecomputedVectors:
    """Vectors from a file (image, or any other modality); see the module docstring."""

    path: Path
    name: str = ""
    n_unknown: int = 0  # rows of the file whose item is not in the dataset (dropped)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        self.name = self.name or f"precomputed-{self.path.stem}"

    def describe(self) -> dict[str, Any]:
        return {"model_path": str(self.path.resolve()), "source_file": str(self.path),
                "dropped_unknown_ids": self.n_unknown}

    def encode_items(self, items: pl.DataFrame, root: Path
                     ) -> tuple[list[str], np.ndarray, list[str | None]]:
        known = items.sort("item_idx")["item_id"].to_list()
        ids, vecs = read_precomputed(self.path, known)
        known_set = set(known)
        keep = np.array([i in known_set for i in ids], dtype=bool)
        self.n_unknown = int((~keep).sum())
        ids = [i for i, k in zip(ids, keep) if k]
        return ids, vecs[keep], [None] * len(ids)

    def content_hash(self, items: pl.DataFrame) -> str:
        return _file_hash(self.path)


@dataclass
class OpenClipEncoder:
    """open_clip image tower with local weights; images from an items column of local paths."""

    weights: Path
    arch: str = "ViT-B-32"
    column: str = "image_path"
    batch_size: int = 32
    device: str = "cpu"
    name: str = ""

    def __post_init__(self) -> None:
        self.weights = Path(self.weights).expanduser()
        self.name = self.name or f"open_clip-{self.arch}"

    def describe(self) -> dict[str, Any]:
        return {"model_path": str(self.weights.resolve()), "arch": self.arch,
                "image_column": self.column}

    def content_hash(self, items: pl.DataFrame) -> str:
        from genrec.features.store import content_hash

        paths = items.sort("item_idx")
        return content_hash(paths["item_id"].to_list(),
                            [str(p) for p in paths[self.column].to_list()])

    def _model(self) -> tuple[Any, Any]:
        try:
            import open_clip
        except ImportError:
            raise ImageEncoderUnavailable(
                "open_clip is not installed, so image vectors cannot be computed here; "
                "`pip install open_clip_torch` (needs torchvision), or compute them elsewhere "
                "and use --encoder precomputed:FILE") from None
        if not self.weights.is_file():
            raise ImageEncoderUnavailable(f"open_clip weights not found: tried "
                                          f"{self.weights.resolve()}; pass open_clip:PATH to a "
                                          f"local checkpoint for {self.arch}")
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.arch, pretrained=str(self.weights), device=self.device)
        return model.eval(), preprocess

    def encode_items(self, items: pl.DataFrame, root: Path
                     ) -> tuple[list[str], np.ndarray, list[str | None]]:
        import torch
        from PIL import Image

        if self.column not in items.columns:
            raise DataError(f"items have no {self.column!r} column of image paths (columns: "
                            f"{items.columns}); pass --image-column")
        model, preprocess = self._model()
        rows = items.sort("item_idx").select("item_id", self.column).rows()
        paths = [(root / p) if p else None for _, p in rows]
        ok = [i for i, p in enumerate(paths) if p is not None and p.is_file()]
        out: np.ndarray | None = None
        for start in range(0, len(ok), self.batch_size):
            chunk = ok[start:start + self.batch_size]
            images = torch.stack([preprocess(Image.open(paths[i]).convert("RGB")) for i in chunk])
            with torch.no_grad():
                vecs = model.encode_image(images.to(self.device)).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(rows), vecs.shape[1]), dtype=np.float32)
            out[chunk] = vecs
        if out is None:
            raise DataError(f"none of the {len(rows)} image paths in column {self.column!r} "
                            f"exist under {root} (e.g. {rows[0][1] if rows else None}); check "
                            f"the paths or pass --image-root")
        ok_set = set(ok)
        flags = [None if i in ok_set else "zero" for i in range(len(rows))]
        return [r[0] for r in rows], out, flags
