"""``genrec train|evaluate|recommend``.

``genrec train MODEL --nproc N`` re-runs ``genrec train`` under torchrun in N processes (DDP;
``genrec.training.distributed``); ``--resume`` continues from the run directory's checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from genrec.cli._common import console, metrics_by_k, metrics_table, refuse_existing_file, write_table
from genrec.config import ConfigError
from genrec.data.dataset import DataError
from genrec.data.prepare import load_dataset
from genrec.runs import (check_run_out, check_stage, evaluate_run, load_run, make_config,
                         model_kind, recommend, recommend_all, train)
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
    force: bool = typer.Option(False, help="replace a run of another model at --out"),
) -> None:
    """Fit a model, evaluate it with full ranking, save the run directory."""
    sets = list(set_) + ([f"data.name={data}"] if data else []) + ([f"data.split={split}"] if split else [])
    cfg = make_config(model, sets, config)
    suffix = "_new" if cfg.data.new_items else ""  # P1-new runs never replace P1 runs
    out = out or Path("runs") / f"{cfg.model}_{Path(cfg.data.name).name}_{cfg.data.split}{suffix}"
    if not data and not config and not any(s.startswith("data.name=") for s in set_):
        console.print(f"[yellow]note:[/] no --data given: training on {cfg.data.name} (the default)")
    if resume and not (out / "checkpoint.pt").is_file():
        found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        raise DataError(f"nothing to resume: {out / 'checkpoint.pt'} does not exist (found in "
                        f"{out}: {', '.join(found) or 'nothing'}); train without --resume first")
    if nproc > 1:
        model_kind(cfg.model).check_train(cfg.model)  # e.g. a ranker: refused here, not in N workers
        if not model_kind(cfg.model).trains:
            raise ConfigError(f"--nproc trains gradient models with DDP; {cfg.model!r} is fitted "
                              f"in closed form, so run it without --nproc")
        check_run_out(out, cfg.model, force or resume)  # train() checks it in the workers too late
        load_dataset(cfg.data.name, cfg.data.filters())  # prepared once here; workers only read
        args = ["train", cfg.model, "--out", str(out.resolve())]
        args += [a for s in sets for a in ("--set", s)]
        args += ["--config", str(config.resolve())] if config else []
        args += (["--resume"] if resume else []) + ([] if progress else ["--no-progress"])
        args += ["--force"] if force else []
        raise typer.Exit(launch(nproc, args))
    run = train(cfg, out, progress=progress, resume=resume, force=force)
    if "metrics" not in run.info:  # a DDP worker other than rank 0: rank 0 reports
        return
    console.print(metrics_table({s: run.info["metrics"][s] for s in run.info["metrics"]}, SHOWN,
                                title=f"{cfg.model} on {run.dataset.name} ({cfg.data.split})"))
    console.print(f"fit {run.info['fit_seconds']}s, test eval {run.info['eval_seconds']}s -> {out}")


FALLBACKS = ("popular",)


def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train`"),
    stage: str = typer.Option("test", help="valid | test"),
    as_json: bool = typer.Option(False, "--json", help="print metrics as JSON"),
    per_user: Optional[Path] = typer.Option(None, help="also write each user's metrics to this "
                                                       ".csv or .parquet file (a new file)"),
) -> None:
    """Re-evaluate a saved run (full ranking, history masked)."""
    check_stage(stage)
    if per_user is not None:
        refuse_existing_file(per_user)
    run = load_run(run_dir)
    result = evaluate_run(run, stage)
    if per_user is not None:
        import polars as pl

        table = pl.DataFrame({"user_id": run.dataset.user_ids[result.users],
                              **{k: v for k, v in result.per_user.items()}})
        write_table(table, per_user)
    if as_json:
        print(json.dumps({"stage": stage, "n_users": result.n_users, "seconds": result.seconds,
                          "metrics": result.metrics}, indent=2))
        return
    console.print(f"{run_dir}: {stage}, {result.n_users:,} users, full ranking, history masked")
    console.print(metrics_by_k(result.metrics))
    if per_user is not None:
        console.print(f"per-user metrics of {result.n_users:,} users -> {per_user}")


def recommend_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory from `genrec train`"),
    user: Optional[str] = typer.Option(None, help="raw user id as in the source data"),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="how many items"),
    fallback: Optional[str] = typer.Option(None, help="'popular': serve unknown users the most popular items"),
    all_users: bool = typer.Option(False, "--all-users", help="top-k for every user, to --out"),
    out: Optional[Path] = typer.Option(None, help="with --all-users: a new .parquet or .csv file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Top-k unseen items for a user (or every user, to a file), with titles."""
    if fallback is not None and fallback not in FALLBACKS:
        raise ConfigError(f"--fallback {fallback!r} is not one of {', '.join(FALLBACKS)}")
    if all_users == (user is not None):
        raise ConfigError("give exactly one of --user ID or --all-users (with --out FILE)")
    if all_users:
        if out is None:
            raise ConfigError("--all-users writes a file: add --out recs.parquet (or recs.csv)")
        refuse_existing_file(out)
        table = recommend_all(load_run(run_dir), k)
        write_table(table, out)
        console.print(f"top-{k} for {table['user_id'].n_unique():,} users ({table.height:,} rows: "
                      f"user_id, rank, item_id, score) -> {out}")
        return
    run = load_run(run_dir)
    try:
        recs = recommend(run, user, k, fallback)
    except DataError as e:
        if "unknown user" in str(e):
            raise DataError(f"{e}; add --fallback popular to serve unknown users the most "
                            f"popular items") from None
        raise
    if as_json:
        print(json.dumps(recs, indent=2))
        return
    if recs["fallback"]:
        console.print(f"[yellow]unknown user {user!r}: serving the most popular items[/]")
    console.print(f"top {len(recs['items'])} for user {user} ({run.config.model} on "
                  f"{run.dataset.name})")
    table = Table()
    for name, justify in (("rank", "right"), ("title", "left"), ("item_id", "left"),
                          ("score", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for rank, it in enumerate(recs["items"], 1):
        table.add_row(str(rank), str(it["title"]), str(it["item_id"]), f"{it['score']:.4g}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("recommend")(recommend_cmd)
