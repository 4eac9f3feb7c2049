"""GENIUS through ``genrec.runs.train`` on a tiny P6 (``next_k``) dataset: encoder pre-training
then encoder-decoder in the one trainer, P6 session metrics and gate usage in metrics.json, the
content expert fed by the builder, ``--resume`` continuing in the right phase, save -> load, and
a top-k model on the same split getting the same session metrics from its top-20 list (the
evaluator's, kept: each user scored once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.config import ConfigError
from genrec.runs import evaluate_run, load_run, make_config, model_kind, scorer, train
from genrec.runs.kinds.session import p6_metrics
from genrec.topk import top_k

N_USERS, N_ITEMS, PER_USER = 40, 60, 16
SMALL = ["params.dim=16", "params.n_layers=1", "params.n_decoder_layers=1", "params.max_len=8",
         "params.session_len=6", "params.dropout=0.0", "params.n_time_buckets=0",
         "params.beam_size=2", "train.batch_size=16", "train.lr=0.01", "train.threads=1",
         "train.patience=10", "data.split=next_k", "eval.ks=[5,10]", "eval.auc=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Users walk the catalogue in +1 steps from a random start; items carry 4-d text vectors."""
    from genrec.data.prepare import prepare
    from genrec.features.store import save_vectors

    root = tmp_path_factory.mktemp("genius_run")
    rng = np.random.default_rng(0)
    lines = ["user,item,time"]
    for u in range(N_USERS):
        start = int(rng.integers(N_ITEMS))
        for t in range(PER_USER):
            lines.append(f"u{u:03d},i{(start + t) % N_ITEMS:02d},{1000 * u + t}")
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREC_HOME", str(root / "home"))
        ds = prepare("walks", path=root / "log.csv",
                     mapping={"user": "user", "item": "item", "time": "time"})
    ids = [str(i) for i in ds.item_ids[1:]]
    save_vectors(ds, "text", ids, rng.normal(size=(len(ids), 4)), {"source": "test"})
    return Path(ds.path)


def sft_sets(data: Path) -> list[str]:
    return [f"data.name={data}", *SMALL, "train.epochs=2", "params.pretrain_epochs=1",
            "params.experts=[\"behaviour\",\"content\"]", "params.content=text",
            "train.metric=session/NDCG@5"]


@pytest.fixture(scope="module")
def sft(data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft") / "run"
    return train(make_config("genius", sft_sets(data)), out), out


def test_genius_trains_in_two_phases_and_reports_p6_metrics(data, sft, tmp_path):
    run, out = sft
    test = run.info["metrics"]["test"]
    for key in ("session/Recall@20", "session/NDCG@5", "session/HR@10", "session/ILD@10",
                "session/novelty@10", "session/coverage@10", "gate/behaviour", "gate/content"):
        assert key in test and np.isfinite(test[key]), key
    assert test["session/n_sessions"] == N_USERS and run.info["split"]["excluded_users"] == 0
    assert test["gate/behaviour"] + test["gate/content"] == pytest.approx(1.0)
    positions = sorted(int(k.split("@")[1]) for k in test if k.startswith("gate/behaviour@"))
    assert positions == [1, 2, 3, 4]  # 5-item test sessions; position 0 reads the start token
    for p in positions:  # per position the weights of the item's experts sum to 1
        assert test[f"gate/behaviour@{p}"] + test[f"gate/content@{p}"] == pytest.approx(1.0)
    assert (out / "gate.png").stat().st_size > 0
    assert run.info["content"]["dim"] == 4
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("session/NDCG@5" in row["valid"] for row in log)

    again = load_run(out)  # the content vectors come back with the weights
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(torch.as_tensor(scorer(again, "test")(users)).numpy(),
                                  torch.as_tensor(scorer(run, "test")(users)).numpy())

    resumed = train(make_config("genius", [*sft_sets(data), "train.epochs=3"]), out, resume=True)
    assert resumed.info["train"]["epochs_run"] == 3  # one more epoch, in the session phase


def test_a_planted_walk_beats_popularity_on_the_session_metrics(data, tmp_path):
    torch.set_num_threads(1)
    genius = train(make_config("genius", [f"data.name={data}", *SMALL, "train.epochs=25",
                                          "params.experts=[\"behaviour\"]"]))
    popular = train(make_config("popularity", [f"data.name={data}", "data.split=next_k",
                                               "eval.ks=[5,10]"]))
    g, p = genius.info["metrics"]["test"], popular.info["metrics"]["test"]
    assert "session/NDCG@5" in p and "gate/behaviour" not in p  # top-20 lists as sessions
    assert g["session/NDCG@5"] > p["session/NDCG@5"] + 0.2
    assert g["session/Recall@20"] > p["session/Recall@20"]


def test_dpo_aligns_against_a_frozen_reference_of_the_same_config(data, sft, tmp_path):
    _, ref = sft
    dpo = [*sft_sets(data), "params.pretrain_epochs=0", f"params.dpo_reference={ref}",
           "params.dpo_samples=3", "params.dpo_lambda=0.5", "params.dpo_mu=0.5", "train.epochs=1"]
    run = train(make_config("genius", dpo), tmp_path / "dpo")
    loss = run.info["train"]["best_metric"], json.loads((tmp_path / "dpo" / "train_log.jsonl")
                                                         .read_text().splitlines()[0])["loss"]
    assert np.isfinite(loss[1]) and loss[1] <= np.log(2) + 1e-3  # starts at log 2, goes down
    assert "session/ILD@10" in run.info["metrics"]["test"]
    with pytest.raises(ConfigError, match="differing: dim"):  # another architecture: refused
        train(make_config("genius", [*dpo, "params.dim=32"]), tmp_path / "bad")
    with pytest.raises(ConfigError, match="not a trained genius run"):
        train(make_config("genius", [*dpo[:-5], f"params.dpo_reference={tmp_path}",
                                     *dpo[-4:]]), tmp_path / "bad2")


def test_init_from_continues_plain_sft_from_a_run_of_the_same_config(data, sft, tmp_path):
    """The DPO benchmark's extra-steps control: the weights of the SFT run, then session SFT."""
    _, ref = sft
    sets = [*sft_sets(data), "params.pretrain_epochs=0", f"params.init_from={ref}",
            "train.epochs=1", "train.lr=1e-9"]  # one step of almost nothing: still the SFT weights
    run = train(make_config("genius", sets), tmp_path / "more")
    start = torch.load(ref / "model.pt", weights_only=True)
    for name, value in run.model.state_dict().items():
        torch.testing.assert_close(value, start[name], atol=1e-5, rtol=0, msg=name)
    with pytest.raises(ConfigError, match="params.init_from: .* differing: dim"):
        train(make_config("genius", [*sets, "params.dim=32"]), tmp_path / "bad")
    with pytest.raises(ValueError, match="init_from continues a trained run"):
        train(make_config("genius", [*sets, "params.pretrain_epochs=1"]), tmp_path / "bad2")


def test_the_image_expert_reads_a_precomputed_vector_file(data, tmp_path):
    """No shared dataset has images: the image expert is fed a vector file keyed by item id."""
    ids = [f"i{i:02d}" for i in range(N_ITEMS)][:-3]  # three items without an image
    np.savez(tmp_path / "img.npz", item_id=np.array(ids),
             vector=np.random.default_rng(1).normal(size=(len(ids), 3)))
    sets = [f"data.name={data}", *SMALL, "train.epochs=1",
            "params.experts=[\"behaviour\",\"image\"]", f"params.image={tmp_path / 'img.npz'}"]
    run = train(make_config("genius", sets), tmp_path / "run")
    assert run.info["image"]["dim"] == 3 and run.info["image"]["n_without_vector"] == 3
    test = run.info["metrics"]["test"]
    assert test["gate/behaviour"] + test["gate/image"] == pytest.approx(1.0)
    users = np.arange(N_USERS)
    again = load_run(tmp_path / "run")  # image vectors come back with the weights
    np.testing.assert_array_equal(torch.as_tensor(scorer(again, "test")(users)).numpy(),
                                  torch.as_tensor(scorer(run, "test")(users)).numpy())


def _rescored_lists(run, stage: str):
    """The top-20 lists as ``Kind.stage_metrics`` built them before it read the evaluator's:
    every user scored again, history masked, ``genrec.topk.top_k``."""
    score, history = scorer(run, stage), run.split.history(stage)

    def lists(users: np.ndarray) -> np.ndarray:
        scores = torch.as_tensor(score(users)).detach().float().cpu().clone()
        rows = history[users].tocoo()
        scores[torch.from_numpy(rows.row).long(), torch.from_numpy(rows.col).long()] = -np.inf
        scores[:, 0] = -np.inf
        return top_k(scores, 20)[0].numpy()

    return lists


@pytest.mark.parametrize("sparse", [False, True], ids=["all-scored", "mostly-inf"])
@pytest.mark.parametrize("name", ["ease", "popularity"])
def test_a_top_k_model_is_scored_once_for_the_same_session_metrics(data, name, sparse,
                                                                   monkeypatch):
    """The session metrics read the evaluator's kept top lists: exactly the metrics of scoring
    every user again (popularity: many ties), also when the model scores most items -inf (as
    TIGER does past its beam) and lists run short; each evaluated user is scored once."""
    run = train(make_config(name, [f"data.name={data}", "data.split=next_k", "eval.auc=false"]))
    kind = type(model_kind(name))
    plain, scored = kind.scorer, []

    def counted(self, run, stage):
        score = plain(self, run, stage)

        def count(users: np.ndarray) -> np.ndarray:
            scored.extend(users.tolist())
            out = np.array(score(users))
            if sparse:  # only every 4th item scored: 15 of 60, minus 11 of history, < 20
                out[:, np.arange(out.shape[1]) % 4 > 0] = -np.inf
            return out

        return count

    monkeypatch.setattr(kind, "scorer", counted)
    for stage in ("valid", "test"):
        scored.clear()
        new = {k: v for k, v in evaluate_run(run, stage).metrics.items()
               if k.startswith("session/")}
        assert sorted(scored) == list(range(N_USERS))  # every user has a session, scored once
        old = _rescored_lists(run, stage)
        assert new == p6_metrics(run, stage, old) and new["session/n_sessions"] == N_USERS
        assert (old(np.arange(N_USERS)) == -1).any() == sparse  # short lists where intended


def test_a_sequence_model_rolled_out_feeds_back_its_own_picks(data):
    """P6's rolled-out baseline: step 1 is the plain top-1; every later step is the model's best
    item given the history plus its earlier picks (checked one user at a time through
    ``score_history``); no history item or repeat; on +1 walks it continues the walk."""
    torch.manual_seed(0)
    run = train(make_config("sasrec", [f"data.name={data}", "data.split=next_k", "eval.auc=false",
                                       "params.dim=16", "params.n_layers=1", "params.max_len=8",
                                       "params.dropout=0.0", "train.epochs=30", "train.lr=0.01",
                                       "train.threads=1", "train.batch_size=16"]))
    kind, users, k = model_kind("sasrec"), np.arange(N_USERS), 6
    lists = kind.rollout(run, "test", k)(users)
    history = run.split.history("test")
    top1 = _rescored_lists(run, "test")(users)[:, 0]
    np.testing.assert_array_equal(lists[:, 0], top1)
    known = run.split.sequences("test")
    for u in users[:8]:
        seen = list(history[u].indices)
        for step in range(k):
            fed = np.concatenate([known[u], lists[u, :step]])
            scores = kind.score_history(run, fed)
            scores[seen + list(lists[u, :step]) + [0]] = -np.inf
            assert lists[u, step] == int(np.argmax(scores))
        assert len(set(lists[u])) == k and not set(lists[u]) & set(seen)
    metrics = p6_metrics(run, "test", kind.rollout(run, "test", 20))
    assert metrics["session/Recall@20"] > 0.8, metrics
