"""``genrec embed items`` and ``genrec data enrich``: thin shells over ``genrec.features``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from genrec.cli._common import console
from genrec.config import check_device

app = typer.Typer(help="Item content vectors: text, image and embedding-API encoders.",
                  no_args_is_help=True)


def _split(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command("items")
def items_cmd(
    data: str = typer.Option(..., help="dataset preset, prepared name or directory"),
    encoder: str = typer.Option("minilm", help="minilm | st:PATH | tfidf | api:URL | "
                                               "precomputed:FILE | open_clip:WEIGHTS"),
    fields: Optional[str] = typer.Option(None, help="item columns to embed, e.g. title,genres,tags "
                                                    "(default: every text column)"),
    template: Optional[str] = typer.Option(None, help="custom text, e.g. '{title} ({year}): {genres}'"),
    name: Optional[str] = typer.Option(None, help="store name (default: from the encoder, e.g. minilm)"),
    normalize: bool = typer.Option(True, help="L2-normalise the vectors"),
    batch_size: int = typer.Option(64, min=1, help="texts per forward pass / per API request"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads (minilm/st)"),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16 (minilm/st)"),
    device: str = typer.Option("cpu", help="cpu | cuda | mps (minilm/st/open_clip)"),
    model: str = typer.Option("text-embedding-3-small", help="model name sent to api:URL"),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="environment variable holding the API key"),
    concurrency: int = typer.Option(4, min=1, help="API requests in flight"),
    dim: Optional[int] = typer.Option(None, min=1, help="api: dimensions to request; tfidf: SVD size"),
    timeout: float = typer.Option(60.0, help="API request timeout, seconds"),
    max_retries: int = typer.Option(6, min=0, help="API retries per request"),
    image_arch: str = typer.Option("ViT-B-32", help="open_clip architecture"),
    image_column: str = typer.Option("image_path", help="items column with local image paths"),
    image_root: Optional[Path] = typer.Option(None, help="folder relative image paths start from "
                                                         "(default: the dataset folder)"),
    cache: bool = typer.Option(True, help="reuse and fill <dataset>/cache/embeddings.sqlite"),
) -> None:
    """Encode every item and write <dataset>/item_vectors/<name>.parquet."""
    from genrec.data.prepare import load_dataset
    from genrec.features import (EncoderOptions, RetryPolicy, embed_items, make_encoder,
                                 read_meta)

    check_device(device, "--device")
    options = EncoderOptions(batch_size=batch_size, device=device, dtype=dtype, threads=threads,
                             model=model, api_key_env=api_key_env, concurrency=concurrency,
                             dim=dim, policy=RetryPolicy(max_retries=max_retries, timeout=timeout),
                             image_arch=image_arch, image_column=image_column, progress=True)
    enc = make_encoder(encoder, options)  # a bad model path fails before any dataset work
    ds = load_dataset(data)
    start = time.perf_counter()
    path = embed_items(ds, enc, fields=_split(fields),
                       template=template, normalize=normalize, cache=cache, name=name,
                       image_root=image_root)
    meta = read_meta(path)
    seconds = time.perf_counter() - start
    console.print(f"[green]embedded[/] {meta['n_vectors']:,} items of {ds.name} with {encoder} "
                  f"({meta['dim']}-d) in {seconds:.1f}s -> {path}")
    if meta["fallbacks"]["title"] or meta["fallbacks"]["zero"]:
        console.print(f"[yellow]note:[/] {meta['fallbacks']['title']} item(s) had only a title, "
                      f"{meta['fallbacks']['zero']} had nothing to encode (zero vectors, "
                      f"listed in the file's meta)")


def enrich_cmd(
    name: str = typer.Argument(..., help="prepared dataset name or directory"),
    api: str = typer.Option(..., help="API base (GET {api}/movie/{id}) or a URL containing {id}"),
    fields: str = typer.Option(..., help="JSON fields to merge, e.g. overview,genres,tagline"),
    id_column: str = typer.Option("item_id", help="items column whose value fills {id}"),
    api_key_env: str = typer.Option("TMDB_API_KEY", help="environment variable holding a bearer token"),
    concurrency: int = typer.Option(4, min=1, help="requests in flight"),
    timeout: float = typer.Option(30.0, help="request timeout, seconds"),
    max_retries: int = typer.Option(6, min=0, help="retries per request"),
) -> None:
    """Fetch per-item JSON from an HTTP API and merge chosen fields into items.parquet."""
    from genrec.data.prepare import load_dataset
    from genrec.features import RetryPolicy
    from genrec.features.enrich import enrich_items

    result = enrich_items(load_dataset(name), api, _split(fields) or [], id_column=id_column,
                          api_key_env=api_key_env, concurrency=concurrency,
                          policy=RetryPolicy(max_retries=max_retries, timeout=timeout),
                          progress=True)
    console.print(f"[green]enriched[/] {result.n_found:,} items ({result.n_not_found:,} not found, "
                  f"{result.n_fetched:,} fetched now) -> columns {', '.join(result.columns)} in "
                  f"{result.path}")
