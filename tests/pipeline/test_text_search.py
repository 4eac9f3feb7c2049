"""Text search end to end on a tiny catalogue: train a run directory (queries, semantic IDs,
generator, hard negatives, cross-encoder), reload it, every method, errors that name the fix, and
the `genrec search` command."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from genrec.cli import app
from genrec.config import ConfigError, from_dict
from genrec.data.dataset import DataError, Dataset
from genrec.pipeline.text_queries import QuerySet
from genrec.pipeline.text_search import TextSearch, TextSearchConfig, load_config, train_text_search

BRANDS = ["Acme", "Zest", "Luma"]
PRODUCTS = [("Coconut Hair Oil", "Hair Care > Oils"), ("Matte Red Lipstick", "Makeup > Lips"),
            ("Gentle Face Cream", "Skin Care > Face"), ("Shine Nail Polish", "Makeup > Nails"),
            ("Argan Hair Oil", "Hair Care > Oils"), ("Rose Face Cream", "Skin Care > Face"),
            ("Gloss Red Lipstick", "Makeup > Lips"), ("Quick Dry Nail Polish", "Makeup > Nails")]


def tiny_dataset(path) -> Dataset:
    titles, cats = [], []
    for b in BRANDS:
        for p, c in PRODUCTS:
            titles.append(f"{b} {p}")
            cats.append(f"Beauty > {c}")
    n = len(titles)
    ds = Dataset(
        interactions=pl.DataFrame({"user_idx": [0, 0, 1], "item_idx": [1, 2, 3],
                                   "timestamp": [1, 2, 3]},
                                  schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                          "timestamp": pl.Int64})
        .with_columns(pl.lit(None, pl.Float32).alias("rating")),
        items=pl.DataFrame({"item_idx": list(range(1, n + 1)),
                            "item_id": [f"i{i}" for i in range(1, n + 1)],
                            "title": titles, "categories": cats},
                           schema={"item_idx": pl.Int32, "item_id": pl.Utf8, "title": pl.Utf8,
                                   "categories": pl.Utf8}),
        users=pl.DataFrame({"user_idx": [0, 1], "user_id": ["u0", "u1"]},
                           schema={"user_idx": pl.Int32, "user_id": pl.Utf8}),
        meta={"name": "tiny-beauty"})
    ds.save(path)
    return ds


CONFIG = [
    "ids.vectors=vec", "ids.levels=2", "ids.codebook_size=3",
    "generator.dim=16", "generator.ff_dim=32", "generator.n_heads=2", "generator.head_dim=8",
    "generator.n_layers=1", "generator.n_decoder_layers=1", "generator.beam_size=10",
    "train.epochs=3", "train.batch_size=16", "train.warmup_steps=0", "train.threads=1",
    "train.max_minutes=1", "queries.min_phrase_items=2", "queries.title_phrases=3",
    "ranker.train_queries=4", "ranker.candidates=5", "ranker.positives=1", "ranker.depth=6",
    "ranker.params.batch_size=4", "ranker.params.negatives_per_query=1",
    "ranker.params.max_minutes=0.05", "ranker.params.max_length=32",
    "eval.valid_queries=10", "eval.valid_beam=10", "eval.test_queries=2",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from genrec.features.store import save_vectors

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text_search")
    ds = tiny_dataset(root / "ds")
    # random item vectors stand in for MiniLM's (the ID layout is all that matters here)
    vecs = np.random.default_rng(0).normal(size=(ds.n_items, 8)).astype(np.float32)
    save_vectors(ds, "vec", [f"i{i}" for i in range(1, ds.n_items + 1)], vecs, {})
    cfg = load_config(str(ds.path), CONFIG)
    train_text_search(cfg, root / "run", progress=False, log=lambda msg: None)
    return root / "run"


@pytest.fixture(scope="module")
def search(run_dir):
    return TextSearch.load(run_dir)


def test_run_directory_holds_everything_to_serve(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.toml", "run.json", "items.parquet", "queries.parquet", "semantic_ids.npz",
            "semantic_ids.json", "generator.pt", "generator", "cross_encoder",
            "metrics.json"} <= names
    assert not (run_dir / "generator" / "checkpoint.pt").exists()  # optimizer state dropped
    assert not any(p.name.startswith(".") for p in run_dir.parent.iterdir())  # no temp dir left
    info = json.loads((run_dir / "run.json").read_text())
    assert info["semantic_ids"]["sizes"][:2] == [3, 3] and info["ranker"]["enabled"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"valid_generator", "test_generator", "test_generator+ce"} <= set(metrics)
    qs = QuerySet.load(run_dir / "queries.parquet")
    train, test = set(zip(*qs.pairs("train"))), set(zip(*qs.pairs("test")))
    assert train and test and not (train & test)


def test_generator_returns_only_catalogue_items_ranked_by_log_prob(search):
    n = len(search.texts) - 1
    res = search.search("coconut hair oil", 10, "generator")
    assert len(res.items) == 10 and len(set(res.items.tolist())) == 10
    assert ((res.items >= 1) & (res.items <= n)).all()
    assert (np.diff(res.generator_logp) <= 0).all() and res.ce_score is None
    assert res.titles[0] == search.titles[res.items[0]]


def test_generator_plus_cross_encoder_reports_both_scores(search):
    res = search.search("red lipstick", 4, "generator+ce")
    assert len(res.items) == 4 and (np.diff(res.ce_score) <= 0).all()
    gen = search.search("red lipstick", search.depth, "generator")
    assert set(res.items.tolist()) <= set(gen.items.tolist())  # re-ranked generator candidates
    assert {"generator_logp", "ce_score", "title", "item_id"} <= set(res.rows()[0])


def test_bm25_and_minilm(search):
    res = search.search("nail polish", 3, "bm25")
    assert all("Nail Polish" in t for t in res.titles)
    res = search.search("lipstick", 3, "minilm")
    assert len(res.items) == 3 and (np.diff(res.scores) <= 1e-6).all()


def test_empty_query_is_a_value_error_and_unreadable_query_gets_a_note(search):
    for method in ("bm25", "generator", "generator+ce"):
        with pytest.raises(ValueError, match="empty query"):
            search.search("   ", 5, method)
    res = search.search("𓀀𓀁 𓀂", 3, "generator")
    assert len(res.items) == 3 and res.note and "[UNK]" in res.note
    assert search.search("coconut oil", 3, "generator").note is None
    with pytest.raises(ValueError, match="method"):
        search.search("oil", 3, "magic")


def test_generator_plus_ce_without_a_ranker_says_so(run_dir):
    s = TextSearch.load(run_dir)
    s.ranker = None
    with pytest.raises(ValueError, match="no cross-encoder"):
        s.search("oil", 3, "generator+ce")


def test_run_dir_without_semantic_ids_or_generator_names_the_command(run_dir, tmp_path):
    for missing in ("semantic_ids.npz", "generator.pt"):
        broken = tmp_path / missing.split(".")[0]
        shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("cross_encoder"))
        (broken / missing).unlink()
        with pytest.raises(DataError, match=r"genrec search train .*--out"):
            TextSearch.load(broken)
    with pytest.raises(DataError, match="not a text-search run directory"):
        TextSearch.load(tmp_path / "nothing")


def test_set_overrides_keep_the_other_defaults_of_their_table():
    cfg = load_config("amazon-beauty", ["train.max_minutes=1", "generator.dim=64"])
    assert cfg.train.max_minutes == 1 and cfg.train.batch_size == 128 and cfg.train.patience == 3
    assert cfg.generator.dim == 64 and cfg.generator.n_layers == 2


def test_config_fails_loudly():
    with pytest.raises(ConfigError, match="bogus"):
        load_config("amazon-beauty", ["generator.bogus=1"])
    with pytest.raises(ConfigError, match="eval.valid_beam"):
        from_dict(TextSearchConfig, {"eval": {"valid_beam": 5, "k": 10}})
    with pytest.raises((ConfigError, TypeError, ValueError)):
        load_config("amazon-beauty", ["ranker.params.bogus=1"])


def test_cli_search_prints_titles_with_both_scores(run_dir):
    runner = CliRunner()
    res = runner.invoke(app, ["search", str(run_dir), "coconut hair oil", "-k", "3"])
    assert res.exit_code == 0, res.output
    assert "gen logp" in res.output and "ce " in res.output
    assert sum(f"{r}. " in res.output for r in (1, 2, 3)) == 3
    assert any(b in res.output for b in BRANDS)  # titles, not just ids
    res = runner.invoke(app, ["search", "query", str(run_dir), "face cream", "--method", "bm25",
                              "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["method"] == "bm25" and len(out["items"]) == 2
    res = runner.invoke(app, ["search", str(run_dir), "  "])
    assert res.exit_code != 0 and "empty query" in res.output
