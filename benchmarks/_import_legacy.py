"""One-off: turn the hand-appended tables of BENCHMARKS.md into benchmarks/results/*.jsonl.

    .venv/bin/python benchmarks/_import_legacy.py [--force]

Run once (issue 17), when BENCHMARKS.md was still written row by row by ``_record.record``; kept
for the record of how the first JSON lines were made: it reads BENCHMARKS.md as committed in
LEGACY, the last commit of the hand-appended file. Each ``## section`` becomes one file: a
``section`` line (its paragraph and header) and one ``row`` line per table row, in file order,
with every cell kept under its column header. A row's commit is the commit that added its line
(``git blame`` at LEGACY); its date, machine and command are its own cells.
Refuses to overwrite existing record files unless ``--force``; afterwards run render.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import (append_record, parse_load, results_dir, row_record,  # noqa: E402
                      section_record, slug)

SOURCE = "BENCHMARKS.md"
LEGACY = "fb26085"  # the last commit of the hand-appended BENCHMARKS.md


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout


def blame(path: str, rev: str) -> list[tuple[str, str]]:
    """(short commit, its author date 'YYYY-MM-DD HH:MM' UTC) of every line of ``path`` at
    ``rev``: the commit that added the line."""
    lines, commit, date = [], "", ""
    for line in _git("blame", "--line-porcelain", rev, "--", path).splitlines():
        if line.startswith("\t"):  # the line's text closes its block
            lines.append((commit[:7], date))
        elif re.match(r"[0-9a-f]{40} ", line):  # opens the block of the next line
            commit = line[:40]
        elif line.startswith("author-time "):
            date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(line.split()[1])))
    return lines


def split_row(line: str) -> list[str]:
    """'| a | b \\| c |' -> ['a', 'b | c']."""
    cells = line.strip()[1:-1].replace("\\|", "\0").split("|")
    return [c.strip().replace("\0", "|") for c in cells]


def sections(lines: list[str]) -> list[dict]:
    """[{title, intro, intro_line, header, header_line, rows: [(line number, cells)]}]."""
    found: list[dict] = []
    for number, line in enumerate(lines):
        if line.startswith("## "):
            found.append({"title": line[3:].strip(), "intro": [], "intro_line": None,
                          "header": None, "header_line": None, "rows": []})
        elif not found or not line.strip() or line.startswith("|---"):
            continue
        elif line.startswith("|"):
            part = found[-1]
            if part["header"] is None:
                part["header"], part["header_line"] = split_row(line), number
            else:
                part["rows"].append((number, split_row(line)))
        else:
            part = found[-1]
            part["intro_line"] = number if part["intro_line"] is None else part["intro_line"]
            part["intro"].append(line.strip())
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true", help="replace existing record files")
    args = ap.parse_args()
    lines = _git("show", f"{LEGACY}:{SOURCE}").splitlines()
    who = blame(SOURCE, LEGACY)
    assert len(who) == len(lines), (len(who), len(lines))
    folder = results_dir(REPO / SOURCE)
    parts = sections(lines)
    targets = [folder / f"{slug(p['title'])}.jsonl" for p in parts]
    existing = [t for t in targets if t.exists()]
    if existing and not args.force:
        raise SystemExit(f"{len(existing)} record files exist (e.g. {existing[0]}); --force")
    for target in existing:
        target.unlink()
    command = ".venv/bin/python benchmarks/_import_legacy.py"
    n_rows = 0
    for part, target in zip(parts, targets):
        at = part["intro_line"] if part["intro_line"] is not None else part["header_line"]
        commit, date = who[at]
        append_record(target, section_record(
            part["title"], "\n\n".join(part["intro"]), part["header"], reset=False,
            commit=commit, date=date, command=command,
            source=f"{SOURCE} line {at + 1} at {LEGACY}"))
        for number, cells in part["rows"]:
            if len(cells) != len(part["header"]):
                raise SystemExit(f"{SOURCE} line {number + 1}: {len(cells)} cells, header has "
                                 f"{len(part['header'])}")
            row = dict(zip(part["header"], cells))
            load = parse_load(row.get("machine", "") + " " + row.get("notes", ""))
            append_record(target, row_record(part["title"], row, commit=who[number][0],
                                             load=load,
                                             source=f"{SOURCE} line {number + 1} at {LEGACY}"))
        n_rows += len(part["rows"])
        print(f"{target.relative_to(REPO)}: {len(part['rows'])} rows")
    print(f"{n_rows} rows in {len(parts)} files; now run benchmarks/render.py")


if __name__ == "__main__":
    main()
