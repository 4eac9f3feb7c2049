"""DIN: the user's interest in one candidate, by target attention over the behaviour sequence.

Paper: Zhou et al., "Deep Interest Network for Click-Through Rate Prediction" (KDD 2018). An
activation unit scores each past item h against the candidate t from [h, t, h - t, h * t]; the
interest is the weighted sum of the history, NOT normalised by a softmax (the paper keeps the
intensity of interest), PAD positions masked out; it is concatenated with the candidate, the
dense features and the sparse embeddings, then an MLP with Dice (or PReLU) gives one logit per
task. NOTE deviations: ``attention_norm = "softmax"`` normalises the weights over the real items
(an option); the paper's mini-batch aware regularisation is left to AdamW's weight decay; Dice
normalises with batch statistics in training and running ones in evaluation, as the paper
describes (without BatchNorm's affine parameters).

Example:
    >>> model = DIN(DINConfig(n_items=100, n_dense=3, sparse_cards=[5, 7], max_len=20))
    >>> model(batch).shape            # batch: a FeatureBatch of B rows  # doctest: +SKIP
    torch.Size([B, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import FeatureBatch
from genrec.models._rankers import mlp, multitask_bce, RankerInputs
__all__ = ["DINConfig", "DIN", "Dice", "TargetAttention", "ACTIVATIONS", "ATTENTION_NORMS"]

ACTIVATIONS = ("dice", "prelu")
ATTENTION_NORMS = ("none", "softmax")


@dataclass
class DINConfig(RankerInputs):
    attention_hidden: int = 36  # hidden width of the activation unit (paper: 36)
    attention_norm: str = "none"  # none (paper: raw weights) | softmax over the real items
    hidden: list[int] = field(default_factory=lambda: [200, 80])  # the MLP (paper: 200-80)
    activation: str = "dice"  # dice | prelu, in the activation unit and the MLP
    dropout: float = 0.0      # after every hidden layer of the MLP

    def validate(self) -> None:
        self.check_inputs("din", self.dropout)
        if self.activation not in ACTIVATIONS or self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"din: activation must be one of {', '.join(ACTIVATIONS)} and "
                             f"attention_norm one of {', '.join(ATTENTION_NORMS)}, got "
                             f"{self.activation!r}, {self.attention_norm!r}")
        if self.attention_hidden < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"din: attention_hidden and hidden widths must be >= 1, got "
                             f"{self.attention_hidden}, {self.hidden}")


class Dice(nn.Module):
    """Dice (DIN paper, eq. 9): p(s) * s + (1 - p(s)) * alpha * s with p(s) = sigmoid of the
    batch-normalised s: a PReLU whose switch point follows the data. Reads (..., W)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))  # running statistics, for evaluation
        self.register_buffer("var", torch.ones(width))
        self.alpha = nn.Parameter(torch.zeros(width))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        flat = s.reshape(-1, s.shape[-1])  # (..., W) -> (N, W)
        # a one-row training batch has no variance: it uses the running statistics
        z = F.batch_norm(flat, self.mean, self.var, training=self.training and len(flat) > 1,
                         momentum=0.1, eps=1e-8)
        p = torch.sigmoid(z).reshape(s.shape)
        return p * s + (1 - p) * self.alpha * s


class PReLU(nn.Module):
    """max(0, s) + alpha * min(0, s) per channel of the LAST dimension (torch's ``nn.PReLU``
    reads channels from dimension 1, which is L in the activation unit's (B, L, W))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((width,), 0.25))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.where(s > 0, s, self.alpha * s)


def activation(name: str) -> type[nn.Module]:
    """The activation class of ``name`` (``ACTIVATIONS``); each takes its width."""
    return Dice if name == "dice" else PReLU


class TargetAttention(nn.Module):
    """The activation unit: (B, L, D) history, (B, D) target -> (B, D) interest vector."""

    def __init__(self, dim: int, hidden: int, act: str, norm: str) -> None:
        super().__init__()
        self.unit = nn.Sequential(nn.Linear(4 * dim, hidden), activation(act)(hidden),
                                  nn.Linear(hidden, 1))
        self.softmax = norm == "softmax"

    def weights(self, history: torch.Tensor, target: torch.Tensor, real: torch.Tensor
                ) -> torch.Tensor:
        """(B, L) attention weights, exactly 0 at PAD positions.

        The unit reads only the N real positions, packed: PAD is never scored, and Dice's batch
        statistics in training do not depend on how much padding a batch holds."""
        h = history[real]                                                   # (N, D)
        t = target[:, None].expand_as(history)[real]                        # (N, D)
        w = history.new_zeros(real.shape)                                   # (B, L)
        w[real] = self.unit(torch.cat([h, t, h - t, h * t], -1)).squeeze(-1).to(w.dtype)
        if self.softmax:  # an all-PAD row gets all-zero weights, not NaN
            w = torch.softmax(w.masked_fill(~real, -torch.inf), -1).nan_to_num(0.0)
        return w

    def forward(self, history: torch.Tensor, target: torch.Tensor, real: torch.Tensor
                ) -> torch.Tensor:
        w = self.weights(history, target, real)
        return (w[..., None] * history).sum(1)  # (B, L, 1) * (B, L, D) -> (B, D)


class DIN(nn.Module):
    kind = "features"  # fed FeatureBatch rows of candidate lists (genrec.runs.kinds.features)

    def __init__(self, config: DINConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.embed = c.embeddings()
        self.attention = TargetAttention(c.dim, c.attention_hidden, c.activation, c.attention_norm)
        width = self.embed.width + c.dim  # [dense, sparse, target] + interest
        self.mlp = mlp([width, *c.hidden], activation(c.activation), c.dropout)
        self.head = nn.Linear(([width] + c.hidden)[-1], c.n_tasks)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T) logits."""
        dense, sparse, target, history, real = self.embed(batch)
        interest = self.attention(history, target, real)  # (B, D)
        return self.head(self.mlp(torch.cat([dense, sparse, target, interest], -1)))

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        return multitask_bce(self(batch), batch.labels, self.config.task_weights)
