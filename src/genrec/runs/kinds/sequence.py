"""The ``sequence`` kind: models that read a user's item history (SASRec, HSTU, TIGER, SemID,
two-tower).

Contract: ``config.max_len`` (inputs keep the most recent ``max_len`` items), ``loss(SeqBatch)``
on ``train_batches`` and ``score(SeqBatch) -> (B, n_items + 1)`` on ``eval_batch``; a user with
no history is an all-PAD row, which the model scores itself (no fallback here). An explicit
history carries no times, so serving feeds it as one session (every timestamp equal); known
users are fed their real sequence with real timestamps. Two-tower models also expose
``user_vectors(SeqBatch)`` / ``item_vectors()``, which an ANN channel searches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

from genrec.data.batches import (SeqBatch, eval_batch, n_train_batches, train_batches,
                                 user_sequences)
from genrec.data.dataset import DataError
from genrec.runs.kinds import Kind, Scorer, Similar, cosine, history_mask

if TYPE_CHECKING:
    import scipy.sparse as sp

    from genrec.data.splits import Split
    from genrec.runs import Run

__all__ = ["SequenceKind"]

_SUB_BATCH = 256  # sequences per forward pass when scoring


class SequenceKind(Kind):
    name = "sequence"
    trains = True

    def batches(self, run: Run) -> tuple[Callable[[int], Iterable[SeqBatch]], int]:
        cfg, split, max_len = run.config.train, run.split, run.model.config.max_len

        def batches(epoch: int) -> Iterable[SeqBatch]:
            return train_batches(split, max_len, cfg.batch_size, cfg.seed, epoch)

        steps = n_train_batches(split, cfg.batch_size)
        if steps == 0:
            raise DataError(f"{run.dataset.name}: no user has 2 or more training interactions, "
                            f"so a sequence model has nothing to learn from; check the split and "
                            f"filters")
        return batches, steps

    def scorer(self, run: Run, stage: str) -> Scorer:
        model, split = run.model, run.split
        max_len = model.config.max_len
        lengths = user_sequences(split, stage).lengths()  # cached on the split
        model.eval()  # dropout off; the trainer switches back to train mode each epoch

        def score(users: np.ndarray) -> torch.Tensor:
            device = next(model.parameters()).device
            # users of similar length share a sub-batch, so few columns are all-PAD
            order = np.argsort(lengths[users], kind="stable")
            out = None
            with torch.no_grad():
                for lo in range(0, len(users), _SUB_BATCH):
                    rows = order[lo:lo + _SUB_BATCH]
                    part = model.score(eval_batch(split, stage, users[rows], max_len).to(device))
                    if out is None:
                        out = part.new_empty((len(users), part.shape[1]))
                    out[torch.from_numpy(rows).to(device)] = part
            return out

        return score

    def rollout(self, run: Run, stage: str, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """``lists(users) -> (B, k)`` item lists made by feeding the model its own picks, P6's
        "rolled out" baseline (docs/protocols.md): greedy, each step takes the best item outside
        the user's ``stage`` history and the items already picked, and appends it to the input
        (with the input's last timestamp: one session); -1 where no item is left."""
        model, split = run.model, run.split
        max_len = model.config.max_len
        history = split.history(stage)
        model.eval()

        def lists(users: np.ndarray) -> np.ndarray:
            users = np.asarray(users, dtype=np.int64)
            batch = eval_batch(split, stage, users, max_len)
            items, times = batch.items, batch.timestamps
            blocked = history_mask(history, users)  # grows with each step's picks
            out = np.full((len(users), k), -1, dtype=np.int64)
            last = torch.arange(len(users))
            with torch.no_grad():
                for step in range(k):
                    step_batch = SeqBatch(users=batch.users, items=items, timestamps=times)
                    scores = model.score(step_batch).float().cpu().masked_fill(blocked, -np.inf)
                    best = scores.argmax(1)  # (B,)
                    left = torch.isfinite(scores[last, best])
                    out[left.numpy(), step] = best[left].numpy()
                    blocked[last, best] = True
                    # a user with nothing left feeds PAD, which changes no later input
                    pick = torch.where(left, best, torch.zeros_like(best))[:, None]
                    stamp = times[:, -1:] if times.shape[1] else torch.zeros_like(pick)
                    items = torch.cat([items, pick], 1)[:, -max_len:]
                    times = torch.cat([times, stamp], 1)[:, -max_len:]
            return out

        return lists

    def score_history(self, run: Run, items: np.ndarray) -> np.ndarray:
        recent = torch.as_tensor(items[-run.model.config.max_len:], dtype=torch.int64)[None]
        # no user row: -1 makes any model that looked users up fail loudly, not silently
        batch = SeqBatch(users=torch.tensor([-1]), items=recent,
                         timestamps=torch.zeros_like(recent))
        with torch.inference_mode():
            return run.model.score(batch).double().numpy()[0]

    def similar(self, run: Run, known: sp.csr_matrix) -> Similar:
        """Cosine over the model's item id embeddings when it has a table of them, else
        co-occurrence (TIGER, content-only items)."""
        model = run.model
        emb = getattr(model, "item_emb", None)
        if isinstance(emb, torch.nn.Embedding) and emb.weight.shape[0] == known.shape[1]:
            table = torch.nn.functional.normalize(emb.weight.detach().float(), dim=-1).numpy()
            return cosine(f"{type(model).__name__} item embeddings (cosine)", table)
        return super().similar(run, known)

    def vector_search(self, run: Run, split: Split, stage: str
                      ) -> tuple[Callable[[], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        model = run.model
        if not (hasattr(model, "user_vectors") and hasattr(model, "item_vectors")):
            return super().vector_search(run, split, stage)  # one tower only: refused there
        model.eval()

        def items() -> np.ndarray:
            with torch.no_grad():
                return model.item_vectors().detach().float().cpu().numpy()

        def users(batch_users: np.ndarray) -> np.ndarray:
            batch = eval_batch(split, stage, np.asarray(batch_users, dtype=np.int64),
                               model.config.max_len)
            with torch.no_grad():
                device = next(model.parameters()).device
                return model.user_vectors(batch.to(device)).detach().float().cpu().numpy()

        return items, users
