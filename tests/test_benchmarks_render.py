"""BENCHMARKS.md is rendered from benchmarks/results/*.jsonl (issue 17): the latest record per
setting wins, every row names its commit, the file stays small, and the committed BENCHMARKS.md,
experiments/RESULTS.md (the research tables of experiments/cold_tail.py) and README headline are
exactly what benchmarks/render.py makes of the committed records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    """The benchmarks/ helper modules (they live outside the package, as the scripts use them)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import _record
    import _results
    import render

    return _record, _results, render


def _row(date: str, model: str, ndcg: str) -> dict:
    return {"dataset": "ml-100k", "protocol": "P1", "model": model, "NDCG@10": ndcg,
            "machine": "2 cores", "date (UTC)": date, "command": "bench.py"}


def test_latest_record_per_setting_is_shown_with_its_commit(tmp_path, bench):
    _, results, render = bench
    markdown = tmp_path / "BENCHMARKS.md"
    target = results.results_dir(markdown) / "tiny.jsonl"
    results.append_record(target, results.section_record(
        "Tiny", "A tiny table.", ["dataset", "protocol", "model", "NDCG@10", "machine",
                                  "date (UTC)", "command"],
        reset=False, commit="aaaaaaa", date="2026-01-01 00:00", command="bench.py"))
    for commit, date, model, ndcg in [("1111111", "2026-01-01 10:00", "ease", "0.1111"),
                                      ("2222222", "2026-01-01 11:00", "itemcf", "0.2222"),
                                      ("3333333", "2026-01-02 09:00", "ease (rerun)", "0.3333")]:
        results.append_record(target, results.row_record(
            "Tiny", _row(date, model, ndcg), commit=commit, load=[1.0, 1.0, 1.0]))

    assert render.write(markdown) == [markdown]
    text = markdown.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].split(" | ")[-2:] == ["commit", "date |"]
    assert len(table) == 3  # header + ease + itemcf: the rerun replaced the first ease row
    assert "0.3333" in table[1] and "3333333" in table[1] and "2026-01-02" in table[1]
    assert "0.2222" in table[2] and "2222222" in table[2]
    assert "0.1111" not in text and "1111111" not in text
    assert "`tiny.jsonl`: 2 of 3 runs shown" in text
    assert len(text.encode()) < 40_000
    assert render.write(markdown) == []  # deterministic: a second render changes nothing


def test_record_appends_jsonl_and_rerenders(tmp_path, bench):
    record_, results, _ = bench
    markdown = tmp_path / "BENCHMARKS.md"
    row = {"dataset": "ml-100k", "protocol": "P1", "metrics": "R@10 0.5000 · N@10 0.2500"}
    record_.record("Tiny", row, markdown)
    record_.record("Tiny", {**row, "metrics": "R@10 0.6000 · N@10 0.3000"}, markdown)
    records = results.read_jsonl(results.results_dir(markdown) / "tiny.jsonl")
    assert [r["kind"] for r in records] == ["section", "row", "row"]
    last = records[-1]
    assert last["metrics"] == {"R@10": 0.6, "N@10": 0.3}
    assert re.fullmatch(r"([0-9a-f]{7,}(-dirty)?|unknown)", last["commit"])
    assert len(last["load"]) == 3 and last["machine"] and last["command"]
    text = markdown.read_text(encoding="utf-8")
    assert "0.6000" in text and "0.5000" not in text
    with pytest.raises(ValueError, match="typo"):
        record_.record("Tiny", {**row, "typo": "1"}, markdown)

    record_.reset_table(markdown, "Tiny", "Regenerated.", record_.COLUMNS)
    record_.record("Tiny", {**row, "dataset": "amazon-beauty"}, markdown)
    text = markdown.read_text(encoding="utf-8")
    assert "0.6000" not in text and "amazon-beauty" in text and "Regenerated." in text


def test_research_sections_render_in_their_own_file(tmp_path, bench):
    record_, results, render = bench
    markdown = tmp_path / "BENCHMARKS.md"
    research = tmp_path / render.RESEARCH
    title = next(iter(render.FILES))
    row = {"dataset": "ml-100k", "protocol": "P1", "metrics": "R@10 0.5000 · N@10 0.2500"}
    record_.record("Tiny", row, markdown)
    assert not research.exists()  # no research records: no research file
    record_.record(title, {**row, "metrics": "R@10 0.7000 · N@10 0.3500"}, markdown)
    assert (results.results_dir(markdown) / f"{results.slug(title)}.jsonl").exists()
    bench_text, research_text = (p.read_text(encoding="utf-8") for p in (markdown, research))
    assert f"## {title}" in research_text and f"## {title}" not in bench_text
    assert "## Tiny" in bench_text and "## Tiny" not in research_text
    assert f"]({render.RESEARCH})" in bench_text  # the pointer
    assert render.write(markdown) == []
    research.write_text("stale", encoding="utf-8")
    assert render.write(markdown, check=True) == [research]  # --check sees the research file


def test_committed_benchmarks_md_is_the_rendered_records(bench):
    _, results, render = bench
    folder = REPO / "benchmarks" / "results"
    markdown = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert markdown == render.render_benchmarks(folder), (
        "BENCHMARKS.md differs from the records: run .venv/bin/python benchmarks/render.py")
    assert len(markdown.encode()) < 40_000
    texts = {}  # every page beside BENCHMARKS.md (render.PAGES): file -> its committed text
    for page in render.PAGES:
        texts[page] = (REPO / page).read_text(encoding="utf-8")
        assert texts[page] == render.render_page(folder, page), (
            f"{page} differs from the records: run .venv/bin/python benchmarks/render.py")
    assert render.write(REPO / "BENCHMARKS.md", check=True) == []
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(render.START):readme.index(render.END) + len(render.END)]
    assert block == render.render_headline(folder, REPO / "benchmarks" / "anchors.jsonl")

    # every number of a table row is in the record it shows (its cells or parsed metrics)
    sections = {r["section"]: records for records in results.read_records(folder).values()
                for r in records[:1]}
    # every section is rendered in exactly one file, and in the one FILES names
    pages = (("BENCHMARKS.md", markdown), *texts.items())
    shown = {name: [p.splitlines()[0] for p in re.split(r"^## ", text, flags=re.M)[1:]]
             for name, text in pages}
    everywhere = [title for titles in shown.values() for title in titles]
    assert sorted(everywhere) == sorted(sections)
    for page in render.PAGES:
        assert set(shown[page]) == {t for t, f in render.FILES.items() if f == page} == {
            t for t in sections if render.rendered_in(t) == page}
    for part in re.split(r"^## ", "".join(text for _, text in pages), flags=re.M)[1:]:
        _, rows = render.current(sections[part.splitlines()[0]])
        lines = [line for line in part.splitlines() if line.startswith("| ")][1:]
        assert len(lines) == len(rows)
        for line, record in zip(lines, rows):
            text = json.dumps(record, ensure_ascii=False)
            values = {float(v) for v in record["metrics"].values()}
            for number in re.findall(r"(?<![\w.@/])-?\d[\d,]*(?:\.\d+)?", line):
                assert number in text or float(number.replace(",", "")) in values, (number, line)
