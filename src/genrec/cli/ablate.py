"""``genrec ablate CONFIG --grid key=v1,v2 ...``: a grid of runs on one split, one results table.

CONFIG is a TOML preset (configs/...) or a model name; keys that vary together form one zipped
axis (`--grid params.a,params.b=1:x,2:y`). Example:
    genrec ablate configs/ease_ml100k_p1.toml --grid params.l2=100,500,1000 --out runs/abl_ease
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from genrec.ablation import parse_grid, run_ablation
from genrec.cli._common import console, metrics_table
from genrec.config import ConfigError
from genrec.registry import MODELS


def ablate_cmd(
    config: str = typer.Argument(..., help="TOML preset (configs/...) or a model name"),
    grid: List[str] = typer.Option(..., "--grid", help="axis key=v1,v2 (repeat for more axes), "
                                                       "e.g. params.l2=100,500"),
    set_: List[str] = typer.Option([], "--set", help="base override, e.g. data.name=ml-100k"),
    out: Optional[Path] = typer.Option(None, help="output folder (default runs/ablate_<name>)"),
    metric: List[str] = typer.Option([], "--metric", help="test metric column (repeatable)"),
    progress: bool = typer.Option(False, help="show the trainer's progress bars"),
) -> None:
    """Train every grid combination on one split; write ablation.md/.csv/.png/.json."""
    is_model = config in MODELS and not Path(config).is_file()
    if not is_model and not Path(config).is_file():
        raise ConfigError(f"{config!r} is neither a model ({', '.join(MODELS)}) nor a TOML "
                          f"preset file (configs/...)")
    preset, model = (None, config) if is_model else (Path(config), None)
    out = out or Path("runs") / f"ablate_{config if is_model else Path(config).stem}"
    res = run_ablation(preset, parse_grid(list(grid)), out, sets=list(set_), model=model,
                       metrics=list(metric) or None, progress=progress, say=console.print)
    rows = {r.name + (" *" if i == res.selected else ""): r.test for i, r in enumerate(res.rows)}
    console.print(metrics_table(rows, res.metrics, title=f"test (* = best valid {res.select_metric})"))
    console.print(" ".join(f"{k}: {p}" for k, p in res.files.items()))


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate_cmd)
