"""Knob-free input checks shared by the models that read user x item matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["binary_matrix", "check_dense_fits"]


def binary_matrix(matrix: sp.spmatrix, n_items: int, what: str) -> sp.csr_matrix:
    """Binary float32 CSR copy of ``matrix``, which must be (users, n_items+1) with PAD empty."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if m.shape[1] != n_items + 1:
        raise ValueError(f"{what} has {m.shape[1]} columns but n_items={n_items}: matrices must "
                         f"be users x (n_items + 1) with column 0 = PAD; build them with "
                         f"Split.train_matrix() / Split.history()")
    m.sum_duplicates()
    m.eliminate_zeros()
    if (m.indices == 0).any():
        raise ValueError(f"{what} has interactions in column 0, which is PAD; item indices "
                         f"start at 1 (shift 0-based item ids by one)")
    m.data[:] = 1.0  # implicit feedback: a user counts once per item, whatever the rating
    return m


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_dense_fits(what: str, n_items: int, bytes_per_cell: float, fix: str) -> None:
    """Refuse, before any work, a dense n_items x n_items fit that needs more than 80% of the
    memory available now (``bytes_per_cell`` = the fit's peak bytes per matrix entry)."""
    need, free = bytes_per_cell * n_items**2, _available_bytes()
    if free is not None and need > 0.8 * free:
        raise ValueError(f"{what}: a dense {n_items:,} x {n_items:,} item-item fit needs about "
                         f"{need / 1e9:.1f} GB and {free / 1e9:.1f} GB of memory is available; "
                         f"{fix}")
