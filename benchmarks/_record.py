"""Append one result row to a markdown table in BENCHMARKS.md.

Each table lives under its own ``## <table>`` heading. ``record`` finds the heading (creating
heading and header row when missing), appends the row after the table's last row, and fills in
what every benchmark row must say: the machine, the UTC date and the exact command.

    record("Ingestion at scale", {"dataset": "ml-32m-synth", "protocol": "read->build->save",
                                  "metrics": "...", "wall time": "41.2 s", "peak memory": "2.1 GB"})
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
import time
from pathlib import Path

__all__ = ["record", "machine", "COLUMNS"]

COLUMNS = ["dataset", "protocol", "metrics", "wall time", "peak memory", "machine",
           "date (UTC)", "command"]


def machine() -> str:
    """'2 cores (AMD EPYC), 23 GB RAM': cores this process may use, CPU model, total memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model, mem_kb = "unknown CPU", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:  # not Linux: keep what we have
        pass
    ram = f", {mem_kb / 2**20:.0f} GB RAM" if mem_kb else ""
    return f"{cores} cores ({model}){ram}"


def _python() -> str:
    """The interpreter as typed from the repo root (.venv/bin/python), else its full path."""
    exe = Path(sys.executable)
    return str(exe.relative_to(Path.cwd())) if exe.is_relative_to(Path.cwd()) else str(exe)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ").strip() or "–"


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def record(table: str, row: dict, path: str | Path = "BENCHMARKS.md") -> Path:
    """Append ``row`` to the table under ``## table`` in ``path``; returns ``path``.

    ``machine``, ``date (UTC)`` and ``command`` are filled in unless ``row`` gives them. A new
    table gets COLUMNS plus any other keys of ``row``; an existing table keeps its header, and a
    key it lacks is an error (so a typo never silently drops a number).
    """
    path = Path(path)
    row = {
        "machine": machine(),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": shlex.join([_python(), *sys.argv]),
        **row,
    }
    heading = f"## {table}"
    path.touch(exist_ok=True)
    with path.open("r+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # several benchmarks may finish at the same time
        lines = fh.read().splitlines()
        if heading not in lines:
            header = COLUMNS + [k for k in row if k not in COLUMNS]
            if not lines:
                lines = ["# Benchmarks", ""]
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", heading, "", _table_line(header), "|" + "---|" * len(header)]
            at = len(lines)
        else:
            start = lines.index(heading) + 1
            end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")),
                       len(lines))
            rows = [i for i in range(start, end) if lines[i].lstrip().startswith("|")]
            if rows:
                header = _split_row(lines[rows[0]])
                at = rows[-1] + 1
            else:  # heading with prose but no table yet
                header = COLUMNS + [k for k in row if k not in COLUMNS]
                new = ["", _table_line(header), "|" + "---|" * len(header)]
                new += [""] if end < len(lines) else []  # keep a blank line before the next heading
                lines[end:end] = new
                at = end + 3
        unknown = [k for k in row if k not in header]
        if unknown:
            raise ValueError(f"{path} table {table!r} has columns {header}; the row also has "
                             f"{unknown}: add the column to the table or rename the key")
        lines.insert(at, _table_line([row.get(c, "–") for c in header]))
        fh.seek(0)
        fh.write("\n".join(lines) + "\n")
        fh.truncate()
    return path


def _table_line(cells: list) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def reset_table(path: str | Path, title: str, intro: str, header: list[str],
                append: bool = False) -> None:
    """Write the section ``## title`` with its paragraph and header row, replacing the old section
    where it stands (its rows go), or adding it at the end; ``append`` keeps an existing one's
    header and rows and only brings its paragraph up to date."""
    path, heading = Path(path), f"## {title}"
    path.touch(exist_ok=True)
    with path.open("r+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # record() takes the same lock
        lines = fh.read().splitlines() or ["# Benchmarks"]
        section = [heading, "", intro, "", "| " + " | ".join(header) + " |",
                   "|" + "---|" * len(header)]
        if heading not in lines:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", *section]
        else:
            start = lines.index(heading)
            end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                       len(lines))
            table = next((i for i in range(start + 1, end) if lines[i].startswith("| ")), None)
            if append and table is not None:
                lines[start + 1:table] = ["", intro, ""]
            else:
                lines[start:end] = section + ([""] if end < len(lines) else [])
        fh.seek(0)
        fh.write("\n".join(lines) + "\n")
        fh.truncate()
