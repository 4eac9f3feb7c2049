"""``genrec train|evaluate|recommend``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from genrec.cli._common import console, metrics_table
from genrec.runs import evaluate_run, load_run, make_config, recommend, train

SHOWN = ["HR@10", "NDCG@10", "Recall@20", "NDCG@20", "MRR@10", "AUC"]


def train_cmd(
    model: str = typer.Argument(..., help="model name, e.g. popularity, itemcf, ease"),
    data: Optional[str] = typer.Option(None, help="dataset preset, prepared name or directory"),
    split: Optional[str] = typer.Option(None, help="loo | ratio | temporal | fixed"),
    config: Optional[Path] = typer.Option(None, help="TOML preset (configs/...)"),
    set_: List[str] = typer.Option([], "--set", help="override, e.g. params.l2=300 or eval.ks=[10,20]"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/<model>_<data>_<split>)"),
) -> None:
    """Fit a model, evaluate it with full ranking, save the run directory."""
    sets = list(set_) + ([f"data.name={data}"] if data else []) + ([f"data.split={split}"] if split else [])
    cfg = make_config(model, sets, config)
    out = out or Path("runs") / f"{cfg.model}_{Path(cfg.data.name).name}_{cfg.data.split}"
    run = train(cfg, out)
    console.print(metrics_table({s: run.info["metrics"][s] for s in run.info["metrics"]}, SHOWN,
                                title=f"{cfg.model} on {run.dataset.name} ({cfg.data.split})"))
    console.print(f"fit {run.info['fit_seconds']}s, test eval {run.info['eval_seconds']}s -> {out}")


def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train`"),
    stage: str = typer.Option("test", help="valid | test"),
    as_json: bool = typer.Option(False, "--json", help="print metrics as JSON"),
) -> None:
    """Re-evaluate a saved run (full ranking, history masked)."""
    result = evaluate_run(load_run(run_dir), stage)
    if as_json:
        print(json.dumps({"stage": stage, "n_users": result.n_users, "seconds": result.seconds,
                          "metrics": result.metrics}, indent=2))
    else:
        console.print(metrics_table({stage: result.metrics}, sorted(result.metrics), title=str(run_dir)))


def recommend_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train`"),
    user: str = typer.Option(..., help="raw user id as in the source data"),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="how many items"),
    fallback: Optional[str] = typer.Option(None, help="'popular': serve unknown users the most popular items"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Top-k unseen items for a user, with titles."""
    recs = recommend(load_run(run_dir), user, k, fallback)
    if as_json:
        print(json.dumps(recs, indent=2))
        return
    if recs["fallback"]:
        console.print(f"[yellow]unknown user {user!r}: serving the most popular items[/]")
    for rank, it in enumerate(recs["items"], 1):
        console.print(f"{rank:>3}. {it['title']}  [dim]({it['item_id']}, {it['score']:.3f})[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("recommend")(recommend_cmd)
