"""Run directories for the serving tests, trained once per session on a tiny synthetic shop.

60 users, 40 items in two taste groups: even users only touch "red" make-up (sku01..sku20), odd
users only "blue" bath products (sku21..sku40). Titles name a product type, so text search has a
known answer ("mascara" matches exactly sku02, sku06, sku10, sku14, sku18). sku01..sku03 have a
local PNG image.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.runs import make_config, train

RED = ("Lipstick", "Mascara", "Blush", "Eyeliner")
BLUE = ("Shampoo", "Conditioner", "Soap", "Lotion")


def title(i: int) -> str:
    """sku01 -> 'Red Lipstick 1', sku02 -> 'Red Mascara 2', ..., sku21 -> 'Blue Shampoo 21'."""
    names, colour = (RED, "Red") if i <= 20 else (BLUE, "Blue")
    return f"{colour} {names[(i - 1) % 4]} {i}"


def png(path: Path) -> Path:
    """A valid 1x1 red PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def shop_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        block = range(1, 21) if u % 2 == 0 else range(21, 41)
        for t, i in enumerate(rng.choice(list(block), size=8, replace=False)):
            rows.append((f"u{u:02d}", f"sku{i:02d}", 1000 * u + t))
    interactions = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    images = {i: str(png(root / f"sku{i:02d}.png")) for i in (1, 2, 3)}
    items = pl.DataFrame({"item_id": [f"sku{i:02d}" for i in range(1, 41)],
                          "title": [title(i) for i in range(1, 41)],
                          "categories": ["Makeup" if i <= 20 else "Bath" for i in range(1, 41)],
                          "image_path": [images.get(i) for i in range(1, 41)]})
    ds = build_dataset(RawData(interactions.lazy(), items=items, info={"source": "synthetic"}),
                       "shop")
    ds.save(root / "dataset")
    return root / "dataset"


def _train(model: str, shop_dir: Path, out: Path, *sets: str) -> Path:
    train(make_config(model, [f"data.name={shop_dir}", "eval.ks=[5,10]", *sets]), out)
    return out


@pytest.fixture(scope="session")
def ease_run(shop_dir, tmp_path_factory) -> Path:
    return _train("ease", shop_dir, tmp_path_factory.mktemp("runs") / "ease", "params.l2=10")


@pytest.fixture(scope="session")
def popularity_run(shop_dir, tmp_path_factory) -> Path:
    return _train("popularity", shop_dir, tmp_path_factory.mktemp("runs") / "pop")


@pytest.fixture(scope="session")
def sasrec_run(shop_dir, tmp_path_factory) -> Path:
    return _train("sasrec", shop_dir, tmp_path_factory.mktemp("runs") / "sasrec",
                  "params.dim=16", "params.max_len=8", "params.n_layers=1", "params.dropout=0.0",
                  "train.epochs=15", "train.lr=0.01", "train.batch_size=32", "train.threads=1")
