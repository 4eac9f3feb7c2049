"""Semantic-ID files and the data they were built for: a file from another item set is refused
(by its stored hash, or by its own ids when older files carry none), items without content get
unique reserved fallback IDs that leave the content items' codes alone, and a run counts them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from genrec.data.dataset import DataError
from genrec.features.store import save_vectors
from genrec.runs import make_config, train
from genrec.semantic_ids.codes import dedup, with_fallback
from genrec.semantic_ids.rq_kmeans import rq_kmeans
from genrec.semantic_ids.store import (META_KEY, build_semantic_ids, item_set_hash,
                                       load_semantic_ids, semantic_ids_for_run)
from tests.features import tiny_dataset

K = 4


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 8)) * 10
    return (centres[np.arange(n) % 8] + rng.normal(size=(n, 8))).astype(np.float32)


def dataset(path, n: int = 32, prefix: str = "i"):
    ids = [f"{prefix}{j}" for j in range(n)]
    return tiny_dataset(path, {"item_id": ids, "title": ids}), ids


def test_with_fallback_reserves_level_0_code_k_and_numbers_the_items_in_base_k():
    codes = np.array([[0, 1], [1, 0]])
    present = np.array([True, False, True, False, False])
    table = with_fallback(codes, present, codebook_size=2)
    assert table.tolist() == [[0, 1], [2, 0], [1, 0], [2, 1], [2, 0]]  # rank 2 wraps past K^1
    assert len(np.unique(dedup(table), axis=0)) == 5  # the dedup token separates it


def test_items_without_content_get_unique_fallback_ids_and_are_counted(tmp_path):
    ds, ids = dataset(tmp_path / "ds")
    x = vectors(len(ids))
    without = [3, 10, 20]  # one missing from the file, two "zero" fallback rows
    kept = [j for j in range(len(ids)) if j != 3]
    flags = ["zero" if j in without else None for j in kept]
    save_vectors(ds, "vec", [ids[j] for j in kept], np.where(np.isin(kept, without)[:, None], 0,
                                                             x[kept]), {}, fallback=flags)
    _, report = build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=K)
    assert report["n_fallback_ids"] == 3 and report["sizes"][:2] == [K + 1, K]
    codes, sizes, meta = load_semantic_ids(ds, "vec-rq_kmeans")
    rows = np.array(without) + 1  # item_idx
    assert (codes[rows, 0] == K).all() and len(np.unique(codes[1:], axis=0)) == len(ids)
    content = np.setdiff1d(np.arange(1, len(ids) + 1), rows)
    assert (codes[content, 0] < K).all()
    # the content items are quantised exactly as without the others, not next to a zero vector
    alone = dedup(rq_kmeans(x[content - 1], 2, K, seed=0).codes)
    np.testing.assert_array_equal(codes[content, :2], alone[:, :2])
    assert meta["item_set_hash"] == item_set_hash(ids) and meta["vectors_hash"]
    assert "reserved" in meta["fallback"]


def test_a_file_from_another_item_set_is_refused_with_the_reason(tmp_path):
    ds, ids = dataset(tmp_path / "a")
    save_vectors(ds, "vec", ids, vectors(len(ids)), {})
    path, _ = build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=K)
    for other, n, prefix in (("b", 32, "x"), ("c", 31, "i")):  # another dataset; a filtered one
        ds2, _ = dataset(tmp_path / other, n, prefix)
        (ds2.path / "semantic_ids").mkdir()
        shutil.copy(path, ds2.path / "semantic_ids" / path.name)
        with pytest.raises(DataError, match="another item set") as err:
            load_semantic_ids(ds2, "vec-rq_kmeans")
        assert "\n" not in str(err.value) and "genrec semantic-ids build" in str(err.value)


def test_an_older_file_without_a_hash_is_checked_by_its_own_ids(tmp_path):
    ds, ids = dataset(tmp_path / "a")
    save_vectors(ds, "vec", ids, vectors(len(ids)), {})
    path, _ = build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=K)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    for key in ("item_set_hash", "n_fallback_ids", "fallback"):  # as before these existed
        del meta[key]
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), path)
    assert load_semantic_ids(ds, "vec-rq_kmeans")[0].shape == (len(ids) + 1, 3)
    _, info = semantic_ids_for_run(ds, "vec-rq_kmeans")  # run.json does not claim a count
    assert info["n_fallback_ids"] is None and "rebuild" in info["fallback"]
    ds2, _ = dataset(tmp_path / "b", 31)
    (ds2.path / "semantic_ids").mkdir()
    shutil.copy(path, ds2.path / "semantic_ids" / path.name)
    with pytest.raises(DataError, match="another item set"):
        load_semantic_ids(ds2, "vec-rq_kmeans")


def test_a_semid_run_refuses_a_foreign_file_and_counts_fallback_ids(tmp_path):
    ds, ids = dataset(tmp_path / "a")
    x = vectors(len(ids))
    save_vectors(ds, "vec", ids[2:], x[2:], {})  # items i0, i1 have no content
    path, _ = build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=K)
    sets = ["params.semantic_ids=vec-rq_kmeans", "params.dim=8", "params.max_len=8",
            "params.n_layers=1", "train.epochs=1", "eval.ks=[5]", "train.metric=NDCG@5"]
    run = train(make_config("semid", [f"data.name={ds.path}", *sets]))
    info = run.info["semantic_ids"]
    assert info["n_fallback_ids"] == 2 and info["item_set_hash"] == item_set_hash(ids)
    ds2, _ = dataset(tmp_path / "b", 31)
    (ds2.path / "semantic_ids").mkdir()
    shutil.copy(path, ds2.path / "semantic_ids" / path.name)
    with pytest.raises(DataError, match="another item set"):
        train(make_config("semid", [f"data.name={ds2.path}", *sets]))
