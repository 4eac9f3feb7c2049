"""`genrec data enrich`: per-item JSON from a loopback TMDb-style server merged into items."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from genrec.data.dataset import DataError, Dataset
from genrec.features._http import APIError, RetryPolicy
from genrec.features.enrich import enrich_items, field_value, url_template
from tests.features import FakeAPI, tiny_dataset

FAST = RetryPolicy(max_retries=5, base_delay=0.01, max_delay=0.05, timeout=5.0)
MOVIES = {
    "1": {"id": 1, "overview": "Toys come alive.", "vote_average": 7.9,
          "genres": [{"id": 16, "name": "Animation"}, {"id": 35, "name": "Comedy"}],
          "belongs_to_collection": {"id": 10194, "name": "Toy Story Collection"}},
    "2": {"id": 2, "overview": "  ", "vote_average": 7.2, "genres": [{"id": 28, "name": "Action"}]},
    "3": {"id": 3, "overview": "A heist.", "vote_average": 7.7, "genres": []},
}


@pytest.fixture
def ds(tmp_path):
    return tiny_dataset(tmp_path / "ds", {"item_id": ["1", "2", "3", "4"],
                                          "title": ["Toy Story", "Jumanji", "Heat", "Nobody"],
                                          "genres": ["old1", "old2", "old3", "old4"]})


def test_enrich_merges_fields_through_faults(ds):
    fields = ["overview", "genres", "vote_average", "belongs_to_collection.name"]
    with FakeAPI(movies=MOVIES, faults=["429", "drop", "500"]) as server:
        result = enrich_items(ds, server.url, fields, policy=FAST, concurrency=2)
        assert Counter(o for o, _, _ in server.log) == {"ok": 4, "429": 1, "drop": 1, "500": 1}
        assert sorted(server.ok_texts()) == ["1", "2", "3", "4"]
        assert result.n_found == 3 and result.n_not_found == 1 and result.n_fetched == 4
        assert result.columns == ["overview", "genres", "vote_average",
                                  "belongs_to_collection_name"]

        items = Dataset.load(ds.path).items.sort("item_idx")
        assert items["overview"].to_list() == ["Toys come alive.", None, "A heist.", None]
        # API genres win where the API has them; the 404 item and the empty list keep the old ones
        assert items["genres"].to_list() == ["Animation|Comedy", "Action", "old3", "old4"]
        assert items["vote_average"].to_list() == [7.9, 7.2, 7.7, None]
        assert items["vote_average"].dtype == pl.Float64
        assert items["belongs_to_collection_name"].to_list() == ["Toy Story Collection", None,
                                                                 None, None]
        meta = json.loads((ds.path / "meta.json").read_text())
        assert meta["enriched"][0]["n_found"] == 3 and meta["enriched"][0]["fields"] == fields

        # re-run: answers (the 404 too) come from the cache
        server.log.clear()
        again = enrich_items(ds, server.url, ["overview"], policy=FAST)
        assert server.log == [] and again.n_fetched == 0 and again.n_found == 3


def test_enrich_cli_with_url_template(ds):
    from genrec.cli.embed import enrich_cmd

    app = typer.Typer()
    app.command("enrich")(enrich_cmd)
    app.command("noop")(lambda: None)  # a second command keeps "enrich" a sub-command
    with FakeAPI(movies=MOVIES) as server:
        result = CliRunner().invoke(app, ["enrich", str(ds.path), "--api",
                                          f"{server.url}/3/movie/{{id}}?language=en",
                                          "--fields", "overview"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert "enriched 3 items (1 not found, 4 fetched now)" in result.output
    assert Dataset.load(ds.path).items["overview"].to_list()[0] == "Toys come alive."


def test_enrich_errors(ds):
    with FakeAPI(movies=MOVIES, faults=["401"]) as server:
        with pytest.raises(APIError, match=r"HTTP 401.*check \$TMDB_API_KEY"):
            enrich_items(ds, server.url, ["overview"], policy=FAST, concurrency=1)
    with pytest.raises(DataError, match=r"no 'tmdb_id' column .* pass --id-column"):
        enrich_items(ds, "http://127.0.0.1:9", ["overview"], id_column="tmdb_id")
    with pytest.raises(DataError, match="name the fields"):
        enrich_items(ds, "http://127.0.0.1:9", [])
    assert "overview" not in Dataset.load(ds.path).items.columns  # nothing half-written


def test_field_value_and_url_template():
    movie = MOVIES["1"]
    assert field_value(movie, "genres") == "Animation|Comedy"
    assert field_value(movie, "belongs_to_collection.name") == "Toy Story Collection"
    assert field_value(movie, "belongs_to_collection") == \
        '{"id": 10194, "name": "Toy Story Collection"}'
    assert field_value(movie, "runtime") is None and field_value(None, "x") is None
    assert field_value({"kw": ["a", "b"]}, "kw") == "a|b"
    assert url_template("http://h/3/") == "http://h/3/movie/{id}"
    assert url_template("http://h/tv/{id}?x=1") == "http://h/tv/{id}?x=1"
