"""Image vectors: precomputed files (parquet / npz / npy) into the store; open_clip optional."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from genrec.data.dataset import DataError
from genrec.features import embed_items, load_vectors, make_encoder
from genrec.features.image import ImageEncoderUnavailable, OpenClipEncoder, read_precomputed
from tests.features import tiny_dataset

VECS = {"b": [3.0, 4.0], "c": [0.0, 2.0], "zz": [1.0, 1.0]}  # "zz" is not in the dataset


@pytest.fixture
def ds(tmp_path):
    return tiny_dataset(tmp_path / "ds", {"item_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                                          "image_path": ["img/a.jpg", None, "img/c.jpg"]})


def _check(ds, name):
    matrix, present, meta = load_vectors(ds, name)
    assert present.tolist() == [False, False, True, True]  # "a" has no precomputed vector
    np.testing.assert_allclose(matrix, [[0, 0], [0, 0], [0.6, 0.8], [0, 1]], rtol=1e-6)
    assert meta["kind"] == "image" and meta["n_missing"] == 1 and meta["n_vectors"] == 2
    assert meta["dropped_unknown_ids"] == 1 and meta["content_hash"].startswith("sha256:")
    return meta


def test_precomputed_parquet_list_column(ds, tmp_path):
    f = tmp_path / "clip.parquet"
    pl.DataFrame({"item_id": list(VECS), "vector": list(VECS.values())}).write_parquet(f)
    embed_items(ds, make_encoder(f"precomputed:{f}"))
    assert _check(ds, "precomputed-clip")["source_file"] == str(f)


def test_precomputed_parquet_numeric_columns(ds, tmp_path):
    f = tmp_path / "wide.parquet"
    pl.DataFrame({"item_id": list(VECS), "x": [v[0] for v in VECS.values()],
                  "y": [v[1] for v in VECS.values()]}).write_parquet(f)
    embed_items(ds, make_encoder(f"precomputed:{f}"), name="img")
    _check(ds, "img")


def test_precomputed_npz(ds, tmp_path):
    f = tmp_path / "v.npz"
    np.savez(f, item_id=np.array(list(VECS)), vector=np.array(list(VECS.values())))
    embed_items(ds, make_encoder(f"precomputed:{f}"))
    _check(ds, "precomputed-v")


def test_precomputed_npy_in_item_order(ds, tmp_path):
    f = tmp_path / "v.npy"
    np.save(f, np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 2.0]]))  # rows = item_idx 1..3
    embed_items(ds, make_encoder(f"precomputed:{f}"), normalize=False)
    matrix, present, _ = load_vectors(ds, "precomputed-v")
    assert present.tolist() == [False, True, True, True]
    np.testing.assert_array_equal(matrix[1:], [[1, 0], [3, 4], [0, 2]])

    np.save(f, np.ones((4, 2)))  # with a PAD row 0 it is accepted too
    assert read_precomputed(f, ["a", "b", "c"])[1].shape == (3, 2)
    np.save(f, np.ones((7, 2)))
    with pytest.raises(DataError, match=r"\(7, 2\); a bare .npy must be \(n_items=3, D\)"):
        read_precomputed(f, ["a", "b", "c"])


def test_precomputed_bad_files(ds, tmp_path):
    with pytest.raises(DataError, match="precomputed vector file not found: tried"):
        embed_items(ds, make_encoder(f"precomputed:{tmp_path / 'none.npz'}"))
    f = tmp_path / "bad.parquet"
    pl.DataFrame({"asin": ["b"], "vector": [[1.0]]}).write_parquet(f)
    with pytest.raises(DataError, match=r"columns \['asin', 'vector'\]; expected item_id"):
        read_precomputed(f, [])
    with pytest.raises(DataError, match="unknown vector file type '.csv'"):
        (tmp_path / "v.csv").write_text("x")
        read_precomputed(tmp_path / "v.csv", [])


def test_open_clip_is_optional(ds, tmp_path):
    try:
        import open_clip  # noqa: F401
    except ImportError:
        enc = make_encoder(f"open_clip:{tmp_path / 'vit.bin'}")
        with pytest.raises(ImageEncoderUnavailable, match="open_clip is not installed.*"
                                                          "precomputed:FILE"):
            embed_items(ds, enc)
        return
    with pytest.raises(ImageEncoderUnavailable, match="open_clip weights not found: tried"):
        embed_items(ds, OpenClipEncoder(tmp_path / "vit.bin"))


def test_open_clip_real_weights(ds, tmp_path):
    """Runs only where open_clip and local weights exist ($GENREC_OPENCLIP_WEIGHTS)."""
    pytest.importorskip("open_clip", reason="open_clip not installed (optional)")
    import os

    weights = os.environ.get("GENREC_OPENCLIP_WEIGHTS")
    if not weights:
        pytest.skip("set GENREC_OPENCLIP_WEIGHTS to a local ViT-B-32 checkpoint to run this")
    from PIL import Image

    (ds.path / "img").mkdir()
    Image.new("RGB", (32, 32), "red").save(ds.path / "img" / "a.jpg")  # c.jpg stays missing
    embed_items(ds, OpenClipEncoder(weights))
    _, present, meta = load_vectors(ds, "open_clip-ViT-B-32")
    assert present.tolist() == [False, True, False, False]
    assert meta["zero_vector_items"] == ["b", "c"]
