"""Small statistics shared by benchmark scripts."""

from __future__ import annotations

import numpy as np

N_BOOT = 2000  # paired bootstrap resamples


def paired_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = N_BOOT
              ) -> tuple[float, float]:
    """95% paired bootstrap interval of mean(a) - mean(b); a[i] and b[i] belong to the same user,
    users are resampled."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(a), size=(n_boot, len(a)))
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))[idx].mean(axis=1)
    return float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))
