"""The ``features`` kind: rankers over recall's candidate lists (DIN, DCN-V2, MMoE, the composed
ranker).

Contract: ``forward(FeatureBatch) -> (B, T)`` logits, one per task, and ``loss(FeatureBatch)`` (BCE
with logits summed over the tasks); the config carries ``n_items``, ``n_dense``,
``sparse_cards``, ``n_tasks`` and ``max_len``, filled from the feature table by
``genrec.pipeline``. A ranker scores (user, candidate) rows, not the catalogue: it needs the
candidate lists and features a pipeline builds (two-stage protocol P5), so ``genrec train`` on an
interaction log refuses it and ``genrec pipeline train`` trains it with the two functions here:

    fit_features_model(model, train_batches, valid_batches, cfg)   the one trainer
        (``genrec.training.trainer.fit``) on ``train_batches()``, early-stopping on the
        validation metric ``cfg.metric`` of ``VALID_METRICS`` over ``valid_batches()``
    score_features_model(model, batches) -> (N, T) probabilities (sigmoid of the logits)

Example:
    >>> result = fit_features_model(model, lambda: train_rows, lambda: valid_rows,
    ...                             TrainConfig(epochs=20, metric="GAUC"))  # doctest: +SKIP
    >>> probs = score_features_model(model, test_rows)  # (N, T)          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

from genrec.config import ConfigError
from genrec.data.batches import FeatureBatch
from genrec.evaluation.binary import binary_metrics
from genrec.runs.kinds import Kind, Scorer
from genrec.training.trainer import TrainConfig, TrainResult, fit

if TYPE_CHECKING:
    from genrec.runs import Run

__all__ = ["FeaturesKind", "fit_features_model", "score_features_model", "VALID_METRICS"]

VALID_METRICS = ("GAUC", "AUC", "neg_logloss")  # train.metric choices (the trainer maximises)


class FeaturesKind(Kind):
    name = "features"
    trains = True

    def check_train(self, model: str) -> None:
        raise ConfigError(f"{model!r} ranks candidate lists (kind 'features'), so it is not "
                          f"trained on an interaction log; use `genrec pipeline train CONFIG`")

    def scorer(self, run: Run, stage: str) -> Scorer:
        raise ConfigError(f"{run.config.model!r} ranks a pipeline's candidates, not the whole "
                          f"catalogue; evaluate it with `genrec pipeline evaluate RUN`")

    def score_history(self, run: Run, items: np.ndarray) -> np.ndarray:
        raise ConfigError(f"{run.config.model!r} ranks a pipeline's candidates; serve the "
                          f"pipeline run (`genrec serve RUN`) to rank them for a history")


def score_features_model(model: torch.nn.Module, batches: Iterable[FeatureBatch]) -> np.ndarray:
    """(N, T) float64 probabilities (sigmoid of the logits) of every row of ``batches``, in order;
    the model is left in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for batch in batches:
            out.append(torch.sigmoid(model(batch.to(device)).float()).cpu().double().numpy())
    if not out:
        raise ValueError("score_features_model got no batches; pass the candidate rows to score")
    return np.concatenate(out)


def _validator(model: torch.nn.Module, valid_batches: Callable[[], Iterable[FeatureBatch]]
               ) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        rows = list(valid_batches())
        probs = score_features_model(model, rows)
        labels = torch.cat([b.labels.reshape(len(b), -1) for b in rows]).numpy()
        groups = torch.cat([b.groups for b in rows]).numpy()
        return binary_metrics(probs, labels, groups)

    return validate


def fit_features_model(model: torch.nn.Module, train_batches: Callable[[], Iterable[FeatureBatch]],
                       valid_batches: Callable[[], Iterable[FeatureBatch]] | None,
                       cfg: TrainConfig, run_dir: str | Path | None = None,
                       steps_per_epoch: int | None = None, progress: bool = False) -> TrainResult:
    """Train ``model`` in place with the one trainer; the best validated weights are restored.

    ``train_batches()`` yields one epoch of training rows (shuffle inside it if you want a new
    order per epoch); ``valid_batches()`` the validation rows, scored after each epoch and
    summarised by ``binary_metrics`` (GAUC, AUC, logloss, neg_logloss); ``cfg.metric`` (one of
    ``VALID_METRICS``) picks the epoch to keep and stops early. Without ``valid_batches`` the
    last epoch is kept. ``run_dir``: the trainer's checkpoint, log and curves go there;
    ``steps_per_epoch`` (the batches ``train_batches()`` yields) is needed for a cosine schedule.
    """
    if valid_batches is not None and cfg.metric not in VALID_METRICS:
        raise ValueError(f"train.metric {cfg.metric!r} is not a ranker metric; set train.metric "
                         f"to one of {', '.join(VALID_METRICS)}")
    validate = _validator(model, valid_batches) if valid_batches is not None else None
    return fit(model, cfg, lambda epoch: train_batches(), validate, run_dir=run_dir,
               steps_per_epoch=steps_per_epoch, progress=progress)
