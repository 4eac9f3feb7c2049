"""MMoE: several tasks share experts, each task mixes them with its own softmax gate.

Paper: Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts" (KDD 2018). E expert networks read the same input; task t's gate is
softmax(W_t x) over the experts, its tower reads the gated mixture and gives task t's logit.
``structure = "shared_bottom"`` is the paper's baseline: one bottom network shared by every task,
one tower per task. A single-task model is ``n_tasks = 1``. The input x = [dense features, sparse
embeddings, candidate embedding, mean of the history's item embeddings]. NOTE deviations: none
in the multi-gate part; the paper's synthetic-correlation study is not reproduced here.

Example:
    >>> model = MMoE(MMoEConfig(n_items=100, n_dense=3, n_tasks=2, n_experts=4))
    >>> model(batch).shape, model.gates(batch).shape     # (B, 2), (B, 2, 4)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from genrec.data.batches import FeatureBatch
from genrec.models._rankers import masked_mean, mlp, multitask_bce, RankerInputs

__all__ = ["MMoEConfig", "MMoE", "TaskHeads", "check_heads", "STRUCTURES"]

STRUCTURES = ("mmoe", "shared_bottom")


@dataclass
class MMoEConfig(RankerInputs):
    structure: str = "mmoe"   # mmoe (experts + one gate per task) | shared_bottom (one bottom)
    n_experts: int = 4        # E: experts (mmoe)
    expert_hidden: list[int] = field(default_factory=lambda: [64])  # each expert's / the bottom's
    tower_hidden: list[int] = field(default_factory=lambda: [32])   # each task tower's widths
    dropout: float = 0.0      # after every hidden layer

    def validate(self) -> None:
        self.check_inputs("mmoe", self.dropout)
        check_heads("mmoe", self.structure, self.n_experts, self.expert_hidden, self.tower_hidden)


def check_heads(model: str, structure: str, n_experts: int, expert_hidden: list[int],
                tower_hidden: list[int]) -> None:
    """The config checks of ``TaskHeads`` (``model`` names it in the error)."""
    if structure not in STRUCTURES:
        raise ValueError(f"{model}: structure {structure!r} is not one of {', '.join(STRUCTURES)}")
    if n_experts < 1 or not expert_hidden or min(expert_hidden + tower_hidden) < 1:
        raise ValueError(f"{model}: need n_experts >= 1, at least one expert_hidden width and "
                         f"widths >= 1, got {n_experts}, {expert_hidden}, {tower_hidden}")


class TaskHeads(nn.Module):
    """(B, W) shared input -> (B, T) logits: MMoE's gated experts or a shared bottom, then one
    tower per task."""

    def __init__(self, width: int, n_tasks: int, structure: str, n_experts: int,
                 expert_hidden: list[int], tower_hidden: list[int], dropout: float) -> None:
        super().__init__()
        n_bottoms = n_experts if structure == "mmoe" else 1
        self.experts = nn.ModuleList(mlp([width, *expert_hidden], nn.ReLU, dropout)
                                     for _ in range(n_bottoms))
        self.gate = nn.Linear(width, n_tasks * n_experts) if structure == "mmoe" else None
        self.n_tasks = n_tasks
        self.towers = nn.ModuleList(
            nn.Sequential(mlp([expert_hidden[-1], *tower_hidden], nn.ReLU, dropout),
                          nn.Linear(([expert_hidden[-1]] + tower_hidden)[-1], 1))
            for _ in range(n_tasks))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, E) each task's softmax weights over the experts (rows sum to 1)."""
        if self.gate is None:
            raise ValueError("a shared-bottom model has no gates; use structure='mmoe'")
        B = x.shape[0]
        return torch.softmax(self.gate(x).view(B, self.n_tasks, -1), -1)  # (B, T*E) -> (B, T, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([expert(x) for expert in self.experts], 1)  # (B, E, H)
        if self.gate is None:  # shared bottom: every task reads the one bottom
            mixed = outs.expand(-1, self.n_tasks, -1)                  # (B, T, H)
        else:
            mixed = self.gates(x) @ outs                               # (B, T, E) @ (B, E, H)
        return torch.cat([tower(mixed[:, t]) for t, tower in enumerate(self.towers)], -1)


class MMoE(nn.Module):
    kind = "features"  # fed FeatureBatch rows of candidate lists (genrec.runs.kinds.features)

    def __init__(self, config: MMoEConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.embed = c.embeddings()
        self.heads = TaskHeads(self.embed.width + c.dim, c.n_tasks, c.structure, c.n_experts,
                               c.expert_hidden, c.tower_hidden, c.dropout)

    def inputs(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, W) = [dense, sparse, target, mean history]: what experts and gates read."""
        dense, sparse, target, history, real = self.embed(batch)
        return torch.cat([dense, sparse, target, masked_mean(history, real)], -1)

    def gates(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T, E) each task's weights over the experts."""
        return self.heads.gates(self.inputs(batch))

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T) logits."""
        return self.heads(self.inputs(batch))

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        return multitask_bce(self(batch), batch.labels, self.config.task_weights)
