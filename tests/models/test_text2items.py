"""Text2Items: finite loss with gradients, constrained generation returns only valid items ranked
by score and equals brute force over every item, save -> load, empty queries, [UNK] share, and a
planted query -> item mapping learned."""

import numpy as np
import pytest
import torch

from genrec.models.text2items import QueryBatch, Text2Items, Text2ItemsConfig, load_tokenizer

SIZES = (3, 2, 2)
# 6 items, 2 levels + a dedup level: items 4 and 5 share their first two tokens
CODES = torch.tensor([[-1, -1, -1], [0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1],
                      [2, 0, 0]])
N_ITEMS = len(CODES) - 1


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def model(tokenizer, **kw) -> Text2Items:
    torch.manual_seed(0)
    cfg = dict(n_items=N_ITEMS, id_sizes=SIZES, vocab_size=len(tokenizer), dim=16, ff_dim=32,
               n_heads=2, head_dim=8, n_layers=1, n_decoder_layers=1, dropout=0.0, beam_size=8)
    m = Text2Items(Text2ItemsConfig(**{**cfg, **kw}))
    m._tokenizer = tokenizer
    m.set_semantic_ids(CODES)
    return m


def brute_force(m: Text2Items, query: str) -> list[tuple[float, int]]:
    """Every item's full-sequence log-probability, one decoder pass each, best first."""
    b = m.encode([query])
    out = []
    with torch.no_grad():
        enc = m.t5.encoder(input_ids=b.tokens, attention_mask=b.mask).last_hidden_state
        for item in range(1, N_ITEMS + 1):
            t = torch.tensor([item])
            dec = m.t5.decoder(inputs_embeds=m.code_emb(m._decoder_inputs(t)),
                               encoder_hidden_states=enc, encoder_attention_mask=b.mask
                               ).last_hidden_state[0]
            out.append((float(sum(m._level_logp(dec[lv], lv)[CODES[item, lv]]
                                  for lv in range(len(SIZES)))), item))
    return sorted(out, reverse=True)


def test_finite_loss_with_gradients(tokenizer):
    m = model(tokenizer, dropout=0.1).train()
    value = m.loss(m.encode(["red lipstick", "hair dryer", "soap"], np.array([1, 4, 6])))
    assert value.ndim == 0 and torch.isfinite(value)
    assert abs(value.item() - np.mean(np.log(SIZES))) < 0.6  # untrained: ~ mean log vocab
    value.backward()
    for name, p in m.named_parameters():
        if name.startswith("t5.decoder.embed_tokens") or name == "t5.shared.weight":
            continue  # the shared WordPiece table: only the query's rows get gradients
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_constrained_generation_returns_valid_items_ranked_by_score_equal_to_brute_force(tokenizer):
    m = model(tokenizer).eval()
    for query in ("red lipstick", "a hair dryer for travel"):
        ids, scores = m.generate([query], N_ITEMS)
        assert set(ids[0].tolist()) == set(range(1, N_ITEMS + 1))  # only real items, each once
        assert (scores[0][:-1] >= scores[0][1:]).all()
        ref = brute_force(m, query)
        assert ids[0].tolist() == [i for _, i in ref]
        assert torch.allclose(scores[0], torch.tensor([s for s, _ in ref]), atol=1e-4)
    ids, scores = m.generate(["x", "y"], 3, beam_size=3)
    assert ids.shape == (2, 3) and (ids > 0).all() and (ids <= N_ITEMS).all()
    ids, scores = m.generate(["x"], 8, beam_size=8)  # more than the catalogue: padded
    assert ids[0, N_ITEMS:].tolist() == [0, 0] and torch.isinf(scores[0, N_ITEMS:]).all()
    # ranked_lists: the same lists in batches, padding dropped
    lists = m.ranked_lists(["x", "y", "red lipstick"], 8, beam_size=8, batch_size=2)
    assert [r.tolist() for r in lists] == [m.generate([q], 8, 8)[0][0, :N_ITEMS].tolist()
                                           for q in ("x", "y", "red lipstick")]
    assert all(r.dtype == np.int64 for r in lists)


def test_save_load_same_output(tokenizer, tmp_path):
    m = model(tokenizer).eval()
    torch.save(m.state_dict(), tmp_path / "g.pt")
    again = Text2Items(m.config)
    again._tokenizer = tokenizer
    again.load_state_dict(torch.load(tmp_path / "g.pt", weights_only=True))
    assert torch.equal(again.codes, m.codes)
    a, b = m.generate(["coconut oil"], 4), again.eval().generate(["coconut oil"], 4)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_empty_query_and_unknown_share(tokenizer):
    m = model(tokenizer)
    for bad in ([""], ["ok", "   "]):
        with pytest.raises(ValueError, match="empty query"):
            m.generate(bad, 2)
    with pytest.raises(TypeError):
        m.encode("a string, not a list")
    assert m.unknown_share("𓀀𓀁") == 1.0 and m.unknown_share("coconut oil") == 0.0


def test_config_fails_loudly(tokenizer):
    with pytest.raises(ValueError, match="id_sizes"):
        Text2Items(Text2ItemsConfig(vocab_size=10))
    with pytest.raises(ValueError, match="sizes"):
        Text2ItemsConfig(n_layers=0).validate()
    with pytest.raises(ValueError, match="shape"):
        model(tokenizer).set_semantic_ids(CODES[:3])


def test_learns_planted_query_to_item_mapping(tokenizer):
    m = model(tokenizer, dim=32, ff_dim=64, head_dim=8)
    queries = ["red lipstick", "hair dryer", "lavender soap", "nail polish", "face cream",
               "beard oil"]
    targets = np.arange(1, N_ITEMS + 1)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    batch = m.encode(queries, targets)
    m.train()
    for _ in range(60):
        loss = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, _ = m.generate(queries, 1)
    assert ids[:, 0].tolist() == targets.tolist()


def test_pretrained_minilm_encoder_is_frozen_learns_and_reloads(tokenizer, tmp_path):
    m = model(tokenizer, encoder="minilm", dim=32, ff_dim=64, head_dim=8)
    bert_before = {k: v.clone() for k, v in m.bert.state_dict().items()}
    # the planted pairs are learned through the bridge and the decoder alone
    queries = ["red lipstick", "hair dryer", "lavender soap", "nail polish", "face cream",
               "beard oil"]
    targets = np.arange(1, N_ITEMS + 1)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    batch = m.encode(queries, targets)
    m.train()
    assert not m.bert.training  # frozen: never in training mode (no dropout)
    for _ in range(40):
        loss = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in m.bert.parameters())
    assert all(torch.equal(v, m.bert.state_dict()[k]) for k, v in bert_before.items())
    ids, _ = m.generate(queries, 1)
    assert ids[:, 0].tolist() == targets.tolist()
    torch.save(m.state_dict(), tmp_path / "g.pt")
    again = Text2Items(m.config)
    again._tokenizer = tokenizer
    again.load_state_dict(torch.load(tmp_path / "g.pt", weights_only=True))
    a, b = m.generate(["lipstick in red"], 3), again.generate(["lipstick in red"], 3)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="encoder"):
        Text2ItemsConfig(encoder="bert").validate()



def test_precomputed_frozen_states_give_the_same_loss(tokenizer):
    m = model(tokenizer, encoder="minilm", dim=32, ff_dim=64, head_dim=8).eval()
    batch = m.encode(["red lipstick", "a hair dryer for travel", "soap"], np.array([1, 2, 3]))
    direct = m.loss(batch)
    cached = QueryBatch(batch.tokens, batch.mask, batch.targets, m.frozen_states(batch))
    assert torch.allclose(m.loss(cached), direct, atol=1e-6)
    # the trainer stores them in bfloat16: the loss barely moves
    cached.states = cached.states.to(torch.bfloat16)
    assert torch.allclose(m.loss(cached), direct, atol=2e-2)
    with pytest.raises(ValueError, match="frozen"):
        model(tokenizer).frozen_states(batch)


def test_code_prior_starts_as_the_bi_encoder_over_quantised_item_vectors(tokenizer):
    m = model(tokenizer, encoder="minilm", code_prior=True, dim=32, ff_dim=64, head_dim=8).eval()
    queries = ["red lipstick", "hair dryer"]
    b = m.encode(queries)
    states = m.frozen_states(b)
    mask = b.mask[..., None].float()
    q = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)  # (2, 384)
    # items 1 and 2 sit near the queries' own vectors, the rest near their negatives
    g = torch.Generator().manual_seed(0)
    vectors = torch.zeros(N_ITEMS + 1, 384)
    vectors[1:] = -q[torch.tensor([0, 1, 0, 1, 0, 1])] + 0.01 * torch.randn(N_ITEMS, 384,
                                                                            generator=g)
    vectors[1], vectors[2] = q[0], q[1]
    m.set_code_vectors(vectors)
    lo, n = int(m.offsets[0]), SIZES[0]
    level0 = [vectors[1:][CODES[1:, 0] == t].mean(0) for t in range(n)]
    assert torch.allclose(m.centroids[lo:lo + n], torch.stack(level0), atol=1e-5)
    assert torch.all(m.centroids[int(m.offsets[-1]):] == 0)  # the dedup level has no prior
    # untrained (the output layer starts at zero): the beam follows <q, centroids> alone
    ids, _ = m.generate(queries, 1)
    assert ids[:, 0].tolist() == [1, 2]
    with pytest.raises(ValueError, match="code_prior"):
        Text2ItemsConfig(code_prior=True).validate()


def test_leaf_residual_ranks_items_of_one_prefix_by_their_exact_vectors(tokenizer):
    kw = dict(encoder="minilm", code_prior=True, dim=32, ff_dim=64, head_dim=8)
    plain, leaf = model(tokenizer, **kw).eval(), model(tokenizer, leaf_residual=True, **kw).eval()
    b = plain.encode(["red lipstick"])
    states = plain.frozen_states(b)
    q = torch.nn.functional.normalize(states.mean(1), dim=-1)[0]  # one query: no padding
    g = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, 384, generator=g), dim=-1)
    vectors[5], vectors[4] = q, -q  # items 4 and 5 share the prefix (1, 1): only dedup differs
    for m in (plain, leaf):
        m.set_code_vectors(vectors)
    # the residual is what the RQ levels leave: centroids along the path + residual = vector
    path = sum(leaf.centroids[int(leaf.offsets[lv]) + CODES[5, lv]] for lv in range(2))
    assert torch.allclose(path + leaf.residuals[5], vectors[5], atol=1e-5)
    score = {}
    for name, m in (("plain", plain), ("leaf", leaf)):
        ids, logp = m.generate(["red lipstick"], N_ITEMS, beam_size=8)
        score[name] = dict(zip(ids[0].tolist(), logp[0].tolist()))
    assert score["plain"][4] == pytest.approx(score["plain"][5])  # quantised: a tie
    gap = leaf.prior_scale.item() * float(q @ (vectors[5] - vectors[4]))
    assert score["leaf"][5] - score["leaf"][4] == pytest.approx(gap, rel=1e-3)
    with pytest.raises(ValueError, match="leaf_residual needs code_prior"):
        Text2ItemsConfig(leaf_residual=True, encoder="minilm").validate()
