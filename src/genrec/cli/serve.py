"""``genrec serve RUN_DIR``: the HTTP API and web page for a trained run or a pipeline run
(FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train` or "
                                   "`genrec pipeline train`"),
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
    from genrec.serving.bundle import check_run_dir, is_pipeline_run
    from genrec.retrieval.text import ENCODERS
    from genrec.serving.search import is_search_run

    if not is_pipeline_run(run_dir):  # a wrong directory is a clear error now, not at startup
        check_run_dir(run_dir)
    if search not in ENCODERS and not is_search_run(search):
        raise typer.BadParameter(f"{search!r} is not one of {', '.join(ENCODERS)} nor a run "
                                 f"directory of `genrec search train`",
                                 param_hint="--search")
    _check_bind(host, port)  # before the (possibly long) load, not after it
    import logging

    logging.basicConfig(format="%(levelname)s:     %(message)s")  # genrec's start-up steps
    logging.getLogger("genrec").setLevel(logging.INFO)
    app = create_app(run_dir, search=search, threads=threads)  # the bundle loads at startup
    typer.echo(f"loading {run_dir} (model, dataset, search index); then serving on "
               f"http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_bind(host: str, port: int) -> None:
    """DataError when ``host:port`` cannot be listened on (taken, or not this machine's)."""
    import socket

    from genrec.data.dataset import DataError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DataError(f"--host {host!r} is not an address of this machine ({e.strerror}); use "
                        f"127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            raise DataError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port "
                            f"or stop what is using it") from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
