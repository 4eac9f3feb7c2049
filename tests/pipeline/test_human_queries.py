"""Human-written query sets (T1 Last.fm tags, T2 TOMT books): readers on tiny raw files in the
real formats, the tag split, item text from training tags only, the metrics, and the real data."""

import json
import zipfile

import numpy as np
import pytest

from genrec.data.dataset import DataError
from genrec.data.formats.human_text import read_lastfm_tags, read_tomt_books
from genrec.data.ingest import build_dataset
from genrec.pipeline.human_queries import (HumanQueryConfig, human_queries, lastfm_queries,
                                           ranking_metrics)
from genrec.pipeline.text_queries import TEST, TRAIN, VALID

N_TAGS, N_ARTISTS = 30, 40


def write_lastfm(folder, blank_tail: bool = True):
    """30 tags, tag t given to artists t..t+11 (12 artists each) by 1-3 users; tag 29 to 3 only."""
    folder.mkdir()
    (folder / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n"
        + "".join(f"{a}\tBand \"{a}\"\thttp://x\thttp://y\n" for a in range(1, N_ARTISTS + 1)))
    tags = "tagID\ttagValue\r\n" + "".join(f"{t}\tmood{t} caf\xe9\r\n"
                                           for t in range(1, N_TAGS + 1))
    (folder / "tags.dat").write_bytes(tags.encode("latin-1"))
    rows = []
    for t in range(1, N_TAGS + 1):
        artists = range(t, t + (3 if t == N_TAGS else 12))
        for a in artists:
            for u in range(1 + (a + t) % 3):
                rows.append(f"{u}\t{a}\t{t}\t1\t{1 + t % 12}\t2009\r\n")
    head = "userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
    half = len(rows) // 2
    (folder / "user_taggedartists.dat").write_text(head + "".join(rows[:half])
                                                   + ("\r\n" if blank_tail else ""))
    (folder / "user_taggedartists_2.dat").write_text(head + "".join(rows[half:]))
    return len(rows)


@pytest.fixture
def lastfm(tmp_path):
    n_rows = write_lastfm(tmp_path / "lastfm")
    raw = read_lastfm_tags(tmp_path / "lastfm")
    return build_dataset(raw, "lastfm-tags"), n_rows


def test_lastfm_reader_is_a_tag_by_artist_log(lastfm) -> None:
    ds, n_rows = lastfm
    assert ds.meta["format"] == "lastfm-hetrec-tags"
    assert ds.n_users == N_TAGS and ds.n_items == N_ARTISTS
    assert int(ds.interactions["count"].sum()) == n_rows  # every user-tag-artist row counted once
    assert ds.interactions.height == 29 * 12 + 3  # one row per distinct (tag, artist)
    assert ds.users["tag"].to_list()[0] == "mood1 caf\xe9"  # ISO-8859-1 decoded
    assert ds.items["title"].to_list()[0] == 'Band "1"'  # quotes are plain characters
    assert "tags" not in ds.items.columns  # item text is made per split, never stored


def test_t1_split_relevant_sets_and_no_heldout_tag_in_item_text(lastfm) -> None:
    ds, _ = lastfm
    hq = lastfm_queries(ds, HumanQueryConfig(min_artists=10, item_tags=50, seed=3))
    qs = hq.queries
    assert len(qs.queries) == N_TAGS - 1  # tag 30 has 3 artists: not a query
    s = qs.summary()
    assert (s["train_queries"], s["valid_queries"], s["test_queries"]) == (23, 3, 3)
    assert s["test_queries_unseen_in_train"] == 3
    for q, rel in enumerate(qs.relevant()):
        t = int(qs.queries[q].split()[0][4:])
        assert rel.tolist() == list(range(t, t + 12))  # every artist given the tag
    held = {qs.queries[q] for q, sp in zip(qs.pair_query, qs.pair_split) if sp in (VALID, TEST)}
    train = {qs.queries[q] for q, sp in zip(qs.pair_query, qs.pair_split) if sp == TRAIN}
    in_text = {t for text in hq.texts if ". Tags: " in text
               for t in text.split(". Tags: ", 1)[1].split(", ")}
    assert in_text and in_text <= train and not in_text & held
    assert hq.texts[0] == "" and len(hq.texts) == N_ARTISTS + 1
    # another seed gives another split; the same seed the same one
    again = lastfm_queries(ds, HumanQueryConfig(seed=3)).queries
    other = lastfm_queries(ds, HumanQueryConfig(seed=4)).queries
    assert again.queries == qs.queries and other.queries != qs.queries
    assert hq.popularity[0] == 0 and hq.popularity.sum() > 0


def test_t1_item_text_keeps_the_most_frequent_training_tags(lastfm) -> None:
    ds, _ = lastfm
    hq = lastfm_queries(ds, HumanQueryConfig(item_tags=1, seed=3))
    assert all(text.count(",") == 0 for text in hq.texts)  # one tag at most
    with pytest.raises(DataError, match="lower min_artists"):
        lastfm_queries(ds, HumanQueryConfig(min_artists=100))
    with pytest.raises(ValueError, match="valid_share"):
        lastfm_queries(ds, HumanQueryConfig(valid_share=0.6, test_share=0.5))


def write_tomt(folder, repeat_last: bool = False):
    """6 books, 10 queries (6 train, 2 valid, 2 test); query q means book q % 6. With
    ``repeat_last`` the last query repeats the one before it, text and book."""
    folder.mkdir()
    docs = [{"id": f"b{i}", "title": f"Book {i}", "text": f"about topic{i}", "meta": "{}"}
            for i in range(6)]
    queries, splits = [], {"train": [], "validation": [], "test": []}
    for q in range(10):
        name = ["train", "train", "train", "train", "train", "train", "validation", "validation",
                "test", "test"][q]
        same = q - 1 if repeat_last and q == 9 else q
        queries.append({"id": f"q{q}", "title": f"[TOMT] book number {same}", "description":
                        f"I remember topic{same % 6}", "meta": {"replies": [{"body": "ANSWER"}]}})
        splits[name].append(f"q{q}\t0\tb{same % 6}\t1")
    with zipfile.ZipFile(folder / "Books.zip", "w") as zf:
        zf.writestr("Books/documents.json", "\n".join(json.dumps(d) for d in docs))
        zf.writestr("Books/queries.json", "\n".join(json.dumps(q) for q in queries))
        for name, lines in splits.items():
            zf.writestr(f"Books/splits/{name}/qrels.txt", "\n".join(lines) + "\n")


def test_t2_authors_splits_and_no_replies(tmp_path) -> None:
    write_tomt(tmp_path / "tomt")
    raw = read_tomt_books(tmp_path / "tomt")
    ds = build_dataset(raw, "tomt-books")
    assert "ANSWER" not in str(ds.users.to_dicts())  # the thread never enters the dataset
    hq = human_queries(ds)
    assert hq.protocol == "T2"
    s = hq.queries.summary()
    assert (s["train_queries"], s["valid_queries"], s["test_queries"]) == (6, 2, 2)
    q = hq.queries.queries.index("[TOMT] book number 2\nI remember topic2")
    assert hq.titles[hq.queries.relevant()[q][0]] == "Book 2"
    assert hq.texts[1] == "Book 0. about topic0"
    assert hq.popularity[1:].tolist() == [1, 1, 1, 1, 1, 1]
    write_tomt(tmp_path / "repeated", repeat_last=True)
    qs = human_queries(build_dataset(read_tomt_books(tmp_path / "repeated"), "t")).queries
    assert len(qs.queries) == 9 and len(qs.pair_query) == 9  # one query, one pair


def test_human_queries_refuses_other_datasets(tmp_path) -> None:
    from tests.pipeline.test_text_search import tiny_dataset

    with pytest.raises(DataError, match="genrec data prepare lastfm-tags"):
        human_queries(tiny_dataset(tmp_path / "beauty"))


def test_ranking_metrics_by_hand() -> None:
    ranked = [np.array([5, 1, 9]), np.array([0, 0, 7]), np.array([3])]
    relevant = [np.array([1, 2]), np.array([7]), np.array([4])]
    m = ranking_metrics(ranked, relevant, k=2, k_candidates=3)
    assert m["Recall@2"] == round((1 / 2 + 0 + 0) / 3, 5)  # item 7 sits at rank 3
    assert m["Recall@3"] == round((1 / 2 + 1 + 0) / 3, 5)
    assert m["MRR@2"] == round((1 / 2) / 3, 5)
    ndcg1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["NDCG@2"] == round(ndcg1 / 3, 5)
    assert m["n_queries"] == 3
    twice = ranking_metrics([np.array([7, 1])], [np.array([7, 7])], k=2, k_candidates=2)
    assert twice["NDCG@2"] == 1.0 and twice["Recall@2"] == 1.0  # a repeated item counts once
    with pytest.raises(ValueError, match="align"):
        ranking_metrics(ranked, relevant[:2])


@pytest.mark.integration
def test_real_t1_t2_counts(shared_data) -> None:
    t1 = build_dataset(read_lastfm_tags(shared_data("lastfm-hetrec-tags")), "lastfm-tags")
    hq = human_queries(t1)
    s = hq.queries.summary()
    assert (hq.summary()["n_items"], s["queries"], s["test_queries"]) == (12_523, 1_443, 145)
    held = {hq.queries.queries[q] for q in np.unique(hq.queries.pairs("test")[0])}
    held |= {hq.queries.queries[q] for q in np.unique(hq.queries.pairs("valid")[0])}
    in_text = {t for text in hq.texts if ". Tags: " in text
               for t in text.split(". Tags: ", 1)[1].split(", ")}
    assert not in_text & held
    t2 = build_dataset(read_tomt_books(shared_data("reddit-tomt-books")), "tomt-books")
    s2 = human_queries(t2).queries.summary()
    assert (t2.n_items, s2["train_queries"], s2["valid_queries"], s2["test_queries"]) == (
        1_910, 1_853, 233, 233)


def test_text_search_trains_on_people_queries(tmp_path) -> None:
    """`genrec search train` on a T1 dataset reads its tag queries and train-tag item text."""
    import polars as pl

    from genrec.pipeline.text_queries import QuerySet
    from genrec.pipeline.text_search import TextSearch, load_config, train_text_search
    from tests.pipeline.test_text_search import CONFIG

    write_lastfm(tmp_path / "raw")
    ds = build_dataset(read_lastfm_tags(tmp_path / "raw"), "lastfm-tags")
    ds.save(tmp_path / "ds")
    sets = [s for s in CONFIG if not s.startswith(("ids.vectors", "queries.", "ranker."))]
    cfg = load_config(str(tmp_path / "ds"), sets + ["ids.vectors=tfidf", "ranker.enabled=false",
                                                    "human.seed=3", "eval.test_queries=0",
                                                    "train.epochs=1", "index_items=true"])
    logged: list[str] = []
    train_text_search(cfg, tmp_path / "run", progress=False, log=logged.append)
    hq = lastfm_queries(ds, HumanQueryConfig(seed=3))
    n_train = len(hq.queries.pairs("train")[0])
    assert any(f"t5 encoder); {n_train + N_ARTISTS:,} training pairs (one item-text" in m
               for m in logged)  # DSI indexing: one (item text -> item) pair per artist
    run_items = pl.read_parquet(tmp_path / "run" / "items.parquet").sort("item_idx")
    assert run_items["text"].to_list() == hq.texts[1:]  # name + training tags, not item columns
    saved = QuerySet.load(tmp_path / "run" / "queries.parquet")
    assert sorted(saved.queries) == sorted(hq.queries.queries)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["text_template"].startswith("T1") and info["queries"]["test_queries"] == 3
    assert info["semantic_ids"]["vectors"].startswith("tfidf-t1-")  # keyed by the item text
    assert info["generator"]["cpu_seconds"] > 0
    res = TextSearch.load(tmp_path / "run").search("mood7", 5, "generator")
    assert 1 <= len(res.items) <= 5 and (res.items >= 1).all()
    # bad input through `genrec search`: a blank query is one line and exit 2, a long one is cut
    from typer.testing import CliRunner

    from genrec.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["search", str(tmp_path / "run"), "  \t"])
    assert res.exit_code == 2 and res.output.strip() == (
        "error: empty query: give some words to search for")
    res = runner.invoke(app, ["search", "query", str(tmp_path / "run"), "mood7 " * 500,
                              "--method", "generator", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert "cut to its first 2,000 of 2,999 characters" in out["note"] and out["items"]
    res = runner.invoke(app, ["search", str(tmp_path / "run"), "mood7", "--method", "nope"])
    assert res.exit_code == 2 and "unknown search method" in res.output


def test_text_search_on_a_finetuned_encoder(tmp_path) -> None:
    """finetune_encoder: MiniLM is fine-tuned first, embeds the item text the IDs are built
    from, and is saved in the run as the generator's encoder; a moved run still loads it."""
    import shutil

    from genrec.config import ConfigError
    from genrec.pipeline.text_search import TextSearch, load_config, train_text_search
    from tests.pipeline.test_text_search import CONFIG

    write_lastfm(tmp_path / "raw")
    ds = build_dataset(read_lastfm_tags(tmp_path / "raw"), "lastfm-tags")
    ds.save(tmp_path / "ds")
    sets = [s for s in CONFIG if not s.startswith(("ids.vectors", "queries.", "ranker."))]
    sets += ["ids.vectors=minilm", "ranker.enabled=false", "eval.test_queries=0",
             "train.epochs=1", "finetune_encoder=true", "encoder.max_minutes=0.05",
             "encoder.batch_size=8", "encoder.max_length=16", "generator.encoder=minilm",
             "generator.code_prior=true", "generator.leaf_residual=true",
             "generator.max_query_len=16"]
    train_text_search(load_config(str(tmp_path / "ds"), sets), tmp_path / "run",
                      progress=False, log=lambda m: None)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["encoder_finetune"]["enabled"] and info["encoder_finetune"]["steps"] >= 1
    assert info["semantic_ids"]["vectors"].startswith("minilm-ft-t1-")
    assert (tmp_path / "run" / "encoder" / "config.json").is_file()
    assert 'tokenizer = "encoder"' in (tmp_path / "run" / "config.toml").read_text()
    shutil.move(tmp_path / "run", tmp_path / "moved")
    search = TextSearch.load(tmp_path / "moved")
    assert search.generator.config.tokenizer == str(tmp_path / "moved" / "encoder")
    res = search.search("mood7", 5, "generator")
    assert 1 <= len(res.items) <= 5 and (res.items >= 1).all()
    with pytest.raises(ConfigError, match="finetune_encoder needs generator.encoder"):
        load_config(str(tmp_path / "ds"), ["finetune_encoder=true"]).validate()
