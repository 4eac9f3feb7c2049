"""DDP: two CPU processes (gloo on 127.0.0.1) train through ``fit`` and ``runs.train``.

One ``torch.multiprocessing.spawn`` runs every check (starting processes is the slow part):

1. ``fit`` on four fixed batches, two epochs: rank r steps on batches r and r + 2. After every
   optimizer step both ranks hold identical weights, and they match a single process that
   trains on the union of the two shards (batches 0+1, then 2+3).
2. One backward through ``distributed.wrap``: the averaged gradient equals the single-process
   gradient on the union of the two shards (every row has the same number of targets, so the
   mean of the two shard means is the union's mean).
3. ``runs.train`` with a gated SASRec: rank 0 alone writes the run directory, which reloads with
   ``load_run`` (after the vector file is deleted) and scores exactly like rank 0's model.

The sharding itself (``distributed.shard``) is checked by hand in one process.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_post_hook

from genrec.data.batches import SeqBatch, eval_batch
from genrec.models.sasrec import SASRec, SASRecConfig
from genrec.runs import load_run, make_config, train
from genrec.training import distributed
from genrec.training.trainer import TrainConfig, fit
from tests.training.test_trainer import planted_dataset

N_ITEMS, MAX_LEN, WORLD = 30, 8, 2
CFG = TrainConfig(epochs=2, lr=1e-2, seed=0, threads=1)


def sasrec() -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, n_layers=1, n_heads=2,
                               dropout=0.0))


def fixed_batches() -> list[SeqBatch]:
    """Four batches of 3 full-length rows: every row has MAX_LEN targets."""
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(1, N_ITEMS + 1, (4, 3, MAX_LEN + 1), generator=gen)
    return [SeqBatch(torch.arange(3), s[:, :-1], s[:, 1:]) for s in seq]


def union(a: SeqBatch, b: SeqBatch) -> SeqBatch:
    return SeqBatch(torch.cat([a.users, b.users]), torch.cat([a.items, b.items]),
                    torch.cat([a.targets, b.targets]))


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """Every weight but the attention's key bias: its true gradient is exactly 0 (softmax ignores
    a shift shared by all keys), so Adam turns float noise there into full-size steps."""
    keep = []
    for name, p in model.named_parameters():
        p = p.detach().reshape(-1)
        if name.endswith("attn.qkv.bias"):
            d = len(p) // 3
            p = torch.cat([p[:d], p[2 * d:]])
        keep.append(p)
    return torch.cat(keep).clone()


def trajectory(model: torch.nn.Module, batches: list, steps_per_epoch: int) -> list[torch.Tensor]:
    """The flat weights after every optimizer step of ``fit``."""
    after: list[torch.Tensor] = []
    hook = register_optimizer_step_post_hook(
        lambda *_: after.append(flat_params(model)))
    try:
        fit(model, CFG, lambda epoch: iter(batches), steps_per_epoch=steps_per_epoch)
    finally:
        hook.remove()
    return after


def _worker(rank: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        out: dict = {"trajectory": trajectory(sasrec(), fixed_batches(), steps_per_epoch=4)}

        model = sasrec()
        ddp = distributed.wrap(model, torch.device("cpu"))  # kept alive: it owns the grad hooks
        ddp(fixed_batches()[rank]).backward()
        out["grads"] = {n: p.grad.clone() for n, p in model.named_parameters()}

        sets = [f"data.name={tmp}/planted", "params.dim=16", f"params.max_len={MAX_LEN}",
                "params.n_layers=1", "params.item_repr=gated", f"params.content={tmp}/vec.npy",
                "train.epochs=3", "train.batch_size=32", "train.lr=5e-3", "train.threads=1",
                "eval.ks=[1,10]"]
        run = train(make_config("sasrec", sets), f"{tmp}/run")
        if rank == 0:
            users = np.arange(run.split.n_users)
            with torch.no_grad():
                out["scores"] = run.model.score(eval_batch(run.split, "test", users, MAX_LEN))
        out["info"] = run.info
        torch.save(out, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ds = planted_dataset(n_users=80, seed=2)
    ds.save(tmp / "planted")
    vectors = np.random.default_rng(0).normal(size=(ds.n_items, 6)).astype(np.float32)
    vectors[:3] = 0  # items 1..3 have no vector: gated falls back to their id embedding
    np.save(tmp / "vec.npy", vectors)
    mp.spawn(_worker, args=(free_port(), str(tmp)), nprocs=WORLD, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_weights_are_identical_on_both_ranks_and_match_one_process_on_the_union(ranks):
    _, (r0, r1) = ranks
    assert len(r0["trajectory"]) == len(r1["trajectory"]) == 4  # 2 epochs x 2 steps per rank
    for a, b in zip(r0["trajectory"], r1["trajectory"]):
        assert torch.equal(a, b)
    b = fixed_batches()
    single = trajectory(sasrec(), [union(b[0], b[1]), union(b[2], b[3])], steps_per_epoch=2)
    start = flat_params(sasrec())
    for step, (ddp, ref) in enumerate(zip(r0["trajectory"], single)):
        assert (ddp - start).abs().max() > 1e-3, step  # the weights really move
        torch.testing.assert_close(ddp, ref, atol=2e-6, rtol=1e-5)


def test_gradient_average_equals_the_single_process_gradient_on_the_union(ranks):
    _, (r0, r1) = ranks
    b = fixed_batches()
    model = sasrec()
    model.loss(union(b[0], b[1])).backward()
    shard0 = sasrec()
    shard0.loss(b[0]).backward()
    for name, p in model.named_parameters():
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name
        torch.testing.assert_close(r0["grads"][name], p.grad, atol=1e-7, rtol=1e-5)
    w = "item_emb.weight"
    assert (r0["grads"][w] - shard0.item_emb.weight.grad).abs().max() > 1e-4  # really averaged


def test_rank0_writes_a_run_that_loads_and_scores_like_the_trained_model(ranks):
    tmp, (r0, r1) = ranks
    assert r1["info"]["rank"] == 1 and "metrics" not in r1["info"]  # rank 1 only trained
    assert r0["info"]["world_size"] == 2 and r0["info"]["train"]["epochs_run"] == 3
    assert r0["info"]["content"]["n_without_vector"] == 3 and r0["info"]["content"]["dim"] == 6
    log = [json.loads(line) for line in (tmp / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [0, 1, 2] and all("valid" in row for row in log)
    assert json.loads((tmp / "run" / "run.json").read_text())["world_size"] == 2
    (tmp / "vec.npy").unlink()  # the vectors live in the weights now
    again = load_run(tmp / "run")
    users = np.arange(again.split.n_users)
    with torch.no_grad():
        scores = again.model.score(eval_batch(again.split, "test", users, MAX_LEN))
    assert torch.equal(scores, r0["scores"])
    assert again.model.content.present[1:4].sum() == 0 and again.model.content.present[4:].all()


def test_shard_gives_every_rank_the_same_number_of_distinct_batches():
    # 5 batches on 2 ranks: rank 1 is one short and re-uses batch 0, as DistributedSampler pads
    assert [list(distributed.shard(range(5), 5, r, 2)) for r in range(2)] == [[0, 2, 4], [1, 3, 0]]
    assert [list(distributed.shard(range(6), 6, r, 3)) for r in range(3)] == [[0, 3], [1, 4],
                                                                               [2, 5]]
    assert [list(distributed.shard(range(1), 1, r, 3)) for r in range(3)] == [[0], [0], [0]]
    with pytest.raises(ValueError, match="steps_per_epoch=5"):
        list(distributed.shard(range(4), 5, 0, 2))


def test_launch_command_runs_the_cli_module_under_torchrun():
    cmd = distributed.launch_command(3, ["train", "sasrec", "--out", "/tmp/x"])
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", "-m"]
    assert cmd[6:] == ["genrec.cli", "train", "sasrec", "--out", "/tmp/x"]
