"""The ``session`` kind: sequence-to-sequence session generators (GENIUS).

Contract: a ``sequence`` model's (``config.max_len``, ``score(SeqBatch) -> (B, n_items + 1)``, the
scores of the session's FIRST item, so the full-ranking evaluator, serving and the conformance
suite treat it as a next-item model) plus ``config.session_len`` / ``config.pretrain_epochs`` /
``config.decode``, ``loss(SeqBatch)`` (the encoder's next-item loss, pre-training),
``loss(SessionBatch)`` (the session with teacher forcing), ``forward(SessionBatch).gate`` (expert
weights per position) and ``generate(SeqBatch, n, exclude=...) -> (B, n)`` item indices, -1 where
nothing is left.

Training: the first ``pretrain_epochs`` epochs feed ``train_batches`` (encoder alone), the rest
``session_batches`` (encoder-decoder), both through the one trainer with the same steps per epoch,
so ``--resume`` continues in the right phase. Evaluation adds, to the full-ranking metrics of the
first item, the P6 session metrics of a GENERATED list of ``session_len`` items (``session/...``,
``genrec.evaluation.session``; ILD over the model's content vectors when it has them), the
experts' mean gate weight over the stage's true sessions with teacher forcing (``gate/<expert>``),
and counts: users whose history is empty get the most popular unseen items instead
(``session/popularity_fallback``), users for whom fewer than ``session_len`` items were left
(catalogue minus history) get a shorter list (``session/short_lists``).

DPO (``params.dpo_reference`` = a trained genius run): a run of its own, refused unless the
reference trained genius on the same data and split with the same config (up to ``DPO_FIELDS``).
The policy starts from the reference weights; each epoch's batches are ``PreferenceBatch`` pairs
sampled from the frozen reference (``_dpo_batches``), seeded by (seed, epoch), so ``--resume``
draws the same pairs.

``params.init_from`` = a trained genius run, checked as ``dpo_reference`` is: plain SFT (no
pre-training phase) starting from that run's weights with a fresh optimizer, as a DPO run starts;
the "same number of extra steps without DPO" control (benchmarks/bench_sessions_dpo.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

from genrec.config import ConfigError, from_dict, load_toml
from genrec.data.batches import SeqBatch, eval_batch, train_batches
from genrec.data.dataset import DataError
from genrec.data.sessions import (PreferenceBatch, SessionBatch, n_session_batches,
                                  session_batches)
from genrec.evaluation.session import session_metrics, session_rewards
from genrec.runs.kinds.sequence import SequenceKind

if TYPE_CHECKING:
    from genrec.evaluation import EvalResult
    from genrec.runs import Run

__all__ = ["SessionKind", "p6_metrics"]

_SUB_BATCH = 256  # users per generation pass


def _padded(sessions: list[np.ndarray], users: np.ndarray) -> np.ndarray:
    """(B, k) the users' true sessions, right-padded with 0."""
    width = max(1, max((len(sessions[u]) for u in users), default=1))
    out = np.zeros((len(users), width), dtype=np.int64)
    for row, u in enumerate(users):
        out[row, :len(sessions[u])] = sessions[u]
    return out


def p6_metrics(run: Run, stage: str, lists: Callable[[np.ndarray], np.ndarray],
               item_vectors: np.ndarray | None = None) -> dict[str, float]:
    """The P6 metrics (``session/...``) of ``lists(users) -> (B, K)`` item lists (-1 = empty)
    against the users' true ``stage`` sessions."""
    split = run.split
    sessions = split.sessions(stage)
    users = np.flatnonzero([len(s) > 0 for s in sessions])
    if not len(users):
        return {}
    got = np.concatenate([lists(users[lo:lo + _SUB_BATCH])
                          for lo in range(0, len(users), _SUB_BATCH)])
    metrics = session_metrics(got, _padded(sessions, users), split.item_counts(), split.n_users,
                              item_vectors)
    return {f"session/{k}": v for k, v in metrics.items()}


class SessionKind(SequenceKind):
    name = "session"

    def batches(self, run: Run) -> tuple[Callable[[int], Iterable], int]:
        cfg, split, c = run.config.train, run.split, run.model.config

        if c.dpo_reference:
            return self._dpo_batches(run), n_session_batches(split, cfg.batch_size)
        if c.init_from:  # plain SFT from another run's weights (a DPO run's extra-steps control)
            run.model.load_state_dict(self._weights_of(run, "init_from"))

        def batches(epoch: int) -> Iterable:
            if epoch < c.pretrain_epochs:  # the encoder alone, on next-item prediction
                return train_batches(split, c.max_len, cfg.batch_size, cfg.seed, epoch)
            return session_batches(split, c.max_len, c.session_len, cfg.batch_size, cfg.seed,
                                   epoch)

        steps = n_session_batches(split, cfg.batch_size)
        if steps == 0:
            raise DataError(f"{run.dataset.name}: no user has 2 or more training interactions, "
                            f"so a session model has nothing to learn from; check the split")
        return batches, steps

    @staticmethod
    def _weights_of(run: Run, field: str) -> dict[str, torch.Tensor]:
        """The weights of the genius run named by ``params.<field>``, refused unless that run
        trained genius on the same data and split with the same config (up to ``DPO_FIELDS``)."""
        from genrec.models.genius import DPO_FIELDS, GeniusConfig

        ref_dir = Path(getattr(run.model.config, field)).expanduser()
        files = [ref_dir / n for n in ("config.toml", "run.json", "model.pt")]
        if not all(f.is_file() for f in files):
            raise ConfigError(f"params.{field}: {ref_dir} is not a trained genius run "
                              f"(needs config.toml, run.json and model.pt); train the SFT model "
                              f"first with `genrec train genius --out DIR`")
        ref_cfg = load_toml(files[0])
        info = json.loads(files[1].read_text())
        mine = dataclasses.asdict(from_dict(GeniusConfig, dict(run.config.params)))
        theirs = dataclasses.asdict(from_dict(GeniusConfig, ref_cfg.get("params", {})))
        differ = sorted(k for k in mine if k not in DPO_FIELDS and mine[k] != theirs[k])
        ref_data = ref_cfg.get("data", {})
        differ += [f"data.{k}" for k in ("name", "split", "seed")
                   if ref_data.get(k) != getattr(run.config.data, k)]
        if ref_cfg.get("model") != "genius" or differ or \
                info.get("dataset_hash") != run.dataset.content_hash:
            what = ", ".join(differ) or "the dataset content"
            raise ConfigError(f"params.{field}: {ref_dir} does not match this run (model "
                              f"{ref_cfg.get('model')!r}, differing: {what}); start from a "
                              f"genius run of the same config and data")
        return torch.load(files[2], map_location="cpu", weights_only=True)

    @classmethod
    def _reference(cls, run: Run) -> torch.nn.Module:
        """The frozen reference of a DPO run: the weights of ``dpo_reference``."""
        reference = copy.deepcopy(run.model)
        reference.load_state_dict(cls._weights_of(run, "dpo_reference"))
        run.model.load_state_dict(reference.state_dict())  # the policy starts as the reference
        return reference.eval().requires_grad_(False)

    def _dpo_batches(self, run: Run) -> Callable[[int], Iterable[PreferenceBatch]]:
        """Per training history: ``dpo_samples`` top-p sessions from the reference, the best and
        the worst by ``session_rewards`` against the true continuation, their reference
        log-probabilities."""
        cfg, split, c = run.config.train, run.split, run.model.config
        reference = self._reference(run).to(cfg.device)
        counts = split.item_counts()
        content = reference.modalities["content"].vectors.cpu().numpy() \
            if "content" in reference.modalities else None

        def batches(epoch: int) -> Iterable[PreferenceBatch]:
            for lo, b in enumerate(session_batches(split, c.max_len, c.session_len,
                                                   cfg.batch_size, cfg.seed, epoch)):
                b = b.to(cfg.device)
                hist = SeqBatch(b.users, b.items, None, b.timestamps)
                seed = ((cfg.seed * 10_000 + epoch) * 100_000 + lo) * 100  # + sample number
                with torch.no_grad():
                    samples = torch.stack([reference.generate(hist, c.session_len, "top_p",
                                                              seed=seed + m)
                                           for m in range(c.dpo_samples)], 1)  # (B, M, S)
                    reward = session_rewards(samples.cpu().numpy(), b.targets.cpu().numpy(),
                                             counts, split.n_users, content, c.dpo_lambda,
                                             c.dpo_mu)                    # (B, M)
                    rows = torch.arange(len(b))
                    pick = lambda i: samples[rows, torch.from_numpy(i)].clamp(min=0)  # noqa: E731
                    chosen, rejected = pick(reward.argmax(1)), pick(reward.argmin(1))
                    ref = [reference.session_logp(SessionBatch(b.users, b.items, t, b.timestamps))
                           for t in (chosen, rejected)]
                yield PreferenceBatch(b.users, b.items, chosen, rejected, *ref, b.timestamps)

        return batches

    def stage_metrics(self, run: Run, stage: str, ranked: EvalResult | None = None
                      ) -> dict[str, float]:
        """The P6 metrics of generated sessions (module docstring); ``ranked`` is not read."""
        model, split = run.model, run.split
        c = model.config
        device = next(model.parameters()).device
        history = split.history(stage).tocsr()
        popular = np.argsort(-split.item_counts(), kind="stable")
        counts = {"popularity_fallback": 0, "short_lists": 0}
        model.eval()

        def lists(users: np.ndarray) -> np.ndarray:
            batch = eval_batch(split, stage, users, c.max_len).to(device)
            exclude = torch.from_numpy(history[users].toarray() > 0).to(device)
            out = model.generate(batch, c.session_len, exclude=exclude).cpu().numpy()
            empty = np.diff(history.indptr)[users] == 0
            for row in np.flatnonzero(empty):  # no history: the most popular items, flagged
                out[row] = [i for i in popular if i != 0][:c.session_len]
            counts["popularity_fallback"] += int(empty.sum())
            counts["short_lists"] += int((out[:, -1] < 0).sum())
            return out

        content = model.modalities["content"].vectors.cpu().numpy() \
            if "content" in model.modalities else None
        with torch.no_grad():
            out = p6_metrics(run, stage, lists, content)
            out.update({f"session/{k}": float(v) for k, v in counts.items()})
            out.update(self._gate_usage(run, stage, device))
        return out

    @staticmethod
    def _gate_usage(run: Run, stage: str, device: torch.device) -> dict[str, float]:
        """Each expert's mean gate weight over the stage's true sessions (teacher forcing):
        ``gate/<expert>`` over every decoder position that reads an item, and
        ``gate/<expert>@<p>`` at position p (1 = the first item fed after the start token), the
        numbers of ``genrec.evaluation.plots.gate_chart``."""
        model, split = run.model, run.split
        if not model.experts:
            return {}
        sessions = split.sessions(stage)
        users = np.flatnonzero([len(s) > 0 for s in sessions])
        S = model.config.session_len
        total, n = torch.zeros(S, len(model.experts)), torch.zeros(S)
        for lo in range(0, len(users), _SUB_BATCH):
            u = users[lo:lo + _SUB_BATCH]
            hist = eval_batch(split, stage, u, model.config.max_len)
            targets = torch.from_numpy(_padded(sessions, u)[:, :S])
            gate = model(SessionBatch(hist.users, hist.items, targets, hist.timestamps)
                         .to(device)).gate.cpu()                    # (B, S, E)
            # a position that reads no item (start token, padding) has an all-zero gate
            total[:gate.shape[1]] += gate.sum(0)
            n[:gate.shape[1]] += (gate.sum(-1) > 0).sum(0)
        out = {f"gate/{e}": float(total[:, i].sum() / max(float(n.sum()), 1.0))
               for i, e in enumerate(model.experts)}
        for p in np.flatnonzero(n.numpy() > 0):
            out.update({f"gate/{e}@{p}": float(total[p, i] / n[p])
                        for i, e in enumerate(model.experts)})
        return out
