"""``genrec train|evaluate|recommend``.

``genrec train MODEL --nproc N`` re-runs ``genrec train`` under torchrun in N processes (DDP;
``genrec.training.distributed``); ``--resume`` continues from the run directory's checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from genrec.cli._common import console, metrics_table
from genrec.config import ConfigError
from genrec.data.dataset import DataError
from genrec.data.prepare import load_dataset
from genrec.registry import model_classes
from genrec.runs import evaluate_run, load_run, make_config, recommend, train
from genrec.training.distributed import launch

SHOWN = ["HR@10", "NDCG@10", "Recall@20", "NDCG@20", "MRR@10", "AUC"]


def train_cmd(
    model: str = typer.Argument(..., help="model name, e.g. popularity, itemcf, ease, sasrec, hstu"),
    data: Optional[str] = typer.Option(None, help="dataset preset, prepared name or directory"),
    split: Optional[str] = typer.Option(None, help="loo | ratio | temporal | fixed"),
    config: Optional[Path] = typer.Option(None, help="TOML preset (configs/...)"),
    set_: List[str] = typer.Option([], "--set", help="override, e.g. params.l2=300 or eval.ks=[10,20]"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/<model>_<data>_<split>)"),
    resume: bool = typer.Option(False, help="continue from the run directory's checkpoint.pt"),
    nproc: int = typer.Option(1, min=1, help="processes for data-parallel training (torchrun + DDP)"),
    progress: bool = typer.Option(True, help="show the trainer's progress bar"),
) -> None:
    """Fit a model, evaluate it with full ranking, save the run directory."""
    sets = list(set_) + ([f"data.name={data}"] if data else []) + ([f"data.split={split}"] if split else [])
    cfg = make_config(model, sets, config)
    out = out or Path("runs") / f"{cfg.model}_{Path(cfg.data.name).name}_{cfg.data.split}"
    if resume and not (out / "checkpoint.pt").is_file():
        found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        raise DataError(f"nothing to resume: {out / 'checkpoint.pt'} does not exist (found in "
                        f"{out}: {', '.join(found) or 'nothing'}); train without --resume first")
    if nproc > 1:
        if not hasattr(model_classes(cfg.model)[0], "loss"):
            raise ConfigError(f"--nproc trains gradient models with DDP; {cfg.model!r} is fitted "
                              f"in closed form, so run it without --nproc")
        load_dataset(cfg.data.name, cfg.data.filters())  # prepared once here; workers only read
        args = ["train", cfg.model, "--out", str(out.resolve())]
        args += [a for s in sets for a in ("--set", s)]
        args += ["--config", str(config.resolve())] if config else []
        args += (["--resume"] if resume else []) + ([] if progress else ["--no-progress"])
        raise typer.Exit(launch(nproc, args))
    run = train(cfg, out, progress=progress, resume=resume)
    if "metrics" not in run.info:  # a DDP worker other than rank 0: rank 0 reports
        return
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
