"""``genrec recall``: multi-channel recall over saved runs, HitRate@N per channel and merged.

Channels are given in priority order, each ``SOURCE[:QUOTA]`` (quota default 1): ``popularity``
or a run directory (exact scores); ``--ann RUN_DIR[:QUOTA]`` adds a vector model (two_tower)
through a faiss index. Every run must share one split. Example:
    genrec recall --channel popularity:1 --channel runs/itemcf:2 --ann runs/two_tower:2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from genrec.cli._common import console, metrics_table
from genrec.config import ConfigError
from genrec.pipeline.recall import ann_channel, popularity_channel, recall_report, run_channel
from genrec.retrieval import KINDS, IndexConfig


def _source(spec: str) -> tuple[str, float]:
    source, _, quota = spec.rpartition(":") if ":" in spec else (spec, "", "1")
    try:
        return source, float(quota)
    except ValueError:
        raise ConfigError(f"channel {spec!r}: the quota after ':' must be a number "
                          f"(e.g. runs/itemcf:2)") from None


def recall_cmd(
    channel: List[str] = typer.Option([], "--channel", help="popularity or a run dir, [:quota]"),
    ann: List[str] = typer.Option([], "--ann", help="a two_tower run dir through faiss, [:quota]"),
    index: str = typer.Option("flat", help=f"faiss index for --ann: {' | '.join(KINDS)}"),
    stage: str = typer.Option("test", help="valid | test"),
    n: str = typer.Option("50,100,200", help="cut-offs N, comma separated"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Recall candidates from several channels with quotas; HR@N per channel and merged."""
    from genrec.runs import load_run

    parsed = [(*_source(s), False) for s in channel] + [(*_source(s), True) for s in ann]
    runs = {src: load_run(src) for src, _, _ in parsed if src != "popularity"}
    if not runs:
        raise ConfigError("genrec recall needs at least one run directory (--channel RUN_DIR or "
                          "--ann RUN_DIR); the split comes from the runs")
    split = next(iter(runs.values())).split
    chans = []
    for src, quota, is_ann in parsed:
        if src == "popularity":
            chans.append(popularity_channel(split, stage, quota))
        elif is_ann:
            chans.append(ann_channel(runs[src], split, stage, quota, name=f"{Path(src).name} (ann)",
                                     index=IndexConfig(kind=index)))
        else:
            chans.append(run_channel(runs[src], split, stage, quota, name=Path(src).name))
    rep = recall_report(chans, split, stage, tuple(int(x) for x in n.split(",") if x.strip()))
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    keys = [k for k in rep["merged"] if k.startswith("HR@")]
    rows = {**rep["per_channel"], "merged": rep["merged"]}
    console.print(metrics_table(rows, keys, title=f"recall on {split.name} {stage} "
                                                  f"({rep['n_users']} users, {rep['n_cold']} "
                                                  f"without history: popularity)"))


def register(app: typer.Typer) -> None:
    app.command("recall")(recall_cmd)
