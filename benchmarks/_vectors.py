"""Item vectors that benchmarks need: made once with ``genrec embed items`` and then reused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def ensure_vectors(dataset: str, fields: str, name: str = "minilm", threads: int = 2
                   ) -> float | None:
    """Encode ``dataset``'s items (MiniLM, text ``fields``) into ``item_vectors/<name>.parquet``
    unless it exists; the seconds it took, or None when the file was there already."""
    from genrec.data.prepare import load_dataset
    from genrec.features.store import vectors_dir

    if (vectors_dir(load_dataset(dataset)) / f"{name}.parquet").is_file():
        return None
    t = time.perf_counter()
    cli = Path(sys.executable).parent / "genrec"
    subprocess.run([str(cli), "embed", "items", "--data", dataset, "--encoder", "minilm",
                    "--name", name, "--fields", fields, "--threads", str(threads)],
                   check=True, cwd=_REPO)
    return time.perf_counter() - t


def ensure_attribute_vectors(dataset: str, column: str = "attributes", name: str = "attributes",
                             dim: int = 128) -> float | None:
    """Item vectors from a column of space-separated attribute ids (the S3-Rec
    ``*_item2attributes.json`` category ids of the Amazon sets): TF-IDF over the ids, truncated
    SVD to ``dim`` (``dim=0``: the TF-IDF vectors themselves, one column per attribute id),
    L2-normalised; items without attributes get no vector (the model's documented fallback).
    Seconds taken, or None when ``item_vectors/<name>.parquet`` exists."""
    import numpy as np
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from genrec.data.prepare import load_dataset
    from genrec.features.store import save_vectors, vectors_dir

    ds = load_dataset(dataset)
    if (vectors_dir(ds) / f"{name}.parquet").is_file():
        return None
    if column not in ds.items.columns:
        raise SystemExit(f"{dataset}: the items table has no {column!r} column (found "
                         f"{', '.join(ds.items.columns)}); prepare it from a folder with "
                         f"*_item2attributes.json")
    t = time.perf_counter()
    items = ds.items.filter(ds.items[column].is_not_null() & (ds.items[column] != ""))
    x = TfidfVectorizer(token_pattern=r"\S+", sublinear_tf=True).fit_transform(items[column])
    if dim:
        v = TruncatedSVD(n_components=min(dim, x.shape[1] - 1), random_state=0).fit_transform(x)
        how = f"truncated SVD to {v.shape[1]}"
    else:  # TfidfVectorizer rows are L2-normalised already: the division below keeps them
        v, how = x.astype(np.float32).toarray(), "no SVD (one column per id)"
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    save_vectors(ds, name, items["item_id"].to_list(), v,
                 {"source": f"TF-IDF of the {column} ids, {how}, L2-normalised",
                  "n_attributes": x.shape[1]})
    return time.perf_counter() - t
