"""``genrec data list|prepare|report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from genrec.cli._common import console
from genrec.cli.embed import enrich_cmd
from genrec.data.ingest import Filters
from genrec.data.dataset import DataError, read_meta
from genrec.data.prepare import dataset_dir, load_dataset, prepare, prepared_datasets
from genrec.data.presets import PRESETS
from genrec.data.sources import genrec_home

app = typer.Typer(help="List, prepare and describe datasets.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Known dataset presets and whether they are prepared here, then your own prepared datasets."""
    root, prepared = genrec_home() / "datasets", prepared_datasets()
    table = Table("name", "prepared", "description")
    for name, preset in PRESETS.items():
        variants = [p for p in prepared if p == name or p.startswith(name + "@")]
        table.add_row(name, ", ".join(variants) if variants else "", preset.description)
    console.print(table)
    own = [p for p in prepared if p.split("@")[0] not in PRESETS]
    if own:
        mine = Table("name", "users", "items", "interactions", "source",
                     title="your prepared datasets (use the name with --data)", title_justify="left")
        for name in own:
            try:
                meta = read_meta(root / name)
            except DataError:
                meta = {}
            mine.add_row(name, f"{meta.get('n_users', 0):,}", f"{meta.get('n_items', 0):,}",
                         f"{meta.get('n_interactions', 0):,}", str(meta.get("source", "")))
        console.print(mine)


@app.command("prepare")
def prepare_(
    name: str = typer.Argument(..., help="a preset (see `genrec data list`) or a new name with --path"),
    raw_dir: Optional[Path] = typer.Option(None, help="folder with the raw files (else $GENREC_DATA, cache, download)"),
    path: Optional[Path] = typer.Option(None, help="your own CSV/TSV/Parquet/JSONL log"),
    format: Optional[str] = typer.Option(None, "--format", help="csv|tsv|parquet|jsonl (default: from the extension)"),
    user: str = typer.Option("user_id", help="user column of --path"),
    item: str = typer.Option("item_id", help="item column of --path"),
    time: Optional[str] = typer.Option(None, help="timestamp column of --path"),
    rating: Optional[str] = typer.Option(None, help="rating column of --path"),
    min_user: int = typer.Option(0, help="k-core: minimum interactions per user"),
    min_item: int = typer.Option(0, help="k-core: minimum interactions per item"),
    rating_threshold: Optional[float] = typer.Option(None, help="keep ratings >= this"),
    force: bool = typer.Option(False, help="rebuild even if prepared; replace a dataset prepared from another file"),
) -> None:
    """Ingest a dataset into genrec's Parquet format (filters, id maps, time order)."""
    mapping = {"user": user, "item": item, "time": time, "rating": rating} if path else None
    filters = Filters(min_user, min_item, rating_threshold)
    if raw_dir is not None and not force and path is None and name in PRESETS \
            and (dataset_dir(name, filters) / "meta.json").is_file():
        console.print(f"[yellow]note:[/] {name} is already prepared, so --raw-dir is not read; "
                      f"add --force to prepare it again from {raw_dir}")
    ds = prepare(name, filters=filters, raw_dir=raw_dir,
                 path=path, fmt=format, mapping=mapping, force=force)
    console.print(f"[green]prepared[/] {ds.name}: {ds.n_users:,} users, {ds.n_items:,} items, "
                  f"{ds.interactions.height:,} interactions -> {ds.path}")
    dropped = ds.meta.get("counts_raw", {}).get("rows_without_id_dropped", 0)
    if dropped:
        console.print(f"[yellow]note:[/] dropped {dropped:,} rows with an empty user or item id")
    if ds.meta.get("partial"):
        console.print(f"[yellow]note:[/] {ds.meta['partial']}")


@app.command("report")
def report(
    name: str = typer.Argument(..., help="prepared dataset name or directory"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: <dataset>/report)"),
) -> None:
    """Write an EDA report (markdown + PNG plots) for a dataset."""
    from genrec.data.report import write_report

    ds = load_dataset(name)
    path = write_report(ds, out or Path(ds.path) / "report")
    console.print(f"[green]report[/] {path}")


app.command("enrich")(enrich_cmd)
