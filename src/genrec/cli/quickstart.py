"""``genrec quickstart``."""

from __future__ import annotations

from pathlib import Path

import typer

from genrec.cli._common import console, metrics_table


def quickstart_cmd(out: Path = typer.Option(Path("runs/quickstart"), help="where runs and the chart go")) -> None:
    """ML-100k: prepare, train popularity/ItemCF/EASE, compare, recommend."""
    from genrec.quickstart import SHOWN_METRICS, run_quickstart

    res = run_quickstart(out, say=console.print)
    console.print(metrics_table(res["test"], SHOWN_METRICS,
                                title="ml-100k, leave-one-out, full ranking over all items (test)"))
    console.print(f"chart: {res['chart']}")
    recs = res["recommendations"]
    console.print(f"\nTop 10 for user {recs['user']} (EASE):")
    for rank, it in enumerate(recs["items"], 1):
        console.print(f"{rank:>3}. {it['title']}")
    console.print(f"\ndone in {res['seconds']:.1f}s")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)
