"""Console helpers shared by the command files."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()
console_err = Console(stderr=True)


def metrics_table(rows: dict[str, dict[str, float]], keys: list[str], title: str = "") -> Table:
    """A rich table: one row per name in ``rows``, one column per metric key."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for k in keys:
        table.add_column(k, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys))
    return table
