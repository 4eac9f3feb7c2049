"""The composed ranker: DIN for the sequence, DCN-V2 for feature crosses, MMoE heads for tasks.

The three pieces of the industrial ranking stage, each from its own paper and model file here:
DIN's target attention (Zhou et al., KDD 2018; ``din.TargetAttention``) turns the behaviour
sequence into an interest vector for the candidate; a DCN-V2 cross network (Wang et al., WWW
2021; ``dcnv2.CrossNetwork``) crosses it with the dense features, sparse embeddings and the
candidate embedding; MMoE (Ma et al., KDD 2018; ``mmoe.TaskHeads``) gives one logit per task from
gated experts over the crossed vector (or a shared bottom). NOTE: this composition is ours, not a
paper's; the cross network is stacked (no parallel deep branch: the experts are the deep part).

Example:
    >>> model = Ranker(RankerConfig(n_items=100, n_dense=3, sparse_cards=[5], n_tasks=2))
    >>> model(batch).shape            # batch: a FeatureBatch of B rows  # doctest: +SKIP
    torch.Size([B, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from genrec.data.batches import FeatureBatch
from genrec.models._rankers import multitask_bce, RankerInputs
from genrec.models.dcnv2 import CrossNetwork
from genrec.models.din import ACTIVATIONS, ATTENTION_NORMS, TargetAttention
from genrec.models.mmoe import TaskHeads, check_heads

__all__ = ["RankerConfig", "Ranker"]


@dataclass
class RankerConfig(RankerInputs):
    # DIN: target attention over the history
    attention_hidden: int = 36  # hidden width of the activation unit
    attention_norm: str = "none"  # none (DIN: raw weights) | softmax over the real items
    activation: str = "dice"  # dice | prelu, in the activation unit
    # DCN-V2: crosses of [dense, sparse, candidate, interest]
    n_cross: int = 2          # cross layers
    low_rank: int = 0         # r > 0: W = U V^T of rank r; 0 = full-rank W
    # MMoE: the task heads
    structure: str = "mmoe"   # mmoe (experts + one gate per task) | shared_bottom
    n_experts: int = 4        # E: experts (mmoe)
    expert_hidden: list[int] = field(default_factory=lambda: [64])  # each expert's / the bottom's
    tower_hidden: list[int] = field(default_factory=lambda: [32])   # each task tower's widths
    dropout: float = 0.0      # after every hidden layer of experts and towers

    def validate(self) -> None:
        self.check_inputs("ranker", self.dropout)
        if self.activation not in ACTIVATIONS or self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"ranker: activation must be one of {', '.join(ACTIVATIONS)} and "
                             f"attention_norm one of {', '.join(ATTENTION_NORMS)}, got "
                             f"{self.activation!r}, {self.attention_norm!r}")
        if self.attention_hidden < 1 or self.n_cross < 1 or self.low_rank < 0:
            raise ValueError(f"ranker: need attention_hidden, n_cross >= 1 and low_rank >= 0, got "
                             f"{self.attention_hidden}, {self.n_cross}, {self.low_rank}")
        check_heads("ranker", self.structure, self.n_experts, self.expert_hidden,
                    self.tower_hidden)


class Ranker(nn.Module):
    kind = "features"  # fed FeatureBatch rows of candidate lists (genrec.runs.kinds.features)

    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.embed = c.embeddings()
        self.attention = TargetAttention(c.dim, c.attention_hidden, c.activation, c.attention_norm)
        width = self.embed.width + c.dim  # [dense, sparse, target] + interest
        self.cross = CrossNetwork(width, c.n_cross, c.low_rank)
        self.heads = TaskHeads(width, c.n_tasks, c.structure, c.n_experts, c.expert_hidden,
                               c.tower_hidden, c.dropout)

    def inputs(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, W): the crossed [dense, sparse, target, interest] that the task heads read."""
        dense, sparse, target, history, real = self.embed(batch)
        interest = self.attention(history, target, real)  # (B, D)
        return self.cross(torch.cat([dense, sparse, target, interest], -1))

    def gates(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T, E) each task's weights over the experts (structure 'mmoe')."""
        return self.heads.gates(self.inputs(batch))

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T) logits."""
        return self.heads(self.inputs(batch))

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        return multitask_bce(self(batch), batch.labels, self.config.task_weights)
