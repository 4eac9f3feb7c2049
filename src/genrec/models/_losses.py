"""Next-item losses over hidden states, written once for every sequence model.

Every function takes ``hidden`` (N, D), the hidden states at the N positions that carry a loss,
``targets`` (N,) their next items (1..n_items, never 0) and ``items`` (n_items + 1, D), the item
table (row 0 = PAD, never a candidate). The model selects the N positions (``targets > 0``).

    cross_entropy    full softmax over the whole catalogue (PAD excluded)
    sampled_softmax  softmax over [positive, K shared negatives]; negatives that equal the row's
                     target ("accidental hits") are masked; optional logQ correction
                     (Yi et al., RecSys 2019: logit - log q(item))
    bce              binary cross-entropy, one random negative per position (SASRec paper)
    infonce          softmax over cosine similarities / temperature (L2-normalised vectors), over
                     the catalogue or over sampled negatives (HSTU: 128 negatives, T = 0.05)
    cosine_contrastive  SimpleX's CCL over K shared negatives, no softmax: 1 - cos(h, target)
                     plus w times the mean hinge max(0, cos(h, negative) - margin)

Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): every loss
but bce takes an optional ``prior`` (n_items + 1,), added to each item's logit in training only,
e.g. tau * log(1 + training count). The softmax then explains an item's popularity with the fixed
prior, so the learned scores (what the model ranks with) need not carry it and rare items rank
higher.

``sequence_loss`` dispatches by name for model configs (``loss = "ce" | "sampled" | "bce" |
"infonce"``). ``ccl_loss`` draws the shared negatives of CCL, which pair models name ``loss =
"ccl"``; it has knobs of its own (margin, negative weight), so it is not among ``LOSSES``, the
names sequence models accept. Negatives are drawn from the global torch RNG, so
``torch.manual_seed`` (the trainer's seed) makes them reproducible.

Example:
    >>> h, items = torch.randn(4, 8), torch.randn(11, 8)
    >>> t = torch.tensor([1, 5, 10, 3])
    >>> bool(cross_entropy(h, t, items) > 0)
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genrec.config import ConfigError

__all__ = ["LOSSES", "cross_entropy", "sampled_logits", "sampled_softmax", "bce", "infonce",
           "cosine_contrastive", "uniform_negatives", "in_batch_negatives", "sequence_loss",
           "ccl_loss", "check_ccl"]

LOSSES = ("ce", "sampled", "bce", "infonce")


def cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                  temperature: float = 1.0, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Mean softmax cross-entropy over items 1..n_items (PAD excluded)."""
    logits = hidden @ items[1:].T / temperature  # (N, n_items): column j is item j + 1
    if prior is not None:
        logits = logits + prior[1:]
    return F.cross_entropy(logits, targets - 1)


def sampled_logits(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                   negatives: torch.Tensor, log_q: torch.Tensor | None = None,
                   temperature: float = 1.0, prior: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1 + K) logits: column 0 the target, then the K shared ``negatives`` (K,).

    Accidental hits (a negative equal to the row's target) are set to -inf so the target is never
    its own negative. ``log_q`` (n_items + 1,): log sampling probability per item; when given,
    every logit (target included) is corrected by -log q, which makes the sampled softmax an
    unbiased estimate of the full one under non-uniform (e.g. in-batch) sampling. ``prior``
    (n_items + 1,): added to every logit (logit adjustment, see the module docstring).
    """
    pos = (hidden * items[targets]).sum(-1, keepdim=True)  # (N, 1)
    neg = hidden @ items[negatives].T                      # (N, K)
    logits = torch.cat([pos, neg], dim=1) / temperature
    for offset, sign in ((log_q, -1), (prior, 1)):
        if offset is not None:
            logits = logits + sign * torch.cat([offset[targets][:, None],
                                                offset[negatives][None, :].expand_as(neg)], 1)
    hit = negatives[None, :] == targets[:, None]  # (N, K)
    return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(hit, -math.inf)], dim=1)


def sampled_softmax(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                    negatives: torch.Tensor, log_q: torch.Tensor | None = None,
                    temperature: float = 1.0, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``sampled_logits`` with the target in column 0."""
    logits = sampled_logits(hidden, targets, items, negatives, log_q, temperature, prior)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def bce(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
        negatives: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(pos) - log(1 - sigmoid(neg)) with one negative (N,) per position.

    The SASRec paper samples the negative outside the user's sequence; uniform negatives hit a
    sequence item with probability ~len/n_items, which we accept (the loss stays cheap and pure).
    """
    pos = (hidden * items[targets]).sum(-1)    # (N,)
    neg = (hidden * items[negatives]).sum(-1)  # (N,)
    return (F.softplus(-pos) + F.softplus(neg)).mean()


def infonce(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
            temperature: float = 0.05, negatives: torch.Tensor | None = None,
            log_q: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over cosine similarity / temperature: whole catalogue, or ``negatives`` (K,)."""
    hidden, items = F.normalize(hidden, dim=-1), F.normalize(items, dim=-1)
    if negatives is None:
        return cross_entropy(hidden, targets, items, temperature, prior)
    return sampled_softmax(hidden, targets, items, negatives, log_q, temperature, prior)


def cosine_contrastive(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                       negatives: torch.Tensor, margin: float = 0.9,
                       neg_weight: float = 150.0) -> torch.Tensor:
    """SimpleX's cosine contrastive loss (Mao et al., CIKM 2021), mean over the N rows of

        (1 - cos(h, target)) + neg_weight / K * sum_k max(0, cos(h, negatives[k]) - margin)

    with K shared ``negatives`` (K,). Only negatives more similar than ``margin`` are pushed
    away; ``neg_weight`` balances the two parts whatever K is. A negative equal to the row's
    target ("accidental hit") contributes 0 and still counts in K. Only the rows used are
    normalised (a pair model's ``items`` is the whole catalogue).
    """
    h = F.normalize(hidden, dim=-1)                                   # (N, D)
    pos = (h * F.normalize(items[targets], dim=-1)).sum(-1)           # (N,)
    neg = h @ F.normalize(items[negatives], dim=-1).T                 # (N, K)
    hinge = (neg - margin).clamp(min=0.0)
    hinge = hinge.masked_fill(negatives[None, :] == targets[:, None], 0.0)
    return ((1.0 - pos) + neg_weight * hinge.mean(dim=1)).mean()


def uniform_negatives(n_items: int, k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(k,) item ids drawn uniformly (with replacement) from 1..n_items."""
    return torch.randint(1, n_items + 1, (k,), device=device)


def in_batch_negatives(targets: torch.Tensor, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's own targets as negatives, and log q = log(count / N) per item (n_items + 1,).

    In-batch sampling draws items in proportion to their frequency, which over-penalises popular
    items; the returned ``log_q`` is the batch estimate of that probability for the correction.
    """
    counts = torch.bincount(targets, minlength=n_items + 1).float()
    return targets, torch.log(counts / len(targets))  # -inf for absent items, never looked up


def sequence_loss(name: str, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                  n_negatives: int = 128, temperature: float = 1.0, negatives: str = "uniform",
                  logq: bool = False, prior: torch.Tensor | None = None) -> torch.Tensor:
    """The loss a model config names. ``negatives``: "uniform" (``n_negatives`` shared draws) or
    "in_batch" (the batch's targets); ``logq`` turns the logQ correction on for either; ``prior``
    (n_items + 1,) the logit adjustment (not for bce).

    "infonce" with ``n_negatives == 0`` and uniform negatives uses the whole catalogue.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    n_items = items.shape[0] - 1
    if name == "ce":
        return cross_entropy(hidden, targets, items, temperature, prior)
    if prior is not None and name == "bce":
        raise ValueError("logit adjustment (a prior) needs a softmax loss: ce, sampled or infonce, "
                         "not bce")
    if name == "bce":
        return bce(hidden, targets, items, uniform_negatives(n_items, len(targets), hidden.device))
    if negatives == "in_batch":
        neg, log_q = in_batch_negatives(targets, n_items)
    elif negatives == "uniform":
        if name == "infonce" and n_negatives == 0:
            return infonce(hidden, targets, items, temperature, prior=prior)
        if n_negatives < 1:
            raise ValueError(f"loss {name!r} needs n_negatives >= 1, got {n_negatives}")
        neg = uniform_negatives(n_items, n_negatives, hidden.device)
        log_q = torch.full((n_items + 1,), math.log(n_negatives / n_items), device=hidden.device)
    else:
        raise ValueError(f"unknown negatives {negatives!r}; choose 'uniform' or 'in_batch'")
    log_q = log_q if logq else None
    if name == "infonce":
        return infonce(hidden, targets, items, temperature, neg, log_q, prior)
    return sampled_softmax(hidden, targets, items, neg, log_q, temperature, prior)


def ccl_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, n_negatives: int,
             margin: float = 0.9, neg_weight: float = 150.0) -> torch.Tensor:
    """``cosine_contrastive`` against ``n_negatives`` uniform items shared by the batch.

    The authors' code draws K negatives per row; sharing them keeps a step at one (N, D) x (D, K)
    product. Each row's expected loss is the same (its negatives are still K uniform draws); the
    rows of a batch just see the same ones.
    """
    if n_negatives < 1:
        raise ValueError(f"loss 'ccl' needs n_negatives >= 1, got {n_negatives}")
    neg = uniform_negatives(items.shape[0] - 1, n_negatives, hidden.device)
    return cosine_contrastive(hidden, targets, items, neg, margin, neg_weight)


def check_ccl(model: str, n_negatives: int, margin: float, neg_weight: float) -> None:
    """ConfigError unless a model config's CCL settings make sense (called by its validate)."""
    if n_negatives < 1 or not -1.0 <= margin < 1.0 or neg_weight <= 0:
        raise ConfigError(f"{model}: loss 'ccl' needs n_negatives >= 1, -1 <= margin < 1 (a "
                          f"cosine) and neg_weight > 0, got {n_negatives}, {margin}, {neg_weight}")
