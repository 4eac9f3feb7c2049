"""DCN-V2: explicit feature crosses of bounded degree, beside or before a deep network.

Paper: Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems" (WWW 2021). Each cross layer computes x_{l+1} = x0 * (W x_l + b) + x_l,
so layer l holds feature products up to degree l + 1; W is full-rank, or U V^T of rank r
(``low_rank = r``, the paper's cheaper variant). ``structure = "stacked"`` feeds the cross network
into the deep one, ``"parallel"`` concatenates both outputs; a linear head gives one logit per
task. x0 = [dense features, sparse embeddings, candidate embedding, mean of the history's item
embeddings]. NOTE deviations: the mixture of low-rank experts (DCN-Mix) is not built; the history
enters as a mean embedding (target attention over it is DIN's and the composed ranker's job).

Example:
    >>> model = DCNV2(DCNV2Config(n_items=100, n_dense=3, sparse_cards=[5], structure="parallel"))
    >>> model(batch).shape            # batch: a FeatureBatch of B rows  # doctest: +SKIP
    torch.Size([B, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from genrec.data.batches import FeatureBatch
from genrec.models._rankers import masked_mean, mlp, multitask_bce, RankerInputs

__all__ = ["DCNV2Config", "DCNV2", "CrossNetwork", "STRUCTURES"]

STRUCTURES = ("stacked", "parallel")


@dataclass
class DCNV2Config(RankerInputs):
    n_cross: int = 3          # cross layers (paper: 1-4; layer l crosses up to degree l + 1)
    low_rank: int = 0         # r > 0: W = U V^T of rank r; 0 = full-rank W
    structure: str = "stacked"  # stacked (cross -> deep) | parallel (cross beside deep)
    hidden: list[int] = field(default_factory=lambda: [128, 64])  # the deep network's widths
    dropout: float = 0.0      # after every hidden layer of the deep network

    def validate(self) -> None:
        self.check_inputs("dcnv2", self.dropout)
        if self.structure not in STRUCTURES:
            raise ValueError(f"dcnv2: structure {self.structure!r} is not one of "
                             f"{', '.join(STRUCTURES)}")
        if self.n_cross < 1 or self.low_rank < 0 or any(h < 1 for h in self.hidden):
            raise ValueError(f"dcnv2: need n_cross >= 1, low_rank >= 0 (0 = full rank) and hidden "
                             f"widths >= 1, got {self.n_cross}, {self.low_rank}, {self.hidden}")


class CrossLayer(nn.Module):
    def __init__(self, width: int, low_rank: int) -> None:
        super().__init__()
        self.w = (nn.Linear(width, width) if not low_rank else  # W x + b, or U (V^T x) + b
                  nn.Sequential(nn.Linear(width, low_rank, bias=False), nn.Linear(low_rank, width)))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.w(x) + x  # (B, W)


class CrossNetwork(nn.Module):
    """(B, W) x0 -> (B, W) after ``n_layers`` cross layers."""

    def __init__(self, width: int, n_layers: int, low_rank: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossLayer(width, low_rank) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class DCNV2(nn.Module):
    kind = "features"  # fed FeatureBatch rows of candidate lists (genrec.runs.kinds.features)

    def __init__(self, config: DCNV2Config) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.embed = c.embeddings()
        width = self.embed.width + c.dim  # [dense, sparse, target] + mean history
        self.cross = CrossNetwork(width, c.n_cross, c.low_rank)
        self.deep = mlp([width, *c.hidden], nn.ReLU, c.dropout)
        deep_out = ([width] + c.hidden)[-1]
        self.head = nn.Linear(deep_out + (width if c.structure == "parallel" else 0), c.n_tasks)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        """(B, T) logits."""
        dense, sparse, target, history, real = self.embed(batch)
        x0 = torch.cat([dense, sparse, target, masked_mean(history, real)], -1)  # (B, W)
        if self.config.structure == "stacked":
            return self.head(self.deep(self.cross(x0)))
        return self.head(torch.cat([self.cross(x0), self.deep(x0)], -1))

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        return multitask_bce(self(batch), batch.labels, self.config.task_weights)
