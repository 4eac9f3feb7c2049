"""Ablation grids: parsing ``key=v1,v2`` axes, the cartesian product, every run on one split,
the results table (markdown + CSV + plot) matching each run's metrics.json, selection on
validation, resuming without retraining, and ``genrec ablate`` from the command line."""

from __future__ import annotations

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from genrec.ablation import expand_grid, grid_keys, parse_grid, run_ablation
from genrec.cli import ablate as ablate_cli
from genrec.config import ConfigError
from tests.training.test_trainer import planted_dataset

BASE = ["eval.ks=[5,10]", "train.threads=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("ablate") / "planted"
    planted_dataset(n_users=60, seed=5).save(path)
    return [f"data.name={path}", *BASE]


def test_parse_grid_keeps_order_and_brackets():
    grid = parse_grid(["params.l2=100,500", "eval.ks=[5,10],[20]", "params.content='a,b',c"])
    assert grid == {"params.l2": ["100", "500"], "eval.ks": ["[5,10]", "[20]"],
                    "params.content": ["'a,b'", "c"]}
    assert expand_grid({"a": ["1", "2"], "b": ["x", "y"]}) == [
        {"a": "1", "b": "x"}, {"a": "1", "b": "y"}, {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]


def test_a_zipped_axis_lists_only_the_cells_given():
    # e.g. LightGCN: fusion=none ignores the semantic flags, sum/concat need one of them
    grid = parse_grid(["params.fusion,params.user_semantic=none:false,sum:true,'c:d':false",
                       "params.dim=32,64"])
    assert grid_keys(grid) == ["params.fusion", "params.user_semantic", "params.dim"]
    cells = expand_grid(grid)
    assert len(cells) == 6
    assert cells[0] == {"params.fusion": "none", "params.user_semantic": "false",
                        "params.dim": "32"}
    assert cells[5] == {"params.fusion": "'c:d'", "params.user_semantic": "false",
                        "params.dim": "64"}
    with pytest.raises(ConfigError, match="2 parts joined by ':'"):
        parse_grid(["params.a,params.b=1:2,3"])


@pytest.mark.parametrize("specs,match", [(["params.l2"], "expects key=v1,v2"),
                                         (["params.l2=1", "params.l2=2"], "given twice"),
                                         (["params.a,params.l2=1:2", "params.l2=3"], "given twice"),
                                         (["data.split=loo,ratio"], "one split"),
                                         (["params.k=1,1"], "repeats a value"),
                                         ([], "at least one --grid")])
def test_bad_grids_say_what_to_do(specs, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(specs)


def test_ease_l2_grid_writes_a_table_that_matches_the_runs(data, tmp_path):
    res = run_ablation(None, parse_grid(["params.l2=1,30,1000"]), tmp_path, sets=data,
                       model="ease")
    names = [r.name for r in res.rows]
    assert names == ["l2-1", "l2-30", "l2-1000"] and not any(r.cached for r in res.rows)
    saved = {n: json.loads((tmp_path / "runs" / n / "metrics.json").read_text()) for n in names}
    valid = [saved[n]["valid"]["NDCG@10"] for n in names]
    assert res.select_metric == "NDCG@10" and res.selected == valid.index(max(valid))
    assert res.metrics == ["HR@10", "NDCG@10"]  # the defaults that exist with ks = [5, 10]
    with (tmp_path / "ablation.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["params.l2"] for r in rows] == ["1", "30", "1000"]  # full keys in the CSV
    for r in rows:
        assert float(r["test NDCG@10"]) == pytest.approx(saved[r["config"]]["test"]["NDCG@10"])
        assert float(r["valid NDCG@10"]) == pytest.approx(saved[r["config"]]["valid"]["NDCG@10"])
        assert (r["selected"] == "True") == (r["config"] == names[res.selected])
    md = (tmp_path / "ablation.md").read_text().splitlines()
    table = [line for line in md if line.startswith("| ")]
    assert table[0] == "| config | l2 | valid NDCG@10 | test HR@10 | test NDCG@10 | fit s |"
    assert len(table) == 4 and sum(line.count(" *") for line in table) == 1
    assert f"| {saved['l2-30']['test']['HR@10']:.4f} |" in table[2]
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "ablation.json").read_text())["grid"] == {
        "params.l2": ["1", "30", "1000"]}


def test_resumes_finished_configs_and_retrains_changed_ones(data, tmp_path, monkeypatch):
    grid = parse_grid(["params.k=2,5", "params.shrink=0,10"])
    first = run_ablation(None, grid, tmp_path, sets=data, model="itemcf")
    assert [r.name for r in first.rows] == ["k-2__shrink-0", "k-2__shrink-10", "k-5__shrink-0",
                                            "k-5__shrink-10"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished configuration was trained again")

    monkeypatch.setattr("genrec.runs.train", no_training)
    again = run_ablation(None, grid, tmp_path, sets=data, model="itemcf")
    assert all(r.cached for r in again.rows)
    assert [r.test for r in again.rows] == [r.test for r in first.rows]
    monkeypatch.undo()
    changed = run_ablation(None, parse_grid(["params.k=2"]), tmp_path,
                           sets=data + ["params.shrink=1"], model="itemcf")
    assert not changed.rows[0].cached  # same directory name, another config: retrained


def test_a_gradient_model_grid_and_a_typo_that_fails_before_training(data, tmp_path, monkeypatch):
    sets = data + ["params.dim=16", "params.max_len=8", "train.epochs=2", "train.batch_size=16"]
    res = run_ablation(None, parse_grid(["params.pooling=mean,attention"]), tmp_path / "tt",
                       sets=sets, model="two_tower")
    assert [r.values for r in res.rows] == [{"params.pooling": "mean"},
                                            {"params.pooling": "attention"}]
    assert res.rows[0].test != res.rows[1].test
    calls = []
    monkeypatch.setattr("genrec.runs.train", lambda *a, **k: calls.append(a))
    with pytest.raises(ConfigError, match="params.poolin"):
        run_ablation(None, parse_grid(["params.pooling=mean", "params.poolin=x,y"]),
                     tmp_path / "typo", sets=sets, model="two_tower")
    assert calls == []


def test_cli_runs_a_grid_from_a_model_name(data, tmp_path):
    app = typer.Typer()
    ablate_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `ablate` a subcommand
    args = ["ablate", "popularity", "--grid", "eval.batch_users=64,128", "--out", tmp_path]
    for s in data:
        args += ["--set", s]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "batch_users-64" in result.output and "ablation.md" in result.output
    assert (tmp_path / "ablation.csv").is_file()
    assert (tmp_path / "runs" / "batch_users-128").is_dir()


def test_without_validation_nothing_is_selected(tmp_path):
    from genrec.ablation import AblationResult, AblationRow, write_outputs
    from genrec.runs import make_config

    rows = [AblationRow(f"k-{k}", {"params.k": str(k)}, tmp_path / f"k-{k}", {},
                        {"HR@10": hr, "NDCG@10": hr / 2}, 1.0, False)
            for k, hr in ((10, 0.25), (50, 0.5))]
    res = AblationResult({"params.k": ["10", "50"]}, rows, ["HR@10", "NDCG@10"], "NDCG@10", None)
    files = write_outputs(res, tmp_path, make_config("itemcf", ["data.split=fixed"]))
    table = [line for line in files["md"].read_text().splitlines() if line.startswith("| k-")]
    assert table == ["| k-10 | 10 | – | 0.2500 | 0.1250 | 1.0 |",
                     "| k-50 | 50 | – | 0.5000 | 0.2500 | 1.0 |"]  # no row marked *
    with files["csv"].open() as fh:
        assert [(r["valid NDCG@10"], r["selected"]) for r in csv.DictReader(fh)] == [
            ("", "False"), ("", "False")]
