"""Render BENCHMARKS.md, experiments/RESULTS.md and README.md's headline block from the records
in benchmarks/results/.

    .venv/bin/python benchmarks/render.py           # rewrite them all
    .venv/bin/python benchmarks/render.py --check   # exit 1 if any differs from the records

Every section is rendered in exactly one file (FILES): the research tables of
experiments/cold_tail.py (outside the "benchmarks regenerate BENCHMARKS.md" contract) in
experiments/RESULTS.md, the ablation tables in benchmarks/ABLATIONS.md and the speed, memory and
scale tables in benchmarks/COST.md (so that BENCHMARKS.md stays under 40 KB), every other section
in BENCHMARKS.md; their records all stay in
benchmarks/results/, so ``_record.record`` and the README headline see them alike.

Each ``## section`` shows one current table: per key (dataset + protocol + setting, see
``_results.row_key``) the latest record since the section was last reset, in the order the keys
first appeared, with the run's short commit and date. The tables stay short (BENCHMARKS.md under
40 KB): machine, date and command stay in the JSONL; a value equal in every row is said once
above the table, a long text cell equal to the one above it becomes 〃, other text cells are cut
at a word (…) just enough to keep the table near ROW_BYTES a row; sections whose numbers sit in
free text show the metrics parsed from it (VIEWS). Numbers and the cells that say what was
measured are never cut. The JSONL keeps every run and every full cell.

README.md gets a headline table between its ``headline`` markers: the best genrec record per
dataset and protocol (HEADLINE) next to published numbers and peers measured on the same data
(benchmarks/anchors.jsonl, each line with its source). The output depends on the records only
(no clock, no machine), so tests/test_benchmarks_render.py can check that it is committed.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import (ID_COLUMNS, METRIC, read_jsonl, read_records, results_dir,  # noqa: E402
                      strip_remarks)

__all__ = ["render_benchmarks", "render_page", "render_headline", "replace_block", "write",
           "current", "rendered_in", "FILES", "PAGES", "RESEARCH", "ABLATIONS", "COST",
           "TEXT"]

HIDDEN = ("machine", "date (UTC)", "command")  # in the JSONL; the table shows commit + date
# Long free text that only explains a number: left to the JSONL unless a view names it.
DETAIL = ("notes", "config", "settings", "published", "anchors")
# A table may take ROW_BYTES per row (at least MIN_TABLE_BYTES): its text cells are cut at
# the first of CELL_LIMITS that fits, a metrics cell at twice that. Numbers and the cells that
# say what was measured (_results.ID_COLUMNS) are never cut, only shown without remarks.
ROW_BYTES, MIN_TABLE_BYTES = 110, 1200
CELL_LIMITS = (200, 150, 120, 100, 80, 64, 56, 48, 40, 32, 24)
MAX_INTRO = 160  # characters of a section's paragraph
MAX_SAME = 160  # characters of a value said once above a table
DITTO = "〃"  # a long cell equal to the one above it
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
# Sections whose numbers sit in free text: the columns to show, each a row column, a metric
# parsed from the cells (_results.parse_metrics) or (header, metric). Other sections show every
# column but HIDDEN and DETAIL.
_FUSION = ("fusion", "user text", "item text", "valid NDCG@10", "test Recall@10", "test NDCG@10",
           "test Recall@20", "test NDCG@20", "cold-user R@20", "cold-user N@20",
           "cold-item R@20", "cold-item N@20", "cold-item R@100")
_TEXT_TERM = ("text", "beta", *_FUSION[3:])  # GF-CF's text term: side and weight
VIEWS: dict[str, tuple] = {
    "Sequential — P1 leave-one-out": (
        "dataset", "model", "masked R@10", "masked N@10", "unmasked R@10", "unmasked N@10",
        "valid N@10 masked/unmasked", "epochs (best)", "s/epoch", "CPU time"),
    "Generative retrieval — TIGER (P1)": (
        "model", "semantic IDs", "R@5", "N@5", "R@10", "N@10", "wall time"),
    "Sequential — item representation ablation": (
        "dataset", "model", "content", "masked R@10", "masked N@10", "cold tail R@10",
        "VALID tail R@10", ("tail-only R@10", "ranking the tail items only R@10"),
        "valid N@10", "CPU time"),
    "Sequential — item representation ablation across seeds": (
        "dataset", "model", "seeds", "masked R@10 mean", ("masked N@10 mean", "N@10 mean"),
        "cold tail R@10 mean", ("tail-only R@10 mean", "ranking the tail items only R@10 mean"),
        "CPU time"),
    "Sequential — cold tail against overall accuracy (popularity adjustment)": (
        "dataset", "model", "tau (chosen on VALID)", "VALID N@10 / tail R@10", "masked R@10",
        "masked N@10", "cold tail R@10"),
    "Text search — held-out text queries": (
        "dataset", "method", "R@10", "N@10", "HeldOutR@10", "p50 ms", "p95 ms", "wall time"),
    "Text search — human-written queries": (
        "dataset", "method", "R@10", "N@10", "MRR@10", "R@100", "wall time", "peak memory"),
    "Serving": ("dataset", "protocol", "req/s", "p50 ms", "p95 ms", "p99 ms", "peak memory"),
    "Ablation — LightGCN text fusion (ML-100k)": _FUSION,
    "Ablation — LightGCN text fusion (ml-latest-small)": _FUSION,
    "Ablation — LightGCN text fusion (Amazon Beauty)": _FUSION,
    "Ablation — GF-CF text fusion (ML-100k)": _TEXT_TERM,
    "Recall — multi-channel HitRate": (
        "dataset", "protocol", "channel", "HR@50", "HR@100", "HR@200", "share of merged@100",
        "its own test HR@10", "its own test NDCG@10"),
}
# Sections by protocol, then systems; a section not listed comes after these, by title.
ORDER = (
    "Baselines — P1 leave-one-out", "Sequential — P1 leave-one-out",
    "Generative retrieval — TIGER (P1)", "Semantic-ID recommender — P1 / P1-new",
    "Semantic-ID decoding cost", "Sequential — item representation ablation",
    "Sequential — item representation ablation across seeds",
    "Sequential — cold tail against overall accuracy (popularity adjustment)",
    "Sequential — time-to-quality vs RecBole 1.2.1", "Sequential — training and scoring speed",
    "Baselines — P2 Gowalla", "Recall — P2 Gowalla", "Graph recall — P2 Gowalla",
    "Graph recall — P3 ML-100k, identical files vs RecBole 1.2.1", "Graph recall — P4 ML-100k",
    "Baselines — P3 ML-100k / ML-1M vs RecBole 1.2.1", "Recall — P3/P4 ML-100k",
    "Ablation — LightGCN text fusion (ML-100k)",
    "Ablation — LightGCN text fusion (ml-latest-small)",
    "Ablation — LightGCN text fusion (Amazon Beauty)",
    "Ablation — GF-CF text fusion (ML-100k)",
    "Recall — multi-channel HitRate", "Retrieval — faiss vs exact", "Semantic IDs",
    "Text search — held-out text queries", "Item embeddings", "Serving", "Ingestion at scale",
    "Baselines — ingestion",
)
# The file each section is rendered in, relative to BENCHMARKS.md's folder; a section not listed
# is a benchmark and goes to BENCHMARKS.md. experiments/cold_tail.py's tables are research.
RESEARCH = "experiments/RESULTS.md"
ABLATIONS = "benchmarks/ABLATIONS.md"  # benchmark ablation tables: BENCHMARKS.md stays < 40 KB
COST = "benchmarks/COST.md"  # speed, memory and scale tables: BENCHMARKS.md keeps the quality ones
TEXT = "benchmarks/TEXT_SEARCH.md"  # text -> items: many stages x rankers, a page of its own
FILES: dict[str, str] = {
    "Sequential — item representation ablation": RESEARCH,
    "Sequential — item representation ablation across seeds": RESEARCH,
    "Sequential — cold tail against overall accuracy (popularity adjustment)": RESEARCH,
    "Ablation — LightGCN text fusion (ML-100k)": ABLATIONS,
    "Ablation — LightGCN text fusion (ml-latest-small)": ABLATIONS,
    "Ablation — LightGCN text fusion (Amazon Beauty)": ABLATIONS,
    "Ablation — GF-CF text fusion (ML-100k)": ABLATIONS,
    "Serving": COST, "Ingestion at scale": COST, "Baselines — ingestion": COST,
    "Retrieval — faiss vs exact": COST, "Semantic-ID decoding cost": COST,
    "Sequential — training and scoring speed": COST, "Ranking features at scale": COST,
    "Text search — held-out text queries": TEXT, "Text search — human-written queries": TEXT,
}


def rendered_in(title: str) -> str | None:
    """The file (FILES) that renders section ``title``; None: BENCHMARKS.md."""
    return FILES.get(title)


@dataclass(frozen=True)
class Headline:
    """One README headline row: the best genrec record (by the second metric) among
    ``sources`` = (section, protocol prefix, name of metric 1, name of metric 2) for
    ``dataset``, beside benchmarks/anchors.jsonl's lines with this ``protocol`` and dataset."""

    label: str
    dataset: str
    protocol: str
    metrics: tuple[str, str]
    sources: tuple[tuple[str, str, str, str], ...]


_P1_MASKED = (("Baselines — P1 leave-one-out", "", "HR@10", "NDCG@10"),
              ("Sequential — P1 leave-one-out", "", "masked R@10", "masked N@10"),
              ("Sequential — item representation ablation", "", "masked R@10", "masked N@10"),
              ("Generative retrieval — TIGER (P1)", "", "R@10", "N@10"))
_P1_UNMASKED = (("Sequential — P1 leave-one-out", "", "unmasked R@10", "unmasked N@10"),)
_P3 = (("Baselines — P3 ML-100k / ML-1M vs RecBole 1.2.1", "", "Recall@10", "NDCG@10"),
       ("Recall — P3/P4 ML-100k", "P3", "Recall@10", "NDCG@10"),
       ("Graph recall — P3 ML-100k, identical files vs RecBole 1.2.1", "", "Recall@10",
        "NDCG@10"))
_P2 = (("Baselines — P2 Gowalla", "", "Recall@20", "NDCG@20"),
       ("Recall — P2 Gowalla", "", "Recall@20", "NDCG@20"),
       ("Graph recall — P2 Gowalla", "", "Recall@20", "NDCG@20"))
HEADLINE = (
    Headline("Amazon Beauty · P1, history masked", "amazon-beauty", "P1", ("R@10", "N@10"),
             _P1_MASKED),
    Headline("Amazon Beauty · P1, history not masked", "amazon-beauty", "P1 unmasked",
             ("R@10", "N@10"), _P1_UNMASKED),
    Headline("Amazon Sports · P1, history masked", "amazon-sports", "P1", ("R@10", "N@10"),
             _P1_MASKED),
    Headline("ML-100k · P1, history not masked", "ml-100k", "P1 unmasked", ("R@10", "N@10"),
             _P1_UNMASKED),
    Headline("ML-100k · P3 random 8:1:1", "ml-100k", "P3", ("Recall@10", "NDCG@10"), _P3),
    Headline("ML-100k · P4 random 75/25", "ml-100k", "P4", ("Recall@10", "NDCG@10"),
             (("Recall — P3/P4 ML-100k", "P4 ratio 75/25,", "Recall@10", "NDCG@10"),
              ("Graph recall — P4 ML-100k", "", "Recall@10", "NDCG@10"))),
    Headline("ML-1M · P3 random 8:1:1", "ml-1m", "P3", ("Recall@10", "NDCG@10"), _P3),
    Headline("Gowalla · P2 fixed split", "gowalla", "P2", ("Recall@20", "NDCG@20"), _P2),
)


# ---- reading ------------------------------------------------------------------------------------
def current(records: list[dict]) -> tuple[dict | None, list[dict]]:
    """(the section's newest ``section`` record, its shown rows) of one section's records.

    Rows before the last reset are history only; per key the record with the latest date wins
    (a later line wins a tie); rows keep the order in which their keys first appeared."""
    head, start = None, -1
    for i, record in enumerate(records):
        if record["kind"] == "section":
            head = record
            start = i if record.get("reset") else start
    latest: dict[str, tuple[str, int, dict]] = {}
    for i, record in enumerate(records):
        if record["kind"] != "row" or i < start:
            continue
        key = record["key"]
        if key not in latest or (record["date"], i) >= latest[key][:2]:
            latest[key] = (record["date"], i, record)
    return head, [record for _, _, record in latest.values()]


def _by_section(folder: Path) -> dict[str, tuple[Path, list[dict]]]:
    sections: dict[str, tuple[Path, list[dict]]] = {}
    for path, records in read_records(folder).items():
        for record in records:
            sections.setdefault(record["section"], (path, []))[1].append(record)
    return sections


def _ordered(titles) -> list[str]:
    known = [t for t in ORDER if t in titles]
    return known + sorted(t for t in titles if t not in ORDER)


# ---- BENCHMARKS.md ------------------------------------------------------------------------------
def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut after a whole word (numbers stay whole) if over ``limit``."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    cut = cut[: cut.rfind(" ")] if " " in cut else text[:limit]
    if cut.count("`") % 2:  # do not leave code or bold open
        cut = cut[: cut.rfind("`")]
    if cut.count("**") % 2:
        cut = cut[: cut.rfind("**")]
    return cut.rstrip(" ,;:·/(–-") + " …"


def _escape(text: str) -> str:
    """Markdown-safe: a '|' would end the cell, '<two words>' would read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _cell(text: str, limit: int) -> str:
    return _escape(shorten(text, limit)) or "–"


def anchor(title: str) -> str:
    """GitHub's heading anchor: 'Baselines — P1 loo' -> 'baselines--p1-loo'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _common_segments(cells: list[str]) -> list[str]:
    """The '; '-separated parts that every one of ``cells`` has (in the first cell's order)."""
    split = [[p.strip() for p in c.split(";")] for c in cells]
    return [p for p in split[0] if p and all(p in other for other in split[1:])]


def _without(cell: str, parts: list[str]) -> str:
    return "; ".join(p.strip() for p in cell.split(";") if p.strip() not in parts) or "–"


def _number(name: str, value: float | None) -> str:
    """A parsed metric as the tables write it: a ranking metric with 4 decimals (0.0420),
    others as short as exact (742 req/s, 0.2 ms)."""
    return "–" if value is None else f"{value:.4f}" if METRIC.search(name) else f"{value:g}"


def _columns(title: str, head: dict | None, rows: list[dict]
             ) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """({header: the rows' cells}, headers of numbers (never cut), row columns not shown)."""
    columns = list(head["columns"]) if head else []
    columns += [c for r in rows for c in r["row"] if c not in columns]
    if title in VIEWS:
        specs = [(s, s) if isinstance(s, str) else s for s in VIEWS[title]]
    else:
        specs = [(c, c) for c in columns if c not in HIDDEN and c not in DETAIL]
    values, numbers = {}, set()
    for header, name in specs:
        if name in columns:
            values[header] = [str(r["row"].get(name, "–")) for r in rows]
            if METRIC.search(name):
                numbers.add(header)
        else:  # a metric parsed from the cells
            values[header] = [_number(name, r["metrics"].get(name)) for r in rows]
            numbers.add(header)
    used = {name for _, name in specs}
    return values, numbers, [c for c in columns if c not in HIDDEN and c not in used]


def _table(values: dict[str, list[str]], numbers: set[str], rows: list[dict], limit: int,
           ditto: set[str]) -> list[str]:
    """The markdown table, text cells cut at ``limit`` (see CELL_LIMITS)."""
    lines = ["| " + " | ".join([*values, "commit", "date"]) + " |",
             "|" + "---|" * (len(values) + 2)]
    for i, r in enumerate(rows):
        cells = []
        for c, column in values.items():
            if i and c in ditto and column[i] == column[i - 1]:
                cells.append(DITTO)
            elif c in numbers:  # the number and its marks (**best**, * selected), no remarks
                value = strip_remarks(column[i])
                cells.append(_cell(value, len(value)))
            elif c in ID_COLUMNS:  # as in the row's key (no remarks, not cut): rows stay distinct
                value = strip_remarks(column[i])
                cells.append(_cell(value, len(value)))
            else:
                cells.append(_cell(column[i], 2 * limit if c == "metrics" else limit))
        lines.append("| " + " | ".join([*cells, r["commit"], r["date"][:10] or "–"]) + " |")
    return lines


def render_section(title: str, path: Path, records: list[dict]) -> list[str]:
    """``## title``, the start of its paragraph, what all rows share, the current table (text
    cells cut just enough to keep it near ROW_BYTES a row), and where the rest is."""
    head, rows = current(records)
    lines = [f"## {title}", ""]
    if head and head.get("intro"):
        lines += [shorten(head["intro"], MAX_INTRO), ""]
    values, numbers, left = _columns(title, head, rows)
    n_runs = sum(r["kind"] == "row" for r in records)
    source = (f"`{path.name}`: {len(rows)} of {n_runs} runs shown"
              + ("; more columns there." if left else "."))
    if not rows:
        return lines + [source, ""]
    said = []
    for c in list(values):
        if len(rows) > 1 and len(set(values[c])) == 1:  # the same in every row: say it once
            if values[c][0].strip() not in ("", "–"):
                said.append(f"{c}: {shorten(values[c][0], MAX_SAME)}")
            del values[c]
            continue
        common = _common_segments(values[c]) if c in ID_COLUMNS and len(rows) > 1 else []
        if common:  # e.g. the server set-up that every Serving protocol ends with
            said.append(f"{c}, common part: {shorten('; '.join(common), MAX_SAME)}")
            values[c] = [_without(v, common) for v in values[c]]
    if said:
        lines += ["Every row: " + _escape(" · ".join(said)) + ".", ""]
    ditto = {c for c in values if c not in numbers
             and max(len(v) for v in values[c]) > len(DITTO) + 8}
    budget = max(MIN_TABLE_BYTES, ROW_BYTES * len(rows))
    for limit in CELL_LIMITS:  # the longest cut that fits the budget
        table = _table(values, numbers, rows, limit, ditto)
        if len("\n".join(table).encode()) <= budget:
            break
    return lines + table + ["", source, ""]


def _render_sections(sections: dict, file: str | None, lines: list[str]) -> str:
    """``lines`` (the file's header), then the sections of ``sections`` rendered in ``file``."""
    for title in _ordered([t for t in sections if rendered_in(t) == file]):
        path, records = sections[title]
        lines += render_section(title, path, records)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_benchmarks(folder: Path) -> str:
    """The whole BENCHMARKS.md from the records in ``folder`` (without the FILES sections)."""
    return _render_sections(_by_section(folder), None, [
        "# Benchmarks", "",
        "<!-- Generated by benchmarks/render.py from benchmarks/results/*.jsonl: do not edit. -->",
        "Generated from the JSON lines in `benchmarks/results/` (one file per section; every "
        "benchmark run appends records, nothing is overwritten) by `benchmarks/render.py`; "
        "regenerate with `.venv/bin/python benchmarks/render.py`. Each table shows the latest "
        "record per dataset, protocol and setting, with the commit it ran at (`-dirty`: with "
        "uncommitted changes) and its date (UTC); older runs, the machine, the load, the exact "
        "command and every cell in full (`…` marks a cut, `〃` repeats the cell above) are in "
        "the JSONL. Protocols: `../shared/PROTOCOL.md`; headline numbers: README.md.", "",
        f"Cost tables (serving latency, ingestion and feature building at scale, retrieval and "
        f"decoding speed): [{COST}]({COST}). "
        f"Ablation tables (text fusion in LightGCN and GF-CF): [{ABLATIONS}]({ABLATIONS}). "
        f"Text -> items search (held-out and human-written queries): [{TEXT}]({TEXT}). "
        f"Research tables (experiments/cold_tail.py, not benchmarks): [{RESEARCH}]({RESEARCH}).",
        "",
    ])


# the pages beside BENCHMARKS.md: file -> (heading, what the page holds)
PAGES: dict[str, tuple[str, str]] = {
    ABLATIONS: ("Benchmarks — ablations",
                "The ablation tables of the benchmarks (`benchmarks/bench_retrieval.py --only "
                "ablation` / `ablation-gfcf`), rendered like [BENCHMARKS.md](../BENCHMARKS.md) and "
                "kept beside it so that each page stays short to read; regenerate with "
                "`.venv/bin/python benchmarks/render.py`."),
    COST: ("Benchmarks — cost",
           "What the benchmarks cost in time and memory: serving latency under load, ingestion "
           "and feature building at scale, retrieval and decoding speed. Rendered like "
           "[BENCHMARKS.md](../BENCHMARKS.md) (which keeps the quality tables) from the same "
           "records; regenerate with `.venv/bin/python benchmarks/render.py`. A time measured at "
           "load above 2 on the 2-core machine is not a speed result: the machine column says "
           "the load."),
    TEXT: ("Benchmarks — text search",
           "Text -> items search: queries held out of the item text (`benchmarks/bench_"
           "text_search.py`) and queries people wrote, T1 Last.fm tags and T2 TOMT books "
           "(`benchmarks/bench_text_human.py`, protocols in docs/protocols.md): every candidate "
           "stage, each re-ranked by the cross-encoder (`+ce`: its order; `+ce fused`: its logits "
           "interpolated with the stage's order, the weight chosen on the valid queries). A "
           "row is the latest run of its dataset and method: one at an older commit is from an "
           "earlier setting (`union` = bm25+minilm-ft; older `+ce` rows: a BCE cross-encoder of "
           "25 steps), its JSONL line says which. The targets these tables miss, by how much and "
           "what was tried: docs/protocols.md (T2). Rendered like "
           "[BENCHMARKS.md](../BENCHMARKS.md) from the same records; regenerate with "
           "`.venv/bin/python benchmarks/render.py`."),
    RESEARCH: ("Research results",
               "Research tables of `experiments/cold_tail.py` (the cold-tail item-representation "
               "study of SASRec): not benchmarks, outside the \"benchmarks regenerate "
               "BENCHMARKS.md\" contract. Rendered like [BENCHMARKS.md](../BENCHMARKS.md), by "
               "`benchmarks/render.py`, from the JSON lines in `benchmarks/results/` (one file per "
               "section, named below; a rerun of the script appends records); regenerate with "
               "`.venv/bin/python benchmarks/render.py`. Each table shows the latest record per "
               "dataset, protocol and setting, with its commit and date (UTC); older runs, the "
               "machine, the load, the exact command and every cell in full (`…` marks a cut, "
               "`〃` repeats the cell above) are in the JSONL."),
}


def render_page(folder: Path, page: str) -> str:
    """``page`` (a PAGES file, e.g. benchmarks/COST.md): its sections of the records in
    ``folder``."""
    heading, about = PAGES[page]
    return _render_sections(_by_section(folder), page, [
        f"# {heading}", "",
        "<!-- Generated by benchmarks/render.py from benchmarks/results/*.jsonl: do not edit. -->",
        about, "",
    ])


# ---- README headline ----------------------------------------------------------------------------
def _best(sections: dict, h: Headline) -> tuple[dict, str, str, str] | None:
    """(record, section, metric 1 name, metric 2 name) with the highest second metric; the
    first source and row win a tie."""
    found = [(r, section, m1, m2) for section, prefix, m1, m2 in h.sources
             for r in current(sections.get(section, (None, []))[1])[1]
             if r["dataset"] == h.dataset and r["protocol"].startswith(prefix)
             and m2 in r["metrics"]]
    return max(found, key=lambda f: f[0]["metrics"][f[3]], default=None)


def _pair(metrics: dict, names: tuple[str, str]) -> str:
    return " / ".join(f"{metrics[n]:.4f}" if n in metrics else "–" for n in names)


def render_headline(folder: Path, anchors: Path | None) -> str:
    """The README block (markers included): one row per HEADLINE entry."""
    sections = _by_section(folder)
    refs = read_jsonl(anchors) if anchors else []
    about = ("Generated by `benchmarks/render.py` (do not edit between the markers): the best "
             "genrec model per dataset and protocol (highest second metric among the latest "
             "records of the tables it names), its commit and date, next to published numbers "
             "and peers measured on the same data (`benchmarks/anchors.jsonl`, with sources). "
             "Full tables and history: [BENCHMARKS.md](BENCHMARKS.md).")
    lines = [START, "## Headline numbers", "", textwrap.fill(about, 100), "",
             "| dataset · protocol | metrics | best genrec | genrec | run | published | "
             "measured here |", "|---|---|---|---|---|---|---|"]
    for h in HEADLINE:
        found = _best(sections, h)
        if found is None:
            continue
        r, section, m1, m2 = found
        model = f"{shorten(r['setting'], 48)} ([table]({rendered_in(section) or 'BENCHMARKS.md'}#{anchor(section)}))"
        cells = {"published": [], "peer": []}
        for ref in refs:
            if ref["protocol"] == h.protocol and ref["dataset"] == h.dataset:
                cells[ref["kind"]].append(f"{ref['model']} {_pair(ref['metrics'], h.metrics)}")
        lines.append("| " + " | ".join([
            h.label, " / ".join(h.metrics), _escape(model),
            _pair(r["metrics"], (m1, m2)), f"{r['commit']} {r['date'][:10]}",
            " · ".join(cells["published"]) or "–", " · ".join(cells["peer"]) or "–"]) + " |")
    return "\n".join([*lines, "", END])


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines from START to END (both included) replaced by ``block``."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def write(markdown: str | Path, check: bool = False) -> list[Path]:
    """Render ``markdown`` (BENCHMARKS.md) from ``results_dir(markdown)``, RESEARCH beside it
    (when it exists or the records have one of its sections) and the headline block of the
    README.md beside it (when it has both markers); returns the files that changed (with
    ``check``: that would change, nothing is written)."""
    markdown = Path(markdown)
    folder = results_dir(markdown)
    changed = []
    outputs = {markdown: render_benchmarks(folder)}
    for page in PAGES:
        path = markdown.parent / page
        if path.exists() or any(rendered_in(t) == page for t in _by_section(folder)):
            outputs[path] = render_page(folder, page)
    readme = markdown.parent / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        if START in text and END in text:
            outputs[readme] = replace_block(
                text, render_headline(folder, folder.parent / "anchors.jsonl"))
    for path, text in outputs.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if BENCHMARKS.md, experiments/RESULTS.md or "
                         "the README block is stale")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] /
                    "BENCHMARKS.md", help="the BENCHMARKS.md to render (records beside it, "
                                          "experiments/RESULTS.md beside it)")
    args = ap.parse_args()
    changed = write(args.out, check=args.check)
    for path in changed:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and changed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
