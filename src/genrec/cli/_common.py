"""Console helpers shared by the command files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from genrec._files import UnsafePathError, atomic_file

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


def metrics_by_k(metrics: dict[str, float], title: str = "") -> Table:
    """Metrics as rows and cut-offs K as columns (``HR@10`` -> row HR, column 10); metrics
    without a cut-off (AUC ...) get one row with their value under the first column. Fits 80
    columns for the usual 4 cut-offs."""
    by_name: dict[str, dict[int, float]] = {}
    plain: dict[str, float] = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"(.+)@(\d+)", key)
        if m:
            by_name.setdefault(m.group(1), {})[int(m.group(2))] = value
        else:
            plain[key] = value
    ks = sorted({k for row in by_name.values() for k in row})
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for k in ks or [0]:
        table.add_column(f"@{k}" if ks else "value", justify="right")
    for name in sorted(by_name):
        table.add_row(name, *(f"{by_name[name][k]:.4f}" if k in by_name[name] else "-" for k in ks))
    for name in sorted(plain):
        table.add_row(name, f"{plain[name]:.4f}", *([""] * (max(len(ks), 1) - 1)))
    return table


_TABLE_FORMATS = (".parquet", ".csv")


def refuse_existing_file(path: Path) -> None:
    """An output file must be new (genrec never replaces a file of yours) and a known format."""
    path = Path(path)
    if path.suffix.lower() not in _TABLE_FORMATS:
        raise UnsafePathError(f"{path}: the output must end in {' or '.join(_TABLE_FORMATS)}")
    if path.exists() or path.is_symlink():
        raise UnsafePathError(f"{path} already exists; genrec writes only new files: pass another "
                              f"path or remove it yourself")


def write_table(table: Any, path: Path) -> None:
    """Write a polars DataFrame as Parquet or CSV (by the suffix), atomically."""
    path = Path(path)
    with atomic_file(path, "wb") as fh:
        if path.suffix.lower() == ".csv":
            table.write_csv(fh)
        else:
            table.write_parquet(fh)
