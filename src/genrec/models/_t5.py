"""What TIGER and Text2Items share of their ``transformers`` T5: the config, and the cached
beam-search step that drives the key/value cache internals (``EncoderDecoderCache``,
``reorder_cache``), so that a ``transformers`` upgrade is fixed in one place.

Both models write an item's semantic ID one level per decoder step; each supplies ``decode``,
its own decoder pass and level log-softmax (TIGER: the full T5 and a slice of its logits;
Text2Items: the bare decoder on its ID embeddings and a slice of its output layer).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from genrec.semantic_ids.trie import StepFn

__all__ = ["t5_config", "cached_beam_step"]

# decode(ids (N, n) decoder input ids, level, encoder states (N, L, D), encoder mask (N, L), cache)
#   -> (log-probs (N, size_level) of the next token after each row's last id, the updated cache)
Decode = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


def t5_config(c: Any, vocab_size: int, tie_word_embeddings: bool) -> Any:
    """A ``transformers.T5Config`` from a model config with the fields dim, head_dim, ff_dim,
    n_heads, n_layers, n_decoder_layers and dropout; token 0 is PAD, EOS and decoder start."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size, d_model=c.dim, d_kv=c.head_dim, d_ff=c.ff_dim,
        num_layers=c.n_layers, num_decoder_layers=c.n_decoder_layers, num_heads=c.n_heads,
        dropout_rate=c.dropout, feed_forward_proj="relu", pad_token_id=0, eos_token_id=0,
        decoder_start_token_id=0, tie_word_embeddings=tie_word_embeddings)


def cached_beam_step(decode: Decode, enc: torch.Tensor, mask: torch.Tensor,
                     level_ids: torch.Tensor) -> StepFn:
    """A beam-search step (``genrec.semantic_ids.trie.StepFn``) over one batch's encoder states
    ``enc`` (B, L, D) and ``mask`` (B, L), with a key/value cache per beam.

    A prefix's decoder input ids are the start token 0, then token t of level l as
    ``t + level_ids[l]``. A fresh start (``parents`` None, as at depth 0 and in brute force)
    decodes every prefix in full; later steps reorder the cache by parent and feed only the
    newest token.
    """
    B, state = len(enc), {}

    def step(tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        _, M, d = tokens.shape  # (B, M, d): M beams of depth d per query
        if parents is None:  # a fresh start: every prefix in full
            ids = torch.cat([tokens.new_zeros(B, M, 1), tokens + level_ids[:d]], 2)  # (B, M, d+1)
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            states = enc.repeat_interleave(M, 0)  # (B*M, L, D)
        else:  # extend the cached beams: reorder the cache by parent, feed the new token only
            cache, user = state["cache"], torch.arange(B, device=enc.device)[:, None]
            cache.self_attention_cache.reorder_cache((user * state["M"] + parents).reshape(-1))
            if M != state["M"]:
                # all beams of a query share its encoder keys/values: copy them only when the
                # number of beams changes (copying them per step was most of the time)
                cache.cross_attention_cache.reorder_cache(
                    (user * state["M"]).expand(B, M).reshape(-1))
            ids = tokens[:, :, -1:] + level_ids[d - 1]  # (B, M, 1)
            # the cross-attention keys/values are cached: the encoder states only give shapes
            states = enc[:1].expand(B * M, -1, -1)
        logp, cache = decode(ids.reshape(B * M, ids.shape[2]), d, states,
                             mask.repeat_interleave(M, 0), cache)
        state.update(cache=cache, M=M)
        return logp.view(B, M, -1)  # (B, M, size_d)

    return step
