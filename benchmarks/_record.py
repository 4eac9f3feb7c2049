"""Record one benchmark result: append it to benchmarks/results/ and re-render BENCHMARKS.md.

Each table of BENCHMARKS.md has its JSON-lines file, ``benchmarks/results/<slug of table>.jsonl``
(format: ``_results.py``). ``record`` appends one row with what every benchmark row must say:
the machine, the UTC date, the exact command, the git commit (``-dirty`` when tracked files
differ from it) and the load average; then ``render.py`` rewrites BENCHMARKS.md and README.md's
headline block from all records. Nothing already recorded is changed.

    record("Ingestion at scale", {"dataset": "ml-32m-synth", "protocol": "read->build->save",
                                  "metrics": "...", "wall time": "41.2 s", "peak memory": "2.1 GB"})

``path`` is the BENCHMARKS.md to render; its records live in ``benchmarks/results`` beside it,
so a benchmark pointed at another file (``--out /tmp/b.md``) keeps its records apart.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import (append_record, read_jsonl, results_dir, row_record,  # noqa: E402
                      section_record, slug)

__all__ = ["record", "reset_table", "machine", "git_commit", "COLUMNS"]

COLUMNS = ["dataset", "protocol", "metrics", "wall time", "peak memory", "machine",
           "date (UTC)", "command"]
REPO = Path(__file__).resolve().parents[1]
# What recording itself writes: a change there does not make the tree dirty.
OUTPUTS = ("BENCHMARKS.md", "README.md", "benchmarks/results")


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


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse --short HEAD`` of ``repo``, plus '-dirty' when a tracked file other than
    OUTPUTS differs from it; 'unknown' outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                    *(f":(exclude){p}" for p in OUTPUTS))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _python() -> str:
    """The interpreter as typed from the repo root (.venv/bin/python), else its full path."""
    exe = Path(sys.executable)
    return str(exe.relative_to(Path.cwd())) if exe.is_relative_to(Path.cwd()) else str(exe)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime())


def _command() -> str:
    return shlex.join([_python(), *sys.argv])


@contextmanager
def _locked(markdown: Path):
    """Hold ``markdown``'s lock: several benchmarks may finish at the same time, and each one's
    append + render must see the others' records."""
    markdown.parent.mkdir(parents=True, exist_ok=True)
    with markdown.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _columns(path: Path) -> list[str] | None:
    """The column order of the newest ``section`` record in ``path`` (None: no section yet)."""
    heads = [r for r in read_jsonl(path) if r["kind"] == "section"]
    return heads[-1]["columns"] if heads else None


def _render(markdown: Path) -> None:
    from render import write

    write(markdown)


def record(table: str, row: dict, path: str | Path = REPO / "BENCHMARKS.md", *,
           metrics: dict[str, float] | None = None) -> Path:
    """Append ``row`` to the records of table ``table`` and re-render ``path``; returns ``path``.

    ``machine``, ``date (UTC)`` and ``command`` are filled in unless ``row`` gives them;
    ``metrics`` adds numbers to those parsed from the cells. A new table gets COLUMNS plus any
    other keys of ``row``; an existing one keeps its columns, and a key it lacks is an error
    (so a typo never silently drops a number).
    """
    path = Path(path)
    row = {"machine": machine(), "date (UTC)": _now(), "command": _command(), **row}
    target = results_dir(path) / f"{slug(table)}.jsonl"
    with _locked(path):
        columns = _columns(target)
        if columns is None:
            columns = COLUMNS + [k for k in row if k not in COLUMNS]
            append_record(target, section_record(table, "", columns, reset=False,
                                                 commit=git_commit(), date=row["date (UTC)"],
                                                 command=row["command"]))
        unknown = [k for k in row if k not in columns]
        if unknown:
            raise ValueError(f"{target} table {table!r} has columns {columns}; the row also has "
                             f"{unknown}: add the column to the table or rename the key")
        append_record(target, row_record(
            table, row, commit=git_commit(), load=[round(x, 2) for x in os.getloadavg()],
            metrics=metrics, machine=machine(), command=_command()))
        _render(path)
    return path


def reset_table(path: str | Path, title: str, intro: str, header: list[str],
                append: bool = False) -> None:
    """(Re)start table ``title``: record its paragraph and columns, and re-render ``path``.

    Without ``append`` the table starts empty: the rows recorded so far stay in the JSONL as
    history but are no longer shown (the benchmark regenerates them). ``append`` keeps showing
    them and an existing table's columns, and only brings the paragraph up to date.
    """
    path = Path(path)
    target = results_dir(path) / f"{slug(title)}.jsonl"
    with _locked(path):
        columns = (_columns(target) if append else None) or header
        append_record(target, section_record(title, intro, columns, reset=not append,
                                             commit=git_commit(), date=_now(),
                                             command=_command()))
        _render(path)
