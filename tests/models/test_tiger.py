"""TIGER conformance: finite loss with gradients, generate emits only valid unseen items and
equals brute force over the trie, score shape and PAD, padding invariance, save -> load, a
planted pattern, and the run path (semantic IDs from the dataset folder, clear error without)."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from genrec.data.batches import SeqBatch
from genrec.data.dataset import DataError, Dataset
from genrec.models.tiger import TIGER, TIGERConfig
from genrec.semantic_ids.trie import beam_search, brute_force_topk

N_ITEMS = 12
SIZES = (3, 2, 2, 2)
# 12 items, 3 levels + a dedup level: items 11 and 12 share their first three tokens
CODES = torch.tensor([[-1, -1, -1, -1],
                      [0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0],
                      [1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0], [2, 0, 0, 0], [2, 0, 1, 0],
                      [2, 1, 1, 0], [2, 1, 1, 1]])


def model(**kw) -> TIGER:
    torch.manual_seed(0)
    cfg = dict(n_items=N_ITEMS, id_sizes=SIZES, max_len=6, user_buckets=5, dim=16, ff_dim=32,
               n_heads=2, head_dim=8, n_layers=1, n_decoder_layers=1, dropout=0.0, beam_size=6)
    m = TIGER(TIGERConfig(**{**cfg, **kw}))
    m.set_semantic_ids(CODES)
    return m


def batch() -> SeqBatch:
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 9], [0, 0, 0, 0, 0, 10]])
    targets = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 8, 9, 11], [0, 0, 0, 0, 0, 12]])
    return SeqBatch(torch.arange(3), items, targets)


def test_finite_loss_with_gradients_on_every_parameter():
    m = model(dropout=0.1).train()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    # untrained: about the mean log vocabulary size of the levels
    assert abs(value.item() - np.mean(np.log(SIZES))) < 0.5
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_training_examples_are_every_prefix_or_a_sample():
    m = model()
    hist, users, target = m._examples(batch())
    assert len(hist) == 6 + 3 + 1 and target.tolist()[:3] == [2, 3, 4]
    assert hist[0].tolist() == [0, 0, 0, 0, 0, 1] and hist[5].tolist() == [1, 2, 3, 4, 5, 6]
    assert hist[8].tolist() == [0, 0, 0, 7, 8, 9] and users.tolist() == [0] * 6 + [1] * 3 + [2]
    sampled, _, _ = model(train_prefixes=2)._examples(batch())
    assert len(sampled) == 2 + 2 + 1


def test_generate_returns_valid_unseen_items_best_first_and_equals_brute_force():
    m = model().eval()
    b = batch()
    items, scores = m.generate(b, k=4)
    assert items.shape == (3, 4) and ((items >= 1) & (items <= N_ITEMS)).all()
    for row in range(3):
        assert len(set(items[row].tolist())) == 4
        assert not set(items[row].tolist()) & set(b.items[row].tolist())  # history skipped
        assert (scores[row, :-1] >= scores[row, 1:]).all()
    with torch.no_grad():  # the cached search against every valid ID scored in full
        ref_ids, ref_scores = brute_force_topk(m._step_fn(b), m.trie(), 3, 4, exclude=b.items)
        ids, s, _ = beam_search(m._step_fn(b), m.trie(), 3, N_ITEMS, 4, exclude=b.items)
    assert torch.equal(ids, ref_ids) and torch.allclose(s.double(), ref_scores, atol=1e-5)


def test_score_shape_pad_and_only_the_beam_is_finite():
    m = model(beam_size=5).eval()
    with torch.no_grad():
        s = m.score(SeqBatch(torch.arange(2), torch.tensor([[0, 1, 2], [0, 0, 0]])))
    assert s.shape == (2, N_ITEMS + 1) and (s[:, 0] == -math.inf).all()
    assert torch.isfinite(s).sum(1).tolist() == [5, 5]
    assert (s[0, [1, 2]] == -math.inf).all()
    with torch.no_grad():
        empty = m.score(SeqBatch(torch.arange(2), torch.zeros(2, 0, dtype=torch.int64)))
    assert torch.equal(empty[1], s[1])  # no history = an all-PAD row


def test_unconstrained_search_names_items_or_minus_one():
    m = model().eval()
    ids, _, tokens = m.beam(batch(), k=6, beam_size=24, constrained=False)
    from_codes = {tuple(c.tolist()): i for i, c in enumerate(CODES) if i}
    expected = [[from_codes.get(tuple(t.tolist()), -1) for t in row] for row in tokens]
    assert ids.tolist() == expected


def test_extra_left_padding_changes_nothing():
    m = model().eval()
    with torch.no_grad():
        narrow = m.score(SeqBatch(torch.tensor([3]), torch.tensor([[4, 5]])))
        wide = m.score(SeqBatch(torch.tensor([3]), torch.tensor([[0, 0, 0, 0, 4, 5]])))
    assert torch.allclose(narrow, wide, atol=1e-5)


def test_save_load_gives_identical_generations(tmp_path):
    m = model(dropout=0.2)
    m.loss(batch()).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * p.grad)  # not the initial weights
    torch.save(m.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(123)
    other = TIGER(TIGERConfig(**{**m.config.__dict__}))  # codes come from the weights
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    a, sa = m.eval().generate(batch(), 5)
    b, sb = other.eval().generate(batch(), 5)
    assert torch.equal(a, b) and torch.equal(sa, sb)


def test_planted_pattern_is_learned():
    # every user walks the items in a cycle: the next item is always item % 12 + 1
    m = model(dim=32, ff_dim=64, n_heads=4, user_buckets=0)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(80):
        start = rng.integers(1, N_ITEMS + 1, size=16)
        seq = (start[:, None] + np.arange(7)) % N_ITEMS + 1  # (16, 7)
        b = SeqBatch(torch.arange(16), torch.from_numpy(seq[:, :-1]), torch.from_numpy(seq[:, 1:]))
        loss = m.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    last = np.arange(1, N_ITEMS + 1)
    hist = np.stack([(last - 3 + j) % N_ITEMS + 1 for j in range(3)], 1)  # 3 items ending in last
    items, _ = m.generate(SeqBatch(torch.arange(N_ITEMS), torch.from_numpy(hist)), k=1)
    assert (items[:, 0].numpy() == last % N_ITEMS + 1).mean() >= 0.9


def test_missing_semantic_ids_name_the_fix():
    with pytest.raises(ValueError, match="genrec semantic-ids build"):
        TIGER(TIGERConfig(n_items=5))
    with pytest.raises(ValueError, match="n_items \\+ 1, levels"):
        model().set_semantic_ids(CODES[:5])


def cycle_dataset(path) -> Dataset:
    """40 users walking 12 items in a cycle, with 4-d item vectors saved as 'vec'."""
    rows = [(u, (u + t) % N_ITEMS + 1, t) for u in range(40) for t in range(8)]
    ds = Dataset(
        interactions=pl.DataFrame(rows, schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                                "timestamp": pl.Int64}, orient="row")
        .with_columns(pl.lit(None, pl.Float32).alias("rating")),
        items=pl.DataFrame({"item_idx": list(range(1, N_ITEMS + 1)),
                            "item_id": [f"i{i}" for i in range(1, N_ITEMS + 1)]},
                           schema={"item_idx": pl.Int32, "item_id": pl.Utf8}),
        users=pl.DataFrame({"user_idx": list(range(40)), "user_id": [f"u{u}" for u in range(40)]},
                           schema={"user_idx": pl.Int32, "user_id": pl.Utf8}),
        meta={"name": "cycle"})
    ds.save(path)
    return ds


def test_run_loads_semantic_ids_and_reloads_without_them(tmp_path):
    from genrec.features.store import save_vectors
    from genrec.runs import load_run, make_config, train
    from genrec.semantic_ids.store import build_semantic_ids

    ds = cycle_dataset(tmp_path / "cycle")
    sets = [f"data.name={ds.path}", "params.semantic_ids=vec-rq_kmeans", "params.dim=16",
            "params.ff_dim=32", "params.n_heads=2", "params.head_dim=8", "params.n_layers=1",
            "params.n_decoder_layers=1", "params.beam_size=5", "train.epochs=1", "eval.ks=[5]",
            "train.metric=NDCG@5"]
    with pytest.raises(DataError, match="genrec semantic-ids build --data .* --vectors vec "
                                        "--method rq_kmeans` first"):
        train(make_config("tiger", sets), tmp_path / "run")
    vecs = np.random.default_rng(0).normal(size=(N_ITEMS, 4))
    save_vectors(ds, "vec", [f"i{i}" for i in range(1, N_ITEMS + 1)], vecs, {})
    build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=3)
    run = train(make_config("tiger", sets), tmp_path / "run")
    assert run.info["semantic_ids"]["sizes"][:2] == [3, 3]
    assert set(run.info["metrics"]["test"]) >= {"HR@5", "NDCG@5"}
    (ds.path / "semantic_ids" / "vec-rq_kmeans.parquet").unlink()  # the weights hold the codes
    again = load_run(tmp_path / "run")
    b = SeqBatch(torch.arange(3), torch.tensor([[1, 2, 3], [0, 4, 5], [0, 0, 6]]))
    assert torch.equal(run.model.eval().generate(b, 5)[0], again.model.generate(b, 5)[0])
