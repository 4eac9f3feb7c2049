"""``genrec semantic-ids build``: a thin shell over ``genrec.semantic_ids.store``."""

from __future__ import annotations

from typing import Optional

import typer

from genrec.cli._common import console

app = typer.Typer(help="Semantic IDs for generative retrieval (RQ-KMeans, RQ-VAE).",
                  no_args_is_help=True)


@app.command("build")
def build_cmd(
    data: str = typer.Option(..., help="dataset preset, prepared name or directory"),
    vectors: str = typer.Option(..., help="item vectors to quantise: an encoder name written by "
                                          "`genrec embed items` (e.g. minilm)"),
    method: str = typer.Option("rq_kmeans", help="rq_kmeans | rq_vae"),
    name: Optional[str] = typer.Option(None, help="file name (default: <vectors>-<method>)"),
    levels: int = typer.Option(3, min=1, help="C: codebook levels (a dedup token is added)"),
    codebook_size: int = typer.Option(256, min=2, help="K: codes per level"),
    seed: int = typer.Option(0, help="k-means / RQ-VAE seed"),
    epochs: Optional[int] = typer.Option(None, min=1, help="rq_vae: training epochs"),
) -> None:
    """Quantise item vectors into semantic IDs: <dataset>/semantic_ids/<name>.parquet + .json."""
    from genrec.data.prepare import load_dataset
    from genrec.semantic_ids.store import build_semantic_ids

    ds = load_dataset(data)
    path, r = build_semantic_ids(ds, vectors, method, name=name, levels=levels,
                                 codebook_size=codebook_size, seed=seed, epochs=epochs)
    used = " / ".join(f"{lv['utilisation']:.0%}" for lv in r["levels"])
    console.print(f"[green]built[/] {r['n_items']:,} semantic IDs of {ds.name} with {method} "
                  f"({levels}x{codebook_size} + dedup {r['dedup_size']}) in {r['seconds']}s -> {path}")
    console.print(f"codebook utilisation per level {used}; collision rate before dedup "
                  f"{r['collision_rate']:.2%} (largest group {r['max_group']}); "
                  f"reconstruction {r['reconstruction']}")
    if r["n_fallback_ids"]:
        console.print(f"[yellow]{r['n_fallback_ids']:,} items have no content vector[/]: each got "
                      f"a reserved fallback ID (first code {codebook_size}, unique), counted in "
                      f"the report and in run.json")
