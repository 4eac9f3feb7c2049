"""The notebook API (genrec.train / load_dataset / compare, Run.evaluate / Run.recommend)."""

from __future__ import annotations

import pytest

import genrec
from genrec.config import ConfigError
from genrec.data.prepare import prepare


@pytest.fixture
def shop(tmp_path):
    rows = ["user_id,item_id,ts"]
    for u in range(40):  # two taste groups
        items = range(0, 12) if u % 2 else range(12, 24)
        rows += [f"u{u},i{i},{100 * u + t}" for t, i in enumerate(list(items)[u % 5:u % 5 + 6])]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    prepare("shop", path=tmp_path / "log.csv", mapping={"user": "user_id", "item": "item_id",
                                                        "time": "ts"})
    return "shop"


def test_five_lines(shop, tmp_path):
    ds = genrec.load_dataset(shop)
    assert (ds.n_users, ds.n_items) == (40, 20)
    run = genrec.train("ease", data=shop, l2=5.0, out=tmp_path / "run")
    assert run.config.params["l2"] == 5.0 and (tmp_path / "run" / "run.json").is_file()
    assert run.evaluate()["NDCG@10"] == pytest.approx(run.info["metrics"]["test"]["NDCG@10"])
    recs = run.recommend("u1", k=2)
    assert len(recs) == 2 and all(int(r["item_id"][1:]) < 12 for r in recs)  # u1's group
    pop = genrec.train("popularity", data=shop)
    table = genrec.compare([run, pop])
    assert table["run"].to_list() == ["ease", "popularity"]
    assert table["NDCG@10"][0] > table["NDCG@10"][1]
    assert genrec.load_run(tmp_path / "run").evaluate("valid") == pytest.approx(
        run.info["metrics"]["valid"])


def test_bad_stage_and_unknown_param(shop):
    run = genrec.train("popularity", data=shop)
    with pytest.raises(ConfigError, match="valid, test"):
        run.evaluate("train")
    with pytest.raises(ConfigError, match="unknown key"):
        genrec.train("ease", data=shop, l3=1)


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        genrec.no_such_thing  # noqa: B018
