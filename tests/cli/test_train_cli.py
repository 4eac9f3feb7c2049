"""``genrec train`` for gradient models: progress output, ``--resume`` from the run directory's
checkpoint, and ``--nproc 2`` through a real torchrun (two CPU workers, gloo), whose run
directory loads like a single-process one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genrec.cli import app, main
from genrec.runs import evaluate_run, load_run
from tests.training.test_trainer import planted_dataset

runner = CliRunner()
SETS = ["--set", "params.dim=16", "--set", "params.max_len=8", "--set", "params.n_layers=1",
        "--set", "train.batch_size=32", "--set", "train.threads=1", "--set", "eval.ks=[1,10]"]


@pytest.fixture
def planted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return planted_dataset(n_users=60, seed=4).save(tmp_path / "planted")


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def exits_2(args, capsys, monkeypatch) -> str:
    monkeypatch.setattr("sys.argv", ["genrec", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    return capsys.readouterr().err.replace("\n", " ")


def epochs_logged(run_dir) -> list[int]:
    return [json.loads(x)["epoch"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_train_shows_progress_then_resume_continues_from_the_checkpoint(planted, tmp_path):
    run = tmp_path / "run"
    out = invoke("train", "sasrec", "--data", planted, "--out", run, *SETS,
                 "--set", "train.epochs=2")
    assert "epoch 1: loss" in out and "valid NDCG@10" in out and "HR@10" in out
    assert epochs_logged(run) == [0, 1]
    out = invoke("train", "sasrec", "--data", planted, "--out", run, *SETS,
                 "--set", "train.epochs=4", "--resume", "--no-progress")
    assert "epoch 0: loss" not in out and "HR@10" in out
    assert epochs_logged(run) == [0, 1, 2, 3]  # epochs 0-1 kept, 2-3 trained now
    assert json.loads((run / "run.json").read_text())["train"]["epochs_run"] == 4


def test_resume_without_a_checkpoint_and_nproc_for_closed_form_models_fail(planted, tmp_path,
                                                                          capsys, monkeypatch):
    err = exits_2(["train", "sasrec", "--data", planted, "--out", tmp_path / "none", "--resume"],
                  capsys, monkeypatch)
    assert "nothing to resume" in err and "train without --resume first" in err
    err = exits_2(["train", "ease", "--data", planted, "--nproc", "2"], capsys, monkeypatch)
    assert "fitted in closed form" in err


def test_nproc_2_trains_with_torchrun_and_the_run_loads(planted, tmp_path):
    run = tmp_path / "ddp"
    invoke("train", "sasrec", "--data", planted, "--out", run, *SETS, "--set", "train.epochs=2",
           "--nproc", 2, "--no-progress")
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["train"]["epochs_run"] == 2
    assert epochs_logged(run) == [0, 1]
    again = load_run(run)
    saved = json.loads((run / "metrics.json").read_text())["test"]
    assert evaluate_run(again, "test").metrics == pytest.approx(saved)
