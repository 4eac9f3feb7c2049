"""Exploratory data report for a prepared Dataset: ``report.md`` plus five PNG plots.

    report.md              summary table (sizes, density, ratings, timestamps, filters, per-user
                           and per-item averages, cold-item share, top-10 items) and each plot
                           with a one-line reading of it
    user_long_tail.png     interactions per user, users sorted by activity, log-log
    item_long_tail.png     interactions per item, sorted, log-log, top-20% share annotated
    ratings.png            rating histogram (left out, with a note, when there are no ratings)
    activity_over_time.png interactions per month (only for unix timestamps)
    sequence_lengths.png   histogram of per-user interaction counts with median and p90

The report is written atomically: into a temporary sibling folder that replaces ``out_dir``
only once everything is written, so a failure leaves nothing half-written. Plots are drawn on
``matplotlib.figure.Figure`` objects, never through ``pyplot``, so no backend is chosen and no
global matplotlib state changes: this works headless and inside a GUI or notebook session alike.

Example:
    >>> from genrec.data import Dataset                                     # doctest: +SKIP
    >>> write_report(Dataset.load("~/.genrec/datasets/ml-100k"), Path("ml-100k-report"))
"""

from __future__ import annotations

from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from genrec._files import atomic_dir, check_replaceable
from genrec.data.dataset import DataError, Dataset

__all__ = ["write_report", "COLD_ITEM_THRESHOLD"]

COLD_ITEM_THRESHOLD = 5  # items with fewer interactions than this count as cold
_DPI = 110
_STYLE = {  # applied with rc_context, so the caller's matplotlib settings stay untouched
    "font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "xtick.labelsize": 10,
    "ytick.labelsize": 10, "legend.fontsize": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
}
_BLUE, _ORANGE, _GREEN = "#3b6ea8", "#d9822b", "#4c9a5f"
_TIME_KINDS = {
    "order": "positions in each user's sequence (no calendar time)",
    "file_order": "absent (rows kept in file order)",
    "none": "absent",
}


@dataclass
class _Stats:
    user_counts: np.ndarray  # (U,) interactions per user_idx
    item_counts: np.ndarray  # (N,) interactions per item_idx 1..N
    ratings: np.ndarray | None  # non-null ratings, None when the data is implicit
    months: pl.DataFrame | None  # month (date), n; only for unix timestamps

    @property
    def n(self) -> int:
        return int(self.user_counts.sum())


def write_report(ds: Dataset, out_dir: Path) -> Path:
    """Write ``report.md`` and its plots into ``out_dir`` (replacing an earlier report there).

    Returns the path of ``report.md``. ``out_dir`` must be new, empty, or an earlier report.
    """
    out_dir = Path(out_dir).expanduser()
    if ds.interactions.height == 0:
        raise DataError(f"dataset {ds.name!r} has no interactions: nothing to report; "
                        f"re-run `genrec data prepare` with looser filters")
    check_replaceable(out_dir, "report.md", "report")  # before the work, not after it
    stats = _compute(ds)
    with atomic_dir(out_dir, marker="report.md", what="report") as tmp:  # a report is replaced whole, never half-written
        text = _render(ds, stats, tmp)
        (tmp / "report.md").write_text(text, encoding="utf-8")
    return out_dir / "report.md"


# ---- numbers ------------------------------------------------------------------------------
def _compute(ds: Dataset) -> _Stats:
    inter = ds.interactions
    users = inter["user_idx"].to_numpy()
    items = inter["item_idx"].to_numpy()
    user_counts = np.bincount(users, minlength=ds.n_users)
    item_counts = np.bincount(items, minlength=ds.n_items + 1)[1:]  # drop PAD column 0

    ratings = None
    if "rating" in inter.columns and inter["rating"].null_count() < inter.height:
        ratings = inter["rating"].drop_nulls().to_numpy()

    months = None
    if ds.meta.get("timestamp", "unix") == "unix" and inter["timestamp"].null_count() == 0:
        counts = (
            inter.select(pl.from_epoch("timestamp", time_unit="s").dt.truncate("1mo").dt.date()
                         .alias("month"))
            .group_by("month").len("n")
        )
        # every month in the span, quiet ones as 0, so gaps show instead of being bridged
        span = pl.date_range(counts["month"].min(), counts["month"].max(), "1mo", eager=True)
        months = (pl.DataFrame({"month": span}).join(counts, on="month", how="left")
                  .with_columns(pl.col("n").fill_null(0)))
    return _Stats(user_counts, item_counts, ratings, months)


def _top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of all interactions that go to the top ``fraction`` of entities."""
    ordered = np.sort(counts)[::-1]
    k = max(1, int(round(fraction * len(ordered))))
    return float(ordered[:k].sum() / max(ordered.sum(), 1))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _md(text: object) -> str:
    """Make a value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _clip(text: object, width: int = 70) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- markdown -----------------------------------------------------------------------------
def _render(ds: Dataset, s: _Stats, folder: Path) -> str:
    n_u, n_i, n = ds.n_users, ds.n_items, s.n
    kind = str(ds.meta.get("timestamp", "unix"))
    uc, ic = s.user_counts, s.item_counts
    rows: list[tuple[str, str]] = [
        ("users", f"{n_u:,}"),
        ("items", f"{n_i:,}"),
        ("interactions", f"{n:,}"),
        ("density", f"{n / max(n_u * n_i, 1):.4%}"),
        ("ratings", "no (implicit feedback)" if s.ratings is None
         else f"yes ({len(np.unique(s.ratings))} distinct values, "
              f"{s.ratings.min():g} to {s.ratings.max():g}, mean {s.ratings.mean():.2f})"),
        ("timestamps", _time_summary(kind, s.months, ds)),
        ("filters", _filters(ds.meta)),
        ("interactions per user", f"mean {uc.mean():.1f}, median {np.median(uc):g}, "
                                  f"min {uc.min()}, max {uc.max():,}"),
        ("interactions per item", f"mean {ic.mean():.1f}, median {np.median(ic):g}, "
                                  f"min {ic.min()}, max {ic.max():,}"),
        (f"cold items (< {COLD_ITEM_THRESHOLD} interactions)",
         f"{_pct(float(np.mean(ic < COLD_ITEM_THRESHOLD)))} of items "
         f"({int(np.sum(ic < COLD_ITEM_THRESHOLD)):,})"),
    ]
    raw = ds.meta.get("counts_raw")
    if isinstance(raw, dict) and raw:
        rows.append(("before filtering", ", ".join(f"{k.replace('_', ' ')} {v:,}"
                                                   for k, v in raw.items())))
    lines = [f"# Data report: {ds.name}", ""]
    if ds.meta.get("source"):
        lines += [f"Source: {ds.meta['source']}", ""]
    lines += ["| statistic | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in rows]
    lines += ["", "## Most popular items", "", *_top_items(ds, ic), ""]

    with _style():
        sections = [  # (heading, file, reading); a plot that does not apply writes no file
            ("User activity", "user_long_tail.png",
             _plot_user_tail(uc, folder / "user_long_tail.png")),
            ("Item popularity", "item_long_tail.png",
             _plot_item_tail(ic, folder / "item_long_tail.png")),
            ("Ratings", "ratings.png", _plot_ratings(s.ratings, folder / "ratings.png")),
            ("Activity over time", "activity_over_time.png",
             _plot_time(s.months, kind, folder / "activity_over_time.png")),
            ("Sequence lengths", "sequence_lengths.png",
             _plot_lengths(uc, folder / "sequence_lengths.png")),
        ]
    for title, png, reading in sections:
        lines += [f"## {title}", ""]
        if (folder / png).is_file():
            lines += [f"![{title}]({png})", ""]
        lines += [reading, ""]
    return "\n".join(lines)


def _time_summary(kind: str, months: pl.DataFrame | None, ds: Dataset) -> str:
    if kind != "unix":
        return f"{kind}: " + _TIME_KINDS.get(kind, "not calendar time")
    ts = ds.interactions["timestamp"]
    if months is None or ts.null_count():
        return "unix (some missing)"
    first, last = (datetime.fromtimestamp(int(t), tz=timezone.utc).date()
                   for t in (ts.min(), ts.max()))
    return f"unix seconds, {first} to {last} (UTC)"


def _filters(meta: dict) -> str:
    f = meta.get("filters")
    if not isinstance(f, dict) or not f:
        return "none recorded"
    return ", ".join(f"{k}={'none' if v is None else v}" for k, v in f.items())


def _top_items(ds: Dataset, item_counts: np.ndarray, k: int = 10) -> list[str]:
    order = np.argsort(-item_counts, kind="stable")[:k]  # position p is item_idx p + 1
    has_title = "title" in ds.items.columns
    ids = ds.item_ids
    titles = ds.titles() if has_title else ids
    n = max(int(item_counts.sum()), 1)
    head = ("| rank | item_idx | item id | " + ("title | " if has_title else "")
            + "interactions | share |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for rank, pos in enumerate(order, 1):
        idx, cnt = int(pos) + 1, int(item_counts[pos])
        title = f" {_md(_clip(titles[idx]))} |" if has_title else ""
        out.append(f"| {rank} | {idx} | {_md(ids[idx])} |{title} {cnt:,} | {_pct(cnt / n)} |")
    return out


# ---- plots --------------------------------------------------------------------------------
def _style():
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def _log_ranks(n: int, points: int = 2000) -> np.ndarray:
    """0-based ranks spaced evenly on a log axis: enough to draw a curve of millions of points."""
    return np.unique(np.geomspace(1, n, num=min(n, points)).astype(np.int64)) - 1


def _sorted_curve(ax, counts: np.ndarray, color: str) -> np.ndarray:
    ordered = np.sort(counts)[::-1]
    ordered = ordered[ordered > 0]  # log axes cannot show zero
    ranks = _log_ranks(len(ordered))
    ax.loglog(ranks + 1, ordered[ranks], color=color, lw=2)
    _plain_log(ax.xaxis, 1, len(ordered))
    _plain_log(ax.yaxis, ordered[-1], ordered[0])
    return ordered


def _plain_log(axis, lo: float, hi: float) -> None:
    """Log-axis ticks as plain numbers (20, 50, 1,000), not 2x10^1; 1-2-5 steps on short spans."""
    from matplotlib.ticker import LogLocator, NullFormatter

    short = hi / max(lo, 1) <= 1e3
    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5) if short else (1,)))
    axis.set_major_formatter(_thousands())
    axis.set_minor_formatter(NullFormatter())


def _plot_user_tail(user_counts: np.ndarray, path: Path) -> str:
    fig, ax = _figure()
    ordered = _sorted_curve(ax, user_counts, _BLUE)
    ax.set(title="User activity (long tail)", xlabel="user rank (most active first)",
           ylabel="interactions per user")
    _save(fig, path)
    top10 = _top_share(user_counts, 0.10)
    return (f"The 10% most active users account for {_pct(top10)} of interactions; the most "
            f"active user has {ordered[0]:,}, the median user {np.median(user_counts):g}.")


def _plot_item_tail(item_counts: np.ndarray, path: Path) -> str:
    fig, ax = _figure()
    ordered = _sorted_curve(ax, item_counts, _ORANGE)
    share = _top_share(item_counts, 0.20)
    cut = max(1, int(round(0.2 * len(item_counts))))
    ax.axvspan(1, cut, color=_ORANGE, alpha=0.12, lw=0)
    ax.axvline(cut, color="0.35", ls="--", lw=1)
    # lower left stays empty under a falling curve, so the label never covers it
    ax.text(0.03, 0.05, f"top 20% of items (shaded):\n{_pct(share)} of interactions",
            transform=ax.transAxes, ha="left", va="bottom",
            bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    ax.set(title="Item popularity (long tail)", xlabel="item rank (most popular first)",
           ylabel="interactions per item")
    _save(fig, path)
    cold = float(np.mean(item_counts < COLD_ITEM_THRESHOLD))
    return (f"The top 20% of items receive {_pct(share)} of interactions; {_pct(cold)} of items "
            f"have fewer than {COLD_ITEM_THRESHOLD} interactions (cold).")


def _plot_ratings(ratings: np.ndarray | None, path: Path) -> str:
    if ratings is None:
        return "No ratings: the data is implicit feedback, so there is no rating histogram."
    fig, ax = _figure()
    values, counts = np.unique(ratings, return_counts=True)
    if len(values) <= 25:  # discrete scale (stars, half stars): one bar per value
        step = np.min(np.diff(values)) if len(values) > 1 else 1.0
        ax.bar(values, counts, width=0.8 * step, color=_GREEN)
        ax.set_xticks(values, [f"{v:g}" for v in values],
                      rotation=45 if len(values) > 12 else 0)
    else:
        ax.hist(ratings, bins=40, color=_GREEN)
    _count_axis(ax.yaxis)
    ax.grid(axis="x", visible=False)
    ax.set(title="Rating distribution", xlabel="rating", ylabel="interactions")
    _save(fig, path)
    mode = values[np.argmax(counts)]
    return (f"Ratings average {ratings.mean():.2f}; the most common rating is {mode:g} "
            f"({_pct(counts.max() / counts.sum())} of ratings).")


def _plot_time(months: pl.DataFrame | None, kind: str, path: Path) -> str:
    if kind == "unix" and months is None:
        return "Some timestamps are missing, so there is no activity-over-time plot."
    if months is None:
        what = _TIME_KINDS.get(kind, "not calendar time")
        return f"Timestamps are {what}, so there is no activity-over-time plot."
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig, ax = _figure(8.0, 4.2)
    x = months["month"].to_numpy().astype("datetime64[D]")
    n = months["n"].to_numpy()
    if len(x) <= 48:  # few months: bars read best; many months: a filled line
        ax.bar(x, n, width=25, align="edge", color=_BLUE)
    else:
        ax.fill_between(x, n, step="post", color=_BLUE, alpha=0.35, lw=0)
        ax.step(x, n, where="post", color=_BLUE, lw=1.2)
    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _count_axis(ax.yaxis)
    ax.grid(axis="x", visible=False)
    ax.set(title="Activity over time", xlabel="month", ylabel="interactions per month")
    _save(fig, path)
    peak = int(np.argmax(n))
    return (f"Interactions span {len(n)} months, {str(x[0])[:7]} to {str(x[-1])[:7]} "
            f"({int(np.sum(n == 0))} without any); "
            f"the busiest month is {str(x[peak])[:7]} with {n[peak]:,} interactions.")


def _plot_lengths(user_counts: np.ndarray, path: Path) -> str:
    fig, ax = _figure()
    lo, hi = max(int(user_counts.min()), 1), int(user_counts.max())
    log_x = hi > 20 * np.median(user_counts)  # heavy tail: a linear axis squeezes the bulk
    if log_x:  # log-spaced bins on integer edges, so no bin is empty by construction
        edges = np.unique(np.round(np.geomspace(lo, hi + 1, 40))) - 0.5
    else:
        edges = np.arange(lo, hi + 2) - 0.5 if hi - lo < 40 else np.linspace(lo, hi + 1, 41)
    counts, edges = np.histogram(user_counts, bins=edges)
    # log bins hold 1, 2, 3 ... lengths each: average per length, else wide bins look like bumps
    per_length = counts / np.maximum(np.diff(np.ceil(edges)), 1) if log_x else counts
    ax.stairs(per_length, edges, fill=True, color=_BLUE, alpha=0.85)
    ax.yaxis.set_major_formatter(_thousands())
    if not log_x:
        _count_axis(ax.xaxis)
        _count_axis(ax.yaxis)
    # p90 as an observed count ("90% have at most p90"), not an interpolated one
    med = float(np.median(user_counts))
    p90 = float(np.percentile(user_counts, 90, method="higher"))
    ax.axvline(med, color=_ORANGE, lw=2, label=f"median = {med:g}")
    ax.axvline(p90, color="0.25", lw=2, ls="--", label=f"p90 = {p90:g}")
    if log_x:
        ax.set_xscale("log")
        _plain_log(ax.xaxis, lo, hi)
    ax.legend(frameon=False)
    ax.set(title="Sequence length (interactions per user)",
           xlabel="interactions per user" + (" (log scale)" if log_x else ""),
           ylabel="users per length (bin average)" if log_x else "users")
    _save(fig, path)
    return (f"Half of the users have at most {med:g} interactions and 90% at most {p90:g}; "
            f"the shortest history is {int(user_counts.min())}, the longest {hi:,}.")


def _thousands():
    """Tick labels as 1,000 / 20 / 0.5 (never 2x10^1, never a fraction rounded to a repeat)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if v == int(v) else f"{v:g}")


def _count_axis(axis) -> None:
    """A counting axis: whole-number ticks, thousands separators."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(_thousands())
