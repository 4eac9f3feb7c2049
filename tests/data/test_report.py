"""EDA report: files, PNG validity, hand-computed numbers on a toy log, atomic writes, ml-100k."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from genrec.data import report as report_mod
from genrec.data.dataset import DataError
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.report import write_report

PLOTS = ["user_long_tail.png", "item_long_tail.png", "ratings.png", "activity_over_time.png",
         "sequence_lengths.png"]


def _unix(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=timezone.utc).timestamp())


def _toy(ratings: bool = True, timestamps: str = "unix"):
    """3 users, 3 items, 6 interactions; item 10 is seen by all three users.

    a: 10 (Jan 2020, 5.0), 20 (Jan, 4.0), 30 (Mar, 4.0);  b: 10 (Mar, 3.0), 20 (Mar, 4.0);
    c: 10 (Mar, 5.0). February is empty, so the month series must show it as zero.
    """
    jan, mar = _unix(2020, 1, 15), _unix(2020, 3, 10)
    frame = pl.DataFrame({
        "user_id": ["a", "a", "a", "b", "b", "c"],
        "item_id": ["10", "20", "30", "10", "20", "10"],
        "timestamp": [jan, jan + 60, mar, mar, mar + 60, mar + 120] if timestamps == "unix"
        else [0, 1, 2, 0, 1, 0],
        "rating": [5.0, 4.0, 4.0, 3.0, 4.0, 5.0] if ratings else [None] * 6,
    }, schema_overrides={"rating": pl.Float32})
    items = pl.DataFrame({"item_id": ["10", "20", "30"],
                          "title": ["Alpha | The Movie", "Beta", "Gamma"]})
    raw = RawData(frame.lazy(), items=items, info={"timestamp": timestamps})
    return build_dataset(raw, "toy")


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; fails if the file is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_toy_report_files_and_numbers(tmp_path):
    md_path = write_report(_toy(), tmp_path / "rep")
    assert md_path == tmp_path / "rep" / "report.md"
    assert sorted(p.name for p in md_path.parent.iterdir()) == sorted(PLOTS + ["report.md"])
    for name in PLOTS:
        w, h = _png_size(md_path.parent / name)
        assert 500 <= w <= 1200 and 300 <= h <= 800, (name, w, h)
        image = imread(md_path.parent / name)
        assert image.shape[:2] == (h, w) and image[..., :3].std() > 0.01  # something is drawn

    md = md_path.read_text()
    assert "| users | 3 |" in md and "| items | 3 |" in md and "| interactions | 6 |" in md
    assert "| density | 66.6667% |" in md  # 6 / (3 * 3)
    assert "mean 2.0, median 2, min 1, max 3" in md  # per user: 3, 2, 1; per item: 3, 2, 1
    assert "100.0% of items (3)" in md  # all below the cold threshold of 5
    assert "yes (3 distinct values, 3 to 5, mean 4.17)" in md  # 25 / 6
    assert "unix seconds, 2020-01-15 to 2020-03-10" in md
    # top item: raw id 10 = item_idx 1, 3 of 6 interactions; the pipe in its title is escaped
    assert "| 1 | 1 | 10 | Alpha \\| The Movie | 3 | 50.0% |" in md
    assert "the most common rating is 4 (50.0% of ratings)" in md
    assert "span 3 months, 2020-01 to 2020-03 (1 without any)" in md
    assert "busiest month is 2020-03 with 4 interactions" in md
    for name in PLOTS:
        assert f"]({name})" in md


def test_implicit_positions_skip_rating_and_time_plots(tmp_path):
    ds = _toy(ratings=False, timestamps="order")
    md = write_report(ds, tmp_path / "rep").read_text()
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert files == {"report.md", "user_long_tail.png", "item_long_tail.png",
                     "sequence_lengths.png"}
    assert "| ratings | no (implicit feedback) |" in md
    assert "No ratings: the data is implicit feedback" in md
    assert "Timestamps are positions in each user's sequence" in md
    assert "ratings.png" not in md and "activity_over_time.png" not in md


def test_failure_leaves_nothing_and_rerun_replaces(tmp_path, monkeypatch):
    ds = _toy()

    def boom(*_args):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "_plot_lengths", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(ds, tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []  # no report folder, no temporary leftovers

    monkeypatch.undo()
    write_report(ds, tmp_path / "rep")
    (tmp_path / "rep" / "stale.png").write_bytes(b"old")
    write_report(ds, tmp_path / "rep")  # an earlier report is replaced whole
    assert not (tmp_path / "rep" / "stale.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_refuses_to_replace_a_folder_that_is_not_a_report(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a genrec report"):
        write_report(_toy(), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_empty_dataset_is_a_clear_error(tmp_path):
    ds = _toy()
    ds.interactions = ds.interactions.clear()
    with pytest.raises(DataError, match="no interactions"):
        write_report(ds, tmp_path / "rep")


def test_top_share_and_sorted_curve_points():
    counts = np.array([50, 30, 10, 5, 5, 0, 0, 0, 0, 0])
    assert report_mod._top_share(counts, 0.2) == pytest.approx(0.8)  # top 2 of 10 items
    ranks = report_mod._log_ranks(1_000_000)
    assert ranks[0] == 0 and ranks[-1] == 999_999 and len(ranks) <= 2000


@pytest.mark.integration
def test_ml100k_report(shared_data, tmp_path):
    from genrec.data.formats.movielens import read_ml100k

    ds = build_dataset(read_ml100k(shared_data("ml-100k")), "ml-100k")
    md = write_report(ds, tmp_path / "ml100k").read_text()
    # counts from shared/data/ml-100k/SOURCE.md: 943 users, 1,682 items, rating 4 x 34,174
    assert "| users | 943 |" in md and "| items | 1,682 |" in md
    assert "| interactions | 100,000 |" in md
    assert "the most common rating is 4 (34.2% of ratings)" in md
    assert "| 1 | 50 | 50 | Star Wars (1977) | 583 | 0.6% |" in md
    assert "min 20" in md  # every ml-100k user rated at least 20 movies
    for name in PLOTS:
        assert _png_size(tmp_path / "ml100k" / name)[0] > 500
