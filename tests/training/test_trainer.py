"""The trainer on a planted pattern (item i is always followed by next(i)), early stopping and
best-weight restore, exact resume, seeded determinism, run-directory artifacts; then
``runs.train`` end to end with SASRec, reloaded with ``load_run``."""

import json
import math

import numpy as np
import polars as pl
import pytest
import torch

from genrec.config import from_dict, load_toml, to_dict, to_toml
from genrec.data.batches import eval_batch, n_train_batches, train_batches
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split
from genrec.evaluation import evaluate
from genrec.models.sasrec import SASRec, SASRecConfig
from genrec.runs import RunConfig, evaluate_run, load_run, make_config, recommend, train
from genrec.training.trainer import TrainConfig, TrainResult, _lr_lambda, fit

N_ITEMS, MAX_LEN = 30, 8


def planted_dataset(n_users: int = 120, seed: int = 0):
    """Items in one random cycle; every user walks 6-10 consecutive steps of it."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(N_ITEMS) + 1
    rows = []
    for u in range(n_users):
        start, n = rng.integers(N_ITEMS), rng.integers(6, 11)
        rows += [(f"u{u:03d}", str(cycle[(start + t) % N_ITEMS]), t) for t in range(n)]
    u, i, t = zip(*rows)
    return build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "planted")


@pytest.fixture(scope="module")
def split():
    return make_split(planted_dataset(), "loo")


def sasrec(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, dim=32, n_layers=1, n_heads=2,
                               dropout=0.1))


def hr_at_1(model: SASRec, split, stage: str) -> float:
    def score(users):
        model.eval()
        return model.score(eval_batch(split, stage, users, MAX_LEN))
    return evaluate(score, split.history(stage), split.targets(stage), ks=(1,)).metrics["HR@1"]


def run_fit(split, cfg: TrainConfig, model=None, validate=None, **kw):
    model = model or sasrec(cfg.seed)
    batches = lambda epoch: train_batches(split, MAX_LEN, cfg.batch_size, cfg.seed, epoch)  # noqa: E731
    steps = n_train_batches(split, cfg.batch_size)
    return model, fit(model, cfg, batches, validate, steps_per_epoch=steps, **kw)


def test_sasrec_learns_the_planted_next_item(split, tmp_path):
    untrained = hr_at_1(sasrec(), split, "test")
    cfg = TrainConfig(epochs=40, lr=5e-3, batch_size=32, patience=5, metric="HR@1", seed=0,
                      warmup_steps=4, schedule="cosine")
    model = sasrec(0)
    model, result = run_fit(split, cfg, model=model,
                            validate=lambda: {"HR@1": hr_at_1(model, split, "valid")}, run_dir=tmp_path)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert untrained < 0.3 and hr_at_1(model, split, "test") > 0.8
    assert result.best_metric == max(h["valid"]["HR@1"] for h in result.history)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(result.epochs_run))
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "best.pt").is_file()


def test_bf16_autocast_learns_the_pattern_with_float32_weights(split):
    cfg = TrainConfig(epochs=25, lr=5e-3, batch_size=32, seed=0, precision="bf16")
    model, result = run_fit(split, cfg)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert hr_at_1(model, split, "test") > 0.8
    assert all(p.dtype == torch.float32 for p in model.parameters())
    seen = []  # the loss really runs under bfloat16 autocast (and only with precision=bf16)
    loss = model.loss
    model.loss = lambda b: (seen.append(torch.get_autocast_dtype("cpu")
                                        if torch.is_autocast_enabled("cpu") else None), loss(b))[1]
    fit(model, TrainConfig(epochs=1, batch_size=64, precision="bf16"),
        lambda e: train_batches(split, MAX_LEN, 64, 0, e))
    fit(model, TrainConfig(epochs=1, batch_size=64), lambda e: train_batches(split, MAX_LEN, 64, 0, e))
    assert seen[0] == torch.bfloat16 and seen[-1] is None
    with pytest.raises(ValueError, match="train.precision"):
        TrainConfig(precision="fp16").validate()


def test_freed_memory_goes_back_to_the_os_after_every_epoch(split, monkeypatch):
    import genrec.training.trainer as trainer

    calls = []
    monkeypatch.setattr(trainer, "_release_free_memory", lambda: calls.append(1))
    run_fit(split, TrainConfig(epochs=3, batch_size=64, seed=0))
    assert len(calls) == 3
    if trainer._LIBC is not None:  # glibc: the real call works here
        assert trainer._LIBC.malloc_trim(0) in (0, 1)


def test_early_stopping_stops_and_restores_the_best_epoch(split, tmp_path):
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.3, 0.9])  # best at epoch 1, then 3 without gain
    snapshots = []
    model = sasrec()

    def validate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"NDCG@10": next(scripted)}

    cfg = TrainConfig(epochs=10, lr=1e-2, batch_size=64, patience=3)
    _, result = run_fit(split, cfg, model=model, validate=validate, run_dir=tmp_path)
    assert (result.stop_reason, result.epochs_run, result.best_epoch) == ("early_stop", 5, 1)
    assert result.best_metric == 0.3
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)
    assert not torch.equal(state["item_emb.weight"], snapshots[-1]["item_emb.weight"])
    on_disk = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(on_disk[k], snapshots[1][k]) for k in state)


def test_resume_continues_exactly_from_the_saved_epoch(split, tmp_path):
    cfg = TrainConfig(epochs=4, lr=5e-3, batch_size=32, seed=3)
    validate_of = lambda m: (lambda: {"NDCG@10": -float(m.pos_emb.weight.sum())})  # noqa: E731
    straight = sasrec(3)
    run_fit(split, cfg, model=straight, validate=validate_of(straight))
    first = sasrec(3)
    _, r1 = run_fit(split, TrainConfig(epochs=2, lr=5e-3, batch_size=32, seed=3), model=first,
                    validate=validate_of(first), run_dir=tmp_path)
    resumed = sasrec(99)  # its own initial weights are overwritten by the checkpoint
    _, r2 = run_fit(split, cfg, model=resumed, validate=validate_of(resumed), run_dir=tmp_path,
                    resume=True)
    assert r1.epochs_run == 2 and r2.epochs_run == 4
    assert [h["epoch"] for h in r2.history] == [0, 1, 2, 3]
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 4
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_model_other_seed_other_model(split):
    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=32, seed=7)
    a, ra = run_fit(split, cfg)
    b, rb = run_fit(split, cfg)
    c, _ = run_fit(split, TrainConfig(epochs=2, lr=5e-3, batch_size=32, seed=8))
    assert [h["loss"] for h in ra.history] == [h["loss"] for h in rb.history]
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.item_emb.weight, c.item_emb.weight)
    assert ra.best_epoch == 1 and math.isnan(ra.best_metric)  # no validation: last epoch kept


def test_time_budget_and_bad_metric(split):
    _, r = run_fit(split, TrainConfig(epochs=50, batch_size=8, max_minutes=1e-6))
    assert r.stop_reason == "time_budget" and r.epochs_run == 1 and r.history[0]["steps"] == 1
    with pytest.raises(KeyError, match="train.metric 'NDCG@10'"):
        run_fit(split, TrainConfig(epochs=1, batch_size=64), validate=lambda: {"HR@10": 0.0})


def test_summary_times_only_full_epochs():
    history = [{"steps": 4, "train_seconds": 2.0}, {"steps": 4, "train_seconds": 4.0},
               {"steps": 1, "train_seconds": 0.5}]  # the last one was cut by the time budget
    summary = TrainResult(1, 0.2, 3, "time_budget", 7.0, history).summary()
    assert summary["sec_per_epoch"] == 3.0 and summary["stop_reason"] == "time_budget"


def test_warmup_then_cosine_schedule():
    f = _lr_lambda(TrainConfig(warmup_steps=4, schedule="cosine"), total_steps=14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(9) == pytest.approx(0.5) and f(14) == pytest.approx(0.0, abs=1e-12)
    assert _lr_lambda(TrainConfig(), None)(1000) == 1.0
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _lr_lambda(TrainConfig(schedule="cosine"), None)


def test_run_config_train_section_round_trips_through_toml(tmp_path):
    cfg = make_config("sasrec", ["train.lr=3e-4", "train.max_minutes=10", "params.loss=infonce"])
    assert cfg.train.lr == 3e-4 and cfg.train.max_minutes == 10.0 and cfg.train.schedule == "constant"
    (tmp_path / "c.toml").write_text(to_toml(to_dict(cfg)))
    assert from_dict(RunConfig, load_toml(tmp_path / "c.toml")) == cfg
    with pytest.raises(ValueError, match="schedule"):
        make_config("sasrec", ["train.schedule=linear"])


def test_runs_train_sasrec_end_to_end_then_reload(tmp_path):
    planted_dataset(seed=1).save(tmp_path / "planted")
    sets = [f"data.name={tmp_path / 'planted'}", "params.dim=32", f"params.max_len={MAX_LEN}",
            "params.n_layers=1", "params.n_heads=2", "params.dropout=0.1", "train.epochs=25",
            "train.lr=5e-3", "train.batch_size=32", "train.patience=3", "train.threads=1",
            "eval.ks=[1,10]"]
    run = train(make_config("sasrec", sets), tmp_path / "run")
    info, metrics = run.info, run.info["metrics"]
    assert info["train"]["stop_reason"] in ("early_stop", "max_epochs")
    assert metrics["test"]["HR@1"] > 0.8 and metrics["valid"]["HR@1"] > 0.8
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.toml", "run.json", "metrics.json", "model.pt", "checkpoint.pt", "curves.png",
            "train_log.jsonl"} <= files and "model.npz" not in files
    again = load_run(tmp_path / "run")
    assert isinstance(again.model, SASRec) and not again.model.training
    assert evaluate_run(again, "test").metrics == pytest.approx(metrics["test"])
    recs = recommend(again, "u000", k=3)
    assert len(recs["items"]) == 3 and recs["fallback"] is None
