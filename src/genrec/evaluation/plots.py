"""Plots a person would rather look at than read: metric bars across models, trade-off curves,
a session generator's gate usage per decoder position."""

from __future__ import annotations

from pathlib import Path

__all__ = ["metrics_bar_chart", "tradeoff_chart", "gate_chart"]


def metrics_bar_chart(results: dict[str, dict[str, float]], metrics: list[str], out: Path,
                      title: str = "") -> Path:
    """Grouped bars: one group per metric, one bar per model (``results[model][metric]``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(results)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(metrics), 4.2), dpi=110)
    for j, model in enumerate(models):
        vals = [results[model].get(m, 0.0) for m in metrics]
        bars = ax.bar(x + (j - (len(models) - 1) / 2) * width, vals, width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, metrics)
    ax.set_ylabel("value (full ranking, history masked)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.15)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def tradeoff_chart(curves: dict[str, list[tuple[float, float, str]]], out: Path,
                   xlabel: str, ylabel: str, title: str = "") -> Path:
    """One line per model through its (x, y, label) points, e.g. overall accuracy against
    cold-tail accuracy as a knob moves; each point is annotated with its label. The n-th model
    gets the n-th colour even when it has no points (left out), so charts that list the same
    models in the same order match."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not curves or not any(curves.values()):
        raise ValueError("tradeoff_chart: no points to plot")
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    for i, (model, points) in enumerate(curves.items()):
        if not points:
            continue
        xs, ys, labels = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.2, label=model, color=f"C{i % 10}")
        for x, y, text in zip(xs, ys, labels):
            ax.annotate(text, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def gate_chart(metrics: dict[str, float], out: Path, title: str = "") -> Path | None:
    """Stacked bars of each expert's mean gate weight per decoder position, from the
    ``gate/<expert>@<position>`` entries of ``metrics`` (``genrec.runs.kinds.session``); None
    (nothing drawn) when there are none."""
    import re

    usage: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"gate/(.+)@(\d+)", key)
        if m:
            usage.setdefault(m.group(1), {})[int(m.group(2))] = float(value)
    if not usage:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    positions = sorted({p for per in usage.values() for p in per})
    x = np.arange(len(positions))
    fig, ax = plt.subplots(figsize=(max(5.4, 1.6 + 0.45 * len(positions)), 3.8), dpi=110)
    bottom = np.zeros(len(positions))
    for i, (expert, per) in enumerate(usage.items()):
        vals = np.array([per.get(p, 0.0) for p in positions])
        overall = metrics.get(f"gate/{expert}")
        label = expert if overall is None else f"{expert} (mean {overall:.2f})"
        ax.bar(x, vals, 0.8, bottom=bottom, label=label, color=f"C{i % 10}")
        bottom += vals
    ax.set_xticks(x, [str(p) for p in positions])
    ax.set_xlabel("decoder position (the n-th session item read)")
    ax.set_ylabel("mean gate weight")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22),
              ncol=len(usage))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
