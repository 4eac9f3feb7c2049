"""The ``genrec`` command: thin shells over library functions, one file per command group."""

from __future__ import annotations

import sys

import typer

from genrec.cli import ablate, data, embed, quickstart, recall, run, search, semantic_ids, serve
from genrec.cli._common import console_err
from genrec.config import ConfigError
from genrec.data.dataset import DataError

__all__ = ["app", "main"]

app = typer.Typer(help="genrec: raw interaction logs -> trained recommenders -> honest evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data.app, name="data")
app.add_typer(embed.app, name="embed")
app.add_typer(semantic_ids.app, name="semantic-ids")
app.add_typer(search.app, name="search")
run.register(app)
quickstart.register(app)
serve.register(app)
ablate.register(app)
recall.register(app)


def main() -> None:
    try:
        app()
    except (DataError, ConfigError) as e:
        console_err.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
