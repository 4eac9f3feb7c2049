"""Item vectors that benchmarks need: made once with ``genrec embed items`` and then reused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def ensure_vectors(dataset: str, fields: str, name: str = "minilm", threads: int = 2
                   ) -> float | None:
    """Encode ``dataset``'s items (MiniLM, text ``fields``) into ``item_vectors/<name>.parquet``
    unless it exists; the seconds it took, or None when the file was there already."""
    from genrec.data.prepare import load_dataset
    from genrec.features.store import vectors_dir

    if (vectors_dir(load_dataset(dataset)) / f"{name}.parquet").is_file():
        return None
    t = time.perf_counter()
    cli = Path(sys.executable).parent / "genrec"
    subprocess.run([str(cli), "embed", "items", "--data", dataset, "--encoder", "minilm",
                    "--name", name, "--fields", fields, "--threads", str(threads)],
                   check=True, cwd=_REPO)
    return time.perf_counter() - t
