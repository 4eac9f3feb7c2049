"""End-to-end through the `genrec` command (typer's CliRunner, same process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from genrec.cli import app, main

runner = CliRunner()


@pytest.fixture
def log_csv(tmp_path):
    """A small implicit log: 60 users, 40 items, two taste groups."""
    rng = np.random.default_rng(0)
    lines = ["uid,sku,ts"]
    for u in range(60):
        block = range(1, 21) if u % 2 else range(21, 41)
        for t, i in enumerate(rng.choice(list(block), size=8, replace=False)):
            lines.append(f"user{u},sku{i},{1000 * u + t}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_prepare_train_evaluate_recommend(log_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("data", "prepare", "shop", "--path", log_csv, "--user", "uid", "--item", "sku",
                 "--time", "ts")
    assert "60 users, 40 items, 480 interactions" in out
    out = invoke("train", "ease", "--data", "shop", "--set", "params.l2=10", "--out", tmp_path / "run")
    assert "NDCG@10" in out and (tmp_path / "run" / "model.npz").is_file()
    metrics = json.loads(invoke("evaluate", tmp_path / "run", "--json"))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert metrics["metrics"]["NDCG@10"] == pytest.approx(saved["NDCG@10"])
    assert metrics["n_users"] == 60
    # the planted groups: odd users get items from sku1..sku20 only
    recs = json.loads(invoke("recommend", tmp_path / "run", "--user", "user1", "-k", "5", "--json"))
    assert len(recs["items"]) == 5 and recs["fallback"] is None
    assert all(1 <= int(it["item_id"][3:]) <= 20 for it in recs["items"])


def test_unknown_user_is_an_error_unless_fallback(log_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    invoke("data", "prepare", "shop", "--path", log_csv, "--user", "uid", "--item", "sku")
    invoke("train", "popularity", "--data", "shop", "--out", tmp_path / "run")
    monkeypatch.setattr("sys.argv", ["genrec", "recommend", str(tmp_path / "run"), "--user", "ghost"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "unknown user 'ghost'" in capsys.readouterr().err
    out = invoke("recommend", tmp_path / "run", "--user", "ghost", "--fallback", "popular")
    assert "serving the most popular items" in out


@pytest.mark.parametrize("args,message", [
    (["train", "ease", "--data", "shop", "--set", "params.lambda=3"], "unknown key(s) params.lambda"),
    (["train", "nosuchmodel", "--data", "shop"], "unknown model 'nosuchmodel'"),
    (["train", "ease", "--data", "shop", "--split", "random"], "data.split: 'random'"),
    (["data", "prepare", "shop", "--path", "missing.csv", "--user", "u", "--item", "i"], "missing.csv"),
    (["evaluate", "not_a_run"], "not a genrec run directory"),
])
def test_bad_input_exits_2_with_a_reason(args, message, log_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    invoke("data", "prepare", "shop", "--path", log_csv, "--user", "uid", "--item", "sku")
    monkeypatch.setattr("sys.argv", ["genrec", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_list_names_every_preset():
    out = invoke("data", "list")
    for name in ("ml-100k", "amazon-beauty", "gowalla", "goodbooks-10k"):
        assert name in out


@pytest.mark.integration
def test_quickstart_on_real_ml100k(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_DATA", str(shared_data("ml-100k").parent))
    out = invoke("quickstart", "--out", tmp_path / "qs")
    assert "943 users, 1682 items, 100000 interactions" in out
    assert (tmp_path / "qs" / "metrics.png").stat().st_size > 10_000
    test = {m: json.loads((tmp_path / "qs" / m / "metrics.json").read_text())["test"]
            for m in ("popularity", "itemcf", "ease")}
    # the ordering every recommender paper reports on ML-100k leave-one-out
    assert test["popularity"]["NDCG@10"] < test["itemcf"]["NDCG@10"] < test["ease"]["NDCG@10"]
    assert 0.05 < test["ease"]["HR@10"] < 0.4
    assert "Top 10 for user 1 (EASE):" in out and "(19" in out  # titles carry their year
