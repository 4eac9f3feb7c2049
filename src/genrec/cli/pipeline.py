"""``genrec pipeline``: the recall -> rank pipeline on protocol P5 (``genrec.pipeline.ranking``).

    genrec pipeline train configs/pipeline_ml100k_p5.toml --out runs/pipeline_ml100k
    genrec pipeline train configs/pipeline_ml100k_p5.toml --set ranker.negatives=10 --out ...
    genrec pipeline evaluate runs/pipeline_ml100k --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from genrec.cli._common import console, metrics_table
from genrec.pipeline.ranking import evaluate_pipeline, load_pipeline_config, train_pipeline

app = typer.Typer(help="recall -> rank pipelines on protocol P5 (two-stage leave-one-out)",
                  no_args_is_help=True)
_KEYS = ["HR@10", "NDCG@10", "ILD@10", "candidate_recall", "AUC", "GAUC", "logloss"]


def _show(metrics: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    console.print(metrics_table(metrics["rows"], _KEYS, title="P5 test, full ranking "
                                f"(best recall alone: {metrics['best_recall']})"))
    for name, error in metrics.get("failed_channels", {}).items():
        console.print(f"[yellow]channel {name!r} failed and was left out:[/] {error}")


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="pipeline TOML (configs/pipeline_*_p5.toml)"),
    out: Path = typer.Option(..., help="the pipeline run folder to write"),
    set_: List[str] = typer.Option([], "--set", help="override, e.g. ranker.negatives=10"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Train the ranker on the validation position's candidates; evaluate on test."""
    cfg = load_pipeline_config(config, set_)  # unknown keys and names fail before any work
    result = train_pipeline(cfg, out)
    _show({k: result[k] for k in ("rows", "best_recall", "similarity", "failed_channels")},
          as_json)
    if not as_json:
        console.print(f"pipeline run: {out}")


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="a pipeline run folder (genrec pipeline train)"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Recompute the P5 test table of a saved pipeline run."""
    _show(evaluate_pipeline(run), as_json)
