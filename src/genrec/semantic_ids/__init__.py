"""Semantic IDs for generative retrieval: items as short coarse-to-fine token sequences.

    rq_kmeans.py   residual k-means over item vectors (faiss)
    rq_vae.py      RQ-VAE: MLP autoencoder with residual codebooks, k-means init, dead-code reset
    codes.py       the dedup token that makes every ID unique; utilisation / collision report
    store.py       <dataset>/semantic_ids/<name>.parquet + .json: build, save, load
    trie.py        prefix trie over valid IDs; constrained beam search; brute-force reference

Build with ``genrec semantic-ids build --data NAME --vectors ENCODER --method rq_kmeans``.
"""

from genrec.semantic_ids.codes import code_report, dedup
from genrec.semantic_ids.trie import PrefixTrie, beam_search, brute_force_topk

__all__ = ["PrefixTrie", "beam_search", "brute_force_topk", "code_report", "dedup"]
