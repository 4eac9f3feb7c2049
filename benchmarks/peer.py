"""Run the RecBole 1.2.1 peer harness (``shared/peers/run_recbole.py``) and read its JSON line.

The harness lives outside this repository, in its own virtual environment, with its own data:

    PEER_VENV     the venv with recbole==1.2.1 (default /work/peer/venv; built by peers/setup.sh)
    PEER_DATA     folder with <dataset>/<dataset>.inter (default /work/peer/data; prepare_data.py)
    PEER_HARNESS  run_recbole.py (default: ../shared/peers/run_recbole.py next to the repo)
    PEER_WORK     RecBole's logs and checkpoints (default: a temp folder, deleted afterwards)

One call = one subprocess = one RecBole run, so its ``peak_rss_mb`` is that run's alone.

Example:
    >>> res = run_peer("EASE", "ml-100k", threads=2)                          # doctest: +SKIP
    >>> res["metrics"]["ndcg@10"], res["eval_seconds"]
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PeerError", "peer_paths", "run_peer"]

_REPO = Path(__file__).resolve().parents[1]


class PeerError(RuntimeError):
    """The RecBole harness is missing, or a run failed / printed no JSON line."""


def peer_paths() -> dict[str, Path]:
    """Where the harness, its venv python and its data are (from the environment or defaults)."""
    venv = Path(os.environ.get("PEER_VENV", "/work/peer/venv"))
    harness = os.environ.get("PEER_HARNESS")
    return {
        "python": venv / "bin" / "python",
        "harness": Path(harness) if harness else _REPO.parent / "shared/peers/run_recbole.py",
        "data": Path(os.environ.get("PEER_DATA", "/work/peer/data")),
    }


def _check(paths: dict[str, Path], dataset: str) -> None:
    if not paths["python"].is_file():
        raise PeerError(f"no RecBole venv python at {paths['python']}; set PEER_VENV or build it "
                        f"with `PEER_VENV=... bash shared/peers/setup.sh`")
    if not paths["harness"].is_file():
        raise PeerError(f"no run_recbole.py at {paths['harness']}; set PEER_HARNESS to the "
                        f"harness in shared/peers/")
    inter = paths["data"] / dataset / f"{dataset}.inter"
    if not inter.is_file():
        found = sorted(p.name for p in paths["data"].iterdir()) if paths["data"].is_dir() else []
        raise PeerError(f"no {inter} (PEER_DATA holds {found or 'nothing'}); create it with "
                        f"`PEER_DATA={paths['data']} {paths['python']} shared/peers/prepare_data.py"
                        f" ...` (see shared/peers/README.md)")


def run_peer(model: str, dataset: str, threads: int = 2, timeout: float | None = 3600,
             extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``run_recbole.py MODEL DATASET`` once and return its JSON line as a dict.

    ``threads`` becomes PEER_THREADS (torch threads); ``env`` adds variables (e.g.
    OPENBLAS_NUM_THREADS). The dict also gets ``process_seconds`` (wall time of the whole
    subprocess, imports included).
    """
    paths = peer_paths()
    _check(paths, dataset)
    with tempfile.TemporaryDirectory(prefix="recbole_peer_") as tmp:
        full_env = {**os.environ, **(env or {}), "PEER_DATA": str(paths["data"]),
                    "PEER_THREADS": str(threads), "PEER_WORK": os.environ.get("PEER_WORK", tmp)}
        cmd = [str(paths["python"]), str(paths["harness"]), model, dataset, *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise PeerError(f"`{' '.join(cmd)}` exited with {proc.returncode} and "
                        f"{'no' if not lines else 'a'} JSON line; last output:\n{tail}")
    result = json.loads(lines[-1])
    result["process_seconds"] = round(seconds, 2)
    return result
