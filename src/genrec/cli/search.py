"""``genrec search``: text -> items generate-and-rank (``genrec.pipeline.text_search``).

    genrec search train configs/text2items_beauty.toml [--set train.max_minutes=5] [--out DIR]
    genrec search train amazon-beauty --set ranker.enabled=false
    genrec search runs/text2items_beauty "rainy day melancholy"        # = genrec search query ...
    genrec search query runs/text2items_beauty "coconut oil" -k 5 --method generator --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from genrec.cli._common import console, console_err

COMMANDS = ("train", "query")


class _QueryByDefault(TyperGroup):
    """``genrec search RUN_DIR TEXT`` is ``genrec search query RUN_DIR TEXT``."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["query", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_QueryByDefault, no_args_is_help=True,
                  help="Text -> items: train the generate-and-rank search, or query a trained one.")


@app.command("train")
def train_cmd(
    config: str = typer.Argument(..., help="a TOML preset (configs/text2items_*.toml) or a dataset"),
    set_: List[str] = typer.Option([], "--set", help="override, e.g. train.max_minutes=5 or "
                                                     "ranker.enabled=false"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/text2items_<data>)"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Build queries and semantic IDs, train the generator and the cross-encoder, save the run."""
    from genrec.pipeline.text_search import load_config, train_text_search

    cfg = load_config(config, set_)
    out = out or Path("runs") / f"text2items_{Path(cfg.data).name}"
    search = train_text_search(cfg, out, progress=progress, log=console.print)
    metrics = json.loads((out / "metrics.json").read_text())
    for name, m in metrics.items():
        shown = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        console.print(f"{name}: {shown}")
    console.print(f"[green]saved[/] {out} (generator{' + cross-encoder' if search.ranker else ''})")


@app.command("query")
def query_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec search train`"),
    text: str = typer.Argument(..., help="the query: words, a mood, a category"),
    k: int = typer.Option(10, "-k", min=1, max=100, help="how many items"),
    method: str = typer.Option("generator+ce", help="bm25 | minilm | generator | generator+ce"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Items for a free-text query, with titles and scores."""
    from genrec.pipeline.text_search import TextSearch

    if not text.strip():  # before loading the run: one line, exit 2
        console_err.print("[bold red]error:[/] empty query: give some words to search for",
                          highlight=False)
        raise typer.Exit(2)
    search = TextSearch.load(run_dir)
    if method == "generator+ce" and search.ranker is None:
        method = "generator"  # a run trained without the ranker still answers
    try:
        res = search.search(text, k, method)
    except ValueError as e:
        console_err.print(f"[bold red]error:[/] {escape(' '.join(str(e).split()))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"query": text, "method": res.method, "note": res.note,
                          "items": res.rows()}, indent=2))
        return
    if res.note:
        console.print(f"[yellow]note:[/] {res.note}")
    if not len(res.items):
        console.print("no items matched")
    for row in res.rows():
        scores = [f"{name} {row[key]:.3f}" for key, name in
                  (("generator_logp", "gen logp"), ("ce_score", "ce")) if key in row]
        if not scores:
            scores = [f"{method} {row['score']:.3f}"]
        console.print(f"{row['rank']:>3}. {row['title']}  [dim]({row['item_id']}; "
                      f"{', '.join(scores)})[/]", highlight=False)
