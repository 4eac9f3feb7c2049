"""The ``genrec`` command: thin shells over library functions, one file per command group.

Every failure a user can cause ends as one line on stderr that names the problem and the fix,
with exit status 2 and no traceback: genrec's own errors (``ConfigError``, ``DataError`` and the
other ``ValueError``s its validators raise) and the operating system's (``OSError``: a path that
cannot be read or written). Anything else is a bug in genrec: one line too, exit 1, asking for a
report. ``genrec --debug ...`` or ``GENREC_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer
from rich.markup import escape

from genrec import __version__
from genrec.cli import ablate, data, embed, quickstart, recall, run, search, semantic_ids, serve
from genrec.cli import pipeline
from genrec.cli._common import console_err

__all__ = ["app", "main"]

app = typer.Typer(help="genrec: raw interaction logs -> trained recommenders -> honest evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data.app, name="data")
app.add_typer(embed.app, name="embed")
app.add_typer(semantic_ids.app, name="semantic-ids")
app.add_typer(search.app, name="search")
app.add_typer(pipeline.app, name="pipeline")
run.register(app)
quickstart.register(app)
serve.register(app)
ablate.register(app)
recall.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"genrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    if debug:
        os.environ["GENREC_DEBUG"] = "1"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 1000 else text[:997] + "..."


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console_err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    if os.environ.get("GENREC_DEBUG") != "1":
        warnings.showwarning = _show_warning  # one line, not Python's file:line + source format
    try:
        app()
    except (ValueError, OSError) as e:  # ConfigError, DataError, UnsafePathError, bad files
        if os.environ.get("GENREC_DEBUG") == "1":
            raise
        if isinstance(e, OSError) and e.filename is not None:
            message = f"{e.filename}: {e.strerror or e}; check the path and its permissions"
        else:
            message = _one_line(e)
        console_err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:  # a bug: still one line unless asked
        if os.environ.get("GENREC_DEBUG") == "1":
            raise
        console_err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(_one_line(e))} "
                          f"(rerun with --debug for the traceback and report it)",
                          highlight=False, soft_wrap=True)
        sys.exit(1)
