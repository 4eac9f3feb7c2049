"""Ablation grids: one base config, ``key=v1,v2`` axes, every combination trained on one split.

``run_ablation`` expands the grid into its cartesian product (in the order the axes are given),
builds every config first (so a typo fails before anything trains), then trains and evaluates
each with ``genrec.runs.train`` into ``OUT/runs/<name>/``. Axes may be any config key
(``params.*``, ``train.*``, ``eval.*``, ``model``) except ``data.*``: every configuration must
see the same split, or the table would compare different test sets. Keys that must vary
together form one zipped axis, ``a,b=1:x,2:y`` (a=1 with b=x, then a=2 with b=y), which lists
exactly the cells that make sense where a full product would hold invalid or duplicate ones.

Resumable: a configuration whose run directory already has ``metrics.json`` and the same
resolved ``config.toml`` is read back instead of retrained (a changed config is retrained).

Outputs in ``OUT``:
    ablation.md    the results table: one row per configuration, its axis values, the
                   validation selection metric and the test metrics; the row selected on
                   VALIDATION (never test, PROTOCOL.md) is marked with *
    ablation.csv   the same numbers, full precision, with a ``selected`` column
    ablation.png   one panel per test metric, a bar per configuration (the selected one
                   highlighted)
    ablation.json  grid, base config and rows, for programs

Example:
    >>> res = run_ablation(Path("configs/ease_ml100k_p1.toml"), {"params.l2": ["100", "500"]},
    ...                    Path("runs/ablate_ease"))                         # doctest: +SKIP
    >>> [r.values["params.l2"] for r in res.rows], res.selected             # doctest: +SKIP
    (['100', '500'], 1)
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from genrec.config import ConfigError, load_toml, to_dict, to_toml

__all__ = ["AblationRow", "AblationResult", "parse_grid", "expand_grid", "grid_keys",
           "run_ablation", "write_outputs", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("HR@10", "NDCG@10", "Recall@20", "NDCG@20")


@dataclass
class AblationRow:
    name: str                    # directory name under OUT/runs
    values: dict[str, str]       # axis key -> value as given on the command line
    run_dir: Path
    valid: dict[str, float]      # validation metrics ({} when the split has no validation)
    test: dict[str, float]
    fit_seconds: float
    cached: bool                 # read back from an earlier run instead of trained


@dataclass
class AblationResult:
    grid: dict[str, list[str]]
    rows: list[AblationRow]
    metrics: list[str]           # test metric columns
    select_metric: str           # validation metric the selection uses (train.metric)
    selected: int | None         # index of the row with the best validation metric
    files: dict[str, Path] = field(default_factory=dict)


def _split_values(text: str, sep: str = ",") -> list[str]:
    """``a,b,[1,2]`` -> ["a", "b", "[1,2]"]: separators inside brackets/quotes do not split."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return [v for v in out if v]


def _axis_keys(axis: str) -> list[str]:
    return [k.strip() for k in axis.split(",")]


def _cell(axis: str, value: str) -> dict[str, str]:
    """One value of an axis as {key: value}; a zipped axis splits the value at ':'."""
    keys = _axis_keys(axis)
    return dict(zip(keys, _split_values(value, ":") if len(keys) > 1 else [value]))


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """``["params.l2=100,500", "params.a,params.b=1:x,2:y"]`` -> {axis: [values]} (order kept)."""
    grid: dict[str, list[str]] = {}
    seen: set[str] = set()
    for spec in specs:
        axis, sep, text = spec.partition("=")
        keys = _axis_keys(axis)
        values = _split_values(text)
        if not sep or not all(keys) or not values:
            raise ConfigError(f"--grid expects key=v1,v2,... (or key1,key2=a:b,c:d), got "
                              f"{spec!r} (e.g. --grid params.l2=100,500)")
        for key in keys:
            if key in seen:
                raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
            if key == "data" or key.startswith("data."):
                raise ConfigError(f"--grid {key}: an ablation runs every configuration on one "
                                  f"split, so data.* keys cannot vary; set them with --set and "
                                  f"run one ablation per dataset/split")
            seen.add(key)
        bad = [v for v in values if len(keys) > 1 and len(_split_values(v, ":")) != len(keys)]
        if bad:
            raise ConfigError(f"--grid {axis}: each value must give {len(keys)} parts joined by "
                              f"':' (one per key), got {bad}")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {axis} repeats a value: {values}")
        grid[",".join(keys)] = values
    if not grid:
        raise ConfigError("an ablation needs at least one --grid key=v1,v2")
    return grid


def grid_keys(grid: dict[str, list[str]]) -> list[str]:
    """Every config key the grid sets, zipped axes flattened, in order."""
    return [k for axis in grid for k in _axis_keys(axis)]


def expand_grid(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product over the axes, the first varying slowest: [{key: value}]."""
    cells = [[_cell(axis, v) for v in values] for axis, values in grid.items()]
    return [{k: v for part in combo for k, v in part.items()}
            for combo in itertools.product(*cells)]


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Last key component where that is unambiguous (params.l2 -> l2), else the full key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def _dir_name(values: dict[str, str], short: dict[str, str]) -> str:
    parts = [f"{short[k]}-{v}" for k, v in values.items()]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "__".join(parts)).strip("_") or "base"


def _same_config(run_dir: Path, cfg: Any) -> bool:
    saved = run_dir / "config.toml"
    return saved.is_file() and load_toml(saved) == tomllib.loads(to_toml(to_dict(cfg)))


def _read_back(run_dir: Path) -> tuple[dict[str, Any], float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info_file = run_dir / "run.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return metrics, float(info.get("fit_seconds", math.nan))


def _metric_columns(rows: list[AblationRow], wanted: list[str] | None) -> list[str]:
    have = set.intersection(*(set(r.test) for r in rows)) if rows else set()
    if wanted:
        missing = [m for m in wanted if m not in have]
        if missing:
            raise ConfigError(f"metrics {missing} are not among the test metrics "
                              f"{sorted(have)}; check eval.ks")
        return list(wanted)
    cols = [m for m in DEFAULT_METRICS if m in have]
    return cols or sorted(have)[:4]


def _check_metric_names(wanted: list[str], ks: tuple[int, ...], auc: bool) -> None:
    """Refuse metric columns the evaluator will not produce with these cut-offs."""
    from genrec.evaluation.metrics import RANK_METRICS

    names = [*RANK_METRICS, "coverage", "gini", "novelty"]
    have = [f"{n}@{k}" for n in names for k in ks] + (["AUC"] if auc else [])
    missing = [m for m in wanted if m not in have]
    if missing:
        raise ConfigError(f"--metric {', '.join(missing)} will not be computed: cut-offs are "
                          f"eval.ks = {list(ks)}; pick from e.g. {', '.join(have[:6])} or add the "
                          f"cut-off with --set eval.ks=[...]")


def run_ablation(config: str | Path | None, grid: dict[str, list[str]], out: str | Path,
                 sets: list[str] = (), model: str | None = None,
                 metrics: list[str] | None = None, progress: bool = False,
                 say: Callable[[str], Any] = lambda _: None) -> AblationResult:
    """Train and evaluate every grid combination of ``config`` (a TOML preset) on one split.

    ``sets`` are base overrides applied before the grid values; ``model`` names the model when
    the preset does not. ``metrics`` picks the test metric columns (default HR@10, NDCG@10,
    Recall@20, NDCG@20, those that exist).
    """
    from genrec.runs import make_config, train

    out = Path(out)
    combos = expand_grid(grid)
    short = _short_keys(grid_keys(grid))
    configs = []
    for values in combos:  # every config is built (and validated) before anything trains
        cfg = make_config(model, list(sets) + [f"{k}={v}" for k, v in values.items()], config)
        configs.append((values, cfg))
    base = configs[0][1]
    if any(c.data != base.data for _, c in configs):
        raise ConfigError("every configuration of an ablation must use the same data section "
                          "(one split); move data.* settings out of the grid")
    if metrics:
        _check_metric_names(metrics, base.eval.ks, base.eval.auc)  # before training, not after

    rows = []
    for i, (values, cfg) in enumerate(configs, 1):
        name = _dir_name(values, short)
        run_dir = out / "runs" / name
        label = ", ".join(f"{short[k]}={v}" for k, v in values.items())
        cached = (run_dir / "metrics.json").is_file() and _same_config(run_dir, cfg)
        if cached:
            say(f"[{i}/{len(configs)}] {label}: already done, read from {run_dir}")
            found, fit_s = _read_back(run_dir)
        else:
            say(f"[{i}/{len(configs)}] {label}: training -> {run_dir}")
            t0 = time.perf_counter()
            run = train(cfg, run_dir, progress=progress)
            found = run.info["metrics"]
            fit_s = float(run.info.get("fit_seconds", time.perf_counter() - t0))
        rows.append(AblationRow(name, dict(values), run_dir, found.get("valid", {}),
                                found["test"], fit_s, cached))

    select = base.train.metric
    scored = [(r.valid[select], i) for i, r in enumerate(rows)
              if select in r.valid and not math.isnan(r.valid[select])]
    selected = max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None
    result = AblationResult(grid, rows, _metric_columns(rows, metrics), select, selected)
    result.files = write_outputs(result, out, base)
    return result


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _plot(result: AblationResult, labels: list[str], out: Path, title: str) -> None:
    """One panel per test metric, one horizontal bar per configuration (readable for many)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    n, y = len(result.rows), np.arange(len(result.rows))
    fig, axes = plt.subplots(1, len(result.metrics), sharey=True, squeeze=False, dpi=110,
                             figsize=(2.2 + 2.6 * len(result.metrics), 1.2 + 0.35 * n))
    colors = ["C1" if i == result.selected else "C0" for i in range(n)]
    for ax, metric in zip(axes[0], result.metrics):
        bars = ax.barh(y, [r.test[metric] for r in result.rows], color=colors)
        ax.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
        ax.set_title(metric, fontsize=9)
        ax.margins(x=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_yticks(y, [lab + (" *" if i == result.selected else "")
                              for i, lab in enumerate(labels)], fontsize=8)
    axes[0][0].invert_yaxis()  # the first configuration on top, as in the table
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_outputs(result: AblationResult, out: Path, base: Any) -> dict[str, Path]:
    """ablation.md / .csv / .png / .json in ``out`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = grid_keys(result.grid)
    short = _short_keys(keys)
    sel = result.select_metric
    header = ["config", *(short[k] for k in keys), f"valid {sel}",
              *(f"test {m}" for m in result.metrics), "fit s"]
    data = base.data
    lines = [f"# Ablation: {base.model} on {Path(data.name).name} ({data.split} split)", "",
             f"Full ranking over all items, history masked (PROTOCOL.md). Test metrics; the row "
             f"selected on validation {sel} is marked *.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for i, r in enumerate(result.rows):
        mark = " *" if i == result.selected else ""
        cells = [r.name + mark, *(r.values[k] for k in keys), _fmt(r.valid.get(sel, math.nan)),
                 *(_fmt(r.test[m]) for m in result.metrics), f"{r.fit_seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
        csv_rows.append({"config": r.name, **{k: r.values[k] for k in keys},
                         f"valid {sel}": r.valid.get(sel, ""),
                         **{f"test {m}": r.test[m] for m in result.metrics},
                         "fit_seconds": r.fit_seconds, "selected": i == result.selected,
                         "run_dir": str(r.run_dir)})
    files = {"md": out / "ablation.md", "csv": out / "ablation.csv", "png": out / "ablation.png",
             "json": out / "ablation.json"}
    files["md"].write_text("\n".join(lines) + "\n")
    with files["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    labels = [", ".join(f"{short[k]}={r.values[k]}" for k in keys) for r in result.rows]
    _plot(result, labels, files["png"], f"{base.model} on {Path(data.name).name} ({data.split}): "
                                        f"test metrics, * = selected on valid {sel}")
    files["json"].write_text(json.dumps({
        "grid": result.grid, "base": to_dict(base), "select_metric": sel,
        "selected": result.selected, "metrics": result.metrics,
        "rows": [{"name": r.name, "values": r.values, "run_dir": str(r.run_dir), "valid": r.valid,
                  "test": r.test, "fit_seconds": r.fit_seconds, "cached": r.cached}
                 for r in result.rows]}, indent=2))
    return files
