"""``genrec serve RUN_DIR``: the HTTP API and web page for a trained run (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train`"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 = all)"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    search: str = typer.Option("auto", help="search encoder: auto | minilm | tfidf, or the run "
                               "directory of `genrec search train` (generate-and-rank)"),
    threads: int = typer.Option(1, min=1, help="CPU threads per scoring call (torch, BLAS, faiss)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Serve recommendations, similar items, search and a web page for RUN_DIR."""
    import uvicorn  # here, not at the top: the other commands never need the web stack

    from genrec.serving.app import create_app
    from genrec.serving.bundle import check_run_dir
    from genrec.serving.search import ENCODERS, is_search_run

    check_run_dir(run_dir)  # a wrong directory is a clear error now, not a traceback at startup
    if search not in ENCODERS and not is_search_run(search):
        raise typer.BadParameter(f"{search!r} is not one of {', '.join(ENCODERS)} nor a run "
                                 f"directory of `genrec search train`",
                                 param_hint="--search")
    app = create_app(run_dir, search=search, threads=threads)  # the bundle loads at startup
    typer.echo(f"serving {run_dir} on http://{host}:{port}/ (OpenAPI: /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
