"""Benchmark results as data: the JSON-lines records under ``benchmarks/results/``.

One file per section (``<slug of the section title>.jsonl``) of BENCHMARKS.md or, for the
research tables that ``render.FILES`` names, experiments/RESULTS.md; every run appends,
nothing is rewritten. Two kinds of line:

* ``{"kind": "section", ...}``: the section's paragraph (``intro``), its column order and whether
  the run that wrote it replaced the table (``reset``: rows above it are no longer shown);
* ``{"kind": "row", ...}``: one result. ``row`` holds the table cells exactly as the benchmark
  gave them (keyed by column header); the other fields are derived from them for machines:
  ``key`` (dataset + protocol + setting; the latest record per key is the one shown),
  ``dataset`` (short name), ``setting``, ``protocol``, ``metrics`` (numbers parsed from the
  cells where the format allows), and ``commit`` / ``date`` / ``machine`` / ``load`` /
  ``command`` of the run.

``_record.py`` writes these lines, ``render.py`` turns them into BENCHMARKS.md, and
``_import_legacy.py`` made the first ones from the hand-appended BENCHMARKS.md tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["results_dir", "slug", "strip_remarks", "short_dataset", "row_key", "row_setting",
           "parse_metrics", "parse_load", "row_record", "section_record", "read_jsonl",
           "read_records", "append_record", "ID_COLUMNS", "METRIC"]

# Columns that say WHAT was measured (not how well): equal values = the same setting, rerun.
ID_COLUMNS = ("dataset", "protocol", "model", "model (genrec / RecBole)", "method", "channel",
              "index", "fusion", "user text", "item text", "text", "beta", "content",
              "semantic IDs", "config", "settings", "seed")  # another seed: another row
PEER = " (genrec / RecBole)"  # a header whose cells read "genrec value / RecBole value"

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
METRIC = re.compile(r"\b(?:HR|Hit|R|N|NDCG|Recall|recall|MRR|HeldOutR)@\d+")
# "R@10 0.0924", or per-seed values with their mean: "R@10 0.0924 / 0.0918 (mean 0.0921 ± ...)"
_PAIR = re.compile(rf"({METRIC.pattern})\s+({_NUMBER})"
                   rf"((?:\s*/\s*{_NUMBER})+\s*\(mean ({_NUMBER}) ±[^)]*\))?(?![\d.]|\s*/\s*\d)")
_UNITS = re.compile(r"(?<![\d,.])(\d[\d,]*(?:\.\d+)?) (req/s|items/s|texts/s|sequences/s)")
_LATENCY = re.compile(rf"\b(p50|p95|p99) ({_NUMBER})")
# _jobs.fmt_metrics (bench_sequential, cold_tail): "masked R@5 / N@5 / R@10 / N@10", test, masked
_MASKED4 = re.compile(rf"^masked ({_NUMBER}) / ({_NUMBER}) / ({_NUMBER}) / ({_NUMBER})\b")
_LOAD = re.compile(rf"load avg(?: \(1 min\))? ({_NUMBER})(?:[/ ]({_NUMBER})[/ ]({_NUMBER}))?")


def results_dir(markdown: str | Path) -> Path:
    """The records behind ``markdown``: ``benchmarks/results`` beside it (so a copy of
    BENCHMARKS.md elsewhere, e.g. in a test's temporary folder, has its own records)."""
    return Path(markdown).parent / "benchmarks" / "results"


def slug(section: str) -> str:
    """'Baselines — P1 leave-one-out' -> 'baselines-p1-leave-one-out' (its file's name)."""
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-") or "section"


def strip_remarks(text: str) -> str:
    """Drop parenthesised remarks: 'sasrec id (best on valid)' -> 'sasrec id'."""
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", text)
        if shorter == text:
            return " ".join(text.split())
        text = shorter


def short_dataset(cell: str) -> str:
    """'amazon-beauty (22,363 users, ...)' -> 'amazon-beauty'; 'ml-1m / ml-1m-x' -> 'ml-1m'."""
    match = re.match(r"[A-Za-z0-9_.-]+", cell.strip())
    return match.group(0) if match else cell.strip()


def row_key(row: dict) -> str:
    """What a row measures: its ID_COLUMNS values without remarks, joined. A later row with the
    same key is a rerun and replaces this one in BENCHMARKS.md."""
    return " · ".join(strip_remarks(str(row[c])) for c in ID_COLUMNS if c in row)


def row_setting(row: dict) -> str:
    """The model / setting part of the key, short: no dataset, protocol, config or settings
    cell, and the genrec side of a 'genrec / RecBole' cell ('ease / EASE' -> 'ease')."""
    parts = []
    for column in ID_COLUMNS:
        value = strip_remarks(str(row.get(column, "")))
        if column not in ("dataset", "protocol", "config", "settings") and value not in ("", "–"):
            parts.append(value.split(" / ")[0] if column.endswith(PEER) else value)
    return " · ".join(parts)


def _first_number(cell: str) -> float | None:
    """The number a cell opens with ('**0.2227** (+8.2%)' -> 0.2227); not a label or a ratio
    ('20: 0.0682', '256/256')."""
    match = re.match(rf"^\**\s*({_NUMBER})(?!\S*[/:])", cell.strip())
    return float(match.group(1)) if match else None


def _column_metrics(header: str, cell: str) -> dict[str, float]:
    """Numbers of a column named after its metric(s): 'HR@10', 'Recall@10 (genrec / RecBole)',
    'unmasked R@5/N@5/R@10/N@10', 'VALID N@10 / tail R@10'."""
    if header.endswith(PEER) and len(METRIC.findall(header)) == 1:
        name = header[: -len(PEER)]
        values = [_first_number(v) for v in cell.split(" / ")]
        if len(values) == 2 and None not in values:
            return {name: values[0], f"RecBole {name}": values[1]}
        return {}
    parts = [p.strip() for p in header.split("/")]
    if not all(METRIC.search(p) for p in parts):
        return {}
    if len(parts) == 1:
        value = _first_number(cell)
        return {} if value is None else {header: value}
    values = [_first_number(v) for v in cell.split(" / ")]
    if len(values) != len(parts) or None in values:
        return {}
    qualifier = parts[0][: METRIC.search(parts[0]).start()].strip()
    names = [parts[0]] + [p if not qualifier or p.startswith(qualifier) else f"{qualifier} {p}"
                          for p in parts[1:]]
    return dict(zip(names, values))


def _text_metrics(cell: str) -> dict[str, float]:
    """'NAME value' pairs of a free-text metrics cell. The words that open a ';'-separated
    segment qualify its pairs ('masked R@10 0.0924 / N@10 0.0569' -> 'masked R@10', 'masked
    N@10'); a list of per-seed values gives its mean ('R@10 0.09 / 0.08 (mean 0.085 ± ...)' ->
    'R@10 mean'). A pair after other words ('..., tail R@10 0.03') is skipped: its qualifier
    is unclear. The first of two equal names wins."""
    found: dict[str, float] = {}
    masked = _MASKED4.match(cell)
    if masked:
        for name, value in zip(("R@5", "N@5", "R@10", "N@10"), masked.groups()):
            found[f"masked {name}"] = float(value)
    for segment in cell.split(";"):
        pairs = list(_PAIR.finditer(segment))
        qualifier = strip_remarks(segment[: pairs[0].start()]).strip(" :,·") if pairs else ""
        for before, pair in zip([None, *pairs], pairs):
            if before is not None and re.search(r"[A-Za-z]", segment[before.end():pair.start()]):
                break
            name = f"{qualifier} {pair.group(1)}".strip()
            if pair.group(4) is None:
                found.setdefault(name, float(pair.group(2)))
            else:
                found.setdefault(f"{name} mean", float(pair.group(4)))
        for match in _UNITS.finditer(segment):
            found.setdefault(match.group(2), float(match.group(1).replace(",", "")))
        for match in _LATENCY.finditer(segment):
            found.setdefault(f"{match.group(1)} ms", float(match.group(2)))
    return found


def parse_metrics(row: dict) -> dict[str, float]:
    """The numbers of ``row`` that have a metric name, parsed where the format allows.

    The free-text ``metrics`` cell gives its 'NAME value' pairs; every other column named after a
    metric gives its number(s). Columns that quote other people's numbers ('published',
    'anchors', 'targets ...') have no metric-only header and are never read."""
    metrics: dict[str, float] = {}
    for header, cell in row.items():
        cell = str(cell)
        if header == "metrics":
            metrics.update(_text_metrics(cell))
        else:
            metrics.update(_column_metrics(header, cell))
    return metrics


def parse_load(text: str) -> list[float] | None:
    """'load avg 2.1/2.5/2.6' or 'load avg (1 min) 5.1' in ``text`` -> [2.1, 2.5, 2.6] / [5.1]."""
    match = _LOAD.search(text)
    return None if match is None else [float(g) for g in match.groups() if g is not None]


def row_record(section: str, row: dict, *, commit: str, load: list[float] | None,
               metrics: dict | None = None, machine: str | None = None,
               command: str | None = None, source: str | None = None) -> dict:
    """The JSON line of one result row; ``row`` already has machine / date (UTC) / command.
    ``machine`` and ``command`` (the plain machine, the process's command line) replace the
    row's cells in the structured fields where the benchmark wrote its own text there."""
    record = {
        "kind": "row", "section": section, "key": row_key(row),
        "dataset": short_dataset(str(row.get("dataset", ""))),
        "setting": row_setting(row), "protocol": str(row.get("protocol", "")),
        "metrics": {**parse_metrics(row), **(metrics or {})},
        "commit": commit, "date": str(row.get("date (UTC)", "")),
        "machine": machine or str(row.get("machine", "")), "load": load,
        "command": command or str(row.get("command", "")),
        "row": {k: str(v) for k, v in row.items()},
    }
    if source:
        record["source"] = source
    return record


def section_record(section: str, intro: str, columns: list[str], *, reset: bool, commit: str,
                   date: str, command: str, source: str | None = None) -> dict:
    """The JSON line that (re)starts a section: its paragraph and column order."""
    record = {"kind": "section", "section": section, "intro": intro, "columns": list(columns),
              "reset": reset, "commit": commit, "date": date, "command": command}
    if source:
        record["source"] = source
    return record


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of one file, in file order ([] if there is no such file)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def read_records(folder: str | Path) -> dict[Path, list[dict]]:
    """Every ``*.jsonl`` file of ``folder`` (sorted by name) -> its records in file order."""
    return {path: read_jsonl(path) for path in sorted(Path(folder).glob("*.jsonl"))}


def append_record(path: str | Path, record: dict) -> None:
    """Append one JSON line (UTF-8, not ASCII-escaped, so the file reads like the tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
