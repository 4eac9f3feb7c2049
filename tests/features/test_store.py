"""The vector store: save -> load aligned to item_idx, fallbacks, atomic writes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.dataset import DataError, Dataset
from genrec.features.store import (content_hash, load_vectors, read_meta, save_vectors,
                                   vectors_path)
from tests.features import tiny_dataset


@pytest.fixture
def ds(tmp_path):
    return tiny_dataset(tmp_path / "ds", {"item_id": ["a", "b", "c", "d"],
                                          "title": ["A", "B", "C", "D"]})


def test_roundtrip_aligns_by_raw_id(ds):
    # rows given out of item order, item "c" (idx 3) left out, "d" stored as a zero fallback
    ids = ["d", "b", "a"]
    vecs = np.array([[0, 0, 0], [4, 5, 6], [1, 2, 3]], dtype=np.float64)
    path = save_vectors(ds, "enc", ids, vecs, {"model_path": "/m", "text_template": "{title}",
                                               "content_hash": "sha256:x"},
                        fallback=["zero", None, None])
    assert path == ds.path / "item_vectors" / "enc.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["enc.parquet"]  # no temp file left

    matrix, present, meta = load_vectors(ds, "enc")
    assert matrix.dtype == np.float32 and matrix.shape == (5, 3)
    np.testing.assert_array_equal(matrix, [[0, 0, 0], [1, 2, 3], [4, 5, 6], [0, 0, 0], [0, 0, 0]])
    assert present.tolist() == [False, True, True, False, False]
    assert meta["dim"] == 3 and meta["n_vectors"] == 3 and meta["n_missing"] == 1
    assert meta["n_unknown"] == 0 and meta["encoder"] == "enc" and meta["dataset"] == "tiny"
    assert meta["model_path"] == "/m" and meta["text_template"] == "{title}"
    assert meta["fallbacks"] == {"title": 0, "zero": 1} and meta["zero_vector_items"] == ["d"]
    assert read_meta(path)["content_hash"] == "sha256:x"

    by_path, _, _ = load_vectors(ds.path, "enc")  # a dataset directory works the same
    np.testing.assert_array_equal(by_path, matrix)


def test_rows_of_items_no_longer_in_the_dataset_are_ignored(ds, tmp_path):
    save_vectors(ds, "enc", ["a", "b", "c", "d"], np.eye(4), {})
    smaller = Dataset(ds.interactions.filter(ds.interactions["item_idx"] <= 2),
                      ds.items.filter(ds.items["item_idx"] <= 2), ds.users, dict(ds.meta))
    smaller.save(tmp_path / "small")
    (tmp_path / "small" / "item_vectors").mkdir()
    vectors_path(ds, "enc").rename(tmp_path / "small" / "item_vectors" / "enc.parquet")
    matrix, present, meta = load_vectors(tmp_path / "small", "enc")
    assert matrix.shape == (3, 4) and present.tolist() == [False, True, True]
    assert meta["n_unknown"] == 2 and meta["n_missing"] == 0
    np.testing.assert_array_equal(matrix[1:], np.eye(4)[:2])


def test_overwrite_replaces_the_file(ds):
    save_vectors(ds, "enc", ["a"], np.ones((1, 2)), {"v": 1})
    save_vectors(ds, "enc", ["b"], np.full((1, 3), 2.0), {"v": 2})
    matrix, present, meta = load_vectors(ds, "enc")
    assert meta["v"] == 2 and matrix.shape == (5, 3) and present.tolist() == [0, 0, 1, 0, 0]


@pytest.mark.parametrize("ids, vecs, kw, error, match", [
    (["a", "zz"], np.ones((2, 2)), {}, DataError, r"not in dataset 'tiny', e\.g\. \['zz'\]"),
    (["a", "a"], np.ones((2, 2)), {}, ValueError, r"repeated: \['a'\]"),
    (["a", "b"], np.ones((3, 2)), {}, ValueError, r"\(n_ids, D\) = \(2, D>0\); got \(3, 2\)"),
    (["a"], np.array([[np.nan, 1.0]]), {}, ValueError, r"items \['a'\] contain NaN"),
    (["a"], np.ones((1, 2)), {"fallback": ["maybe"]}, ValueError, "fallback must give"),
])
def test_bad_input_is_refused(ds, ids, vecs, kw, error, match):
    with pytest.raises(error, match=match):
        save_vectors(ds, "enc", ids, vecs, {}, **kw)
    assert not (ds.path / "item_vectors" / "enc.parquet").exists()


def test_unsafe_name_and_missing_file(ds):
    with pytest.raises(ValueError, match="not a safe file name"):
        save_vectors(ds, "../evil", ["a"], np.ones((1, 2)), {})
    save_vectors(ds, "minilm", ["a"], np.ones((1, 2)), {})
    with pytest.raises(DataError, match=r"tfidf\.parquet does not exist \(found: minilm\)"):
        load_vectors(ds, "tfidf")
    with pytest.raises(DataError, match="not a prepared genrec dataset"):
        load_vectors(ds.path / "nope", "minilm")


def test_content_hash_is_order_and_content_sensitive():
    h = content_hash(["1", "2"], ["a", "b"])
    assert h == content_hash(["1", "2"], ["a", "b"]) and h.startswith("sha256:")
    assert h != content_hash(["2", "1"], ["b", "a"])
    assert h != content_hash(["1", "2"], ["a", "c"])
    # the separator keeps ("1", "2a") and ("12", "a") apart
    assert content_hash(["1"], ["2a"]) != content_hash(["12"], ["a"])
