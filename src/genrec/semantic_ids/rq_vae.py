"""RQ-VAE: an MLP autoencoder whose latent is quantised by C residual codebooks of K codes.

Paper: Rajput et al., "Recommender Systems with Generative Retrieval" (TIGER, NeurIPS 2023),
after Zeghidour et al.'s residual VQ. The encoder maps an item vector to a latent z; level 1
picks the nearest of K codes to z, level 2 the nearest code to the residual, and so on; the
decoder rebuilds the item vector from the sum of the picked codes. Loss: reconstruction MSE +
per level ||sg(r) - e||^2 + beta ||r - sg(e)||^2 (codebook and commitment terms), with the
straight-through estimator carrying gradients past the rounding.
NOTE against codebook collapse (few codes doing all the work): each level's codebook starts as
k-means centroids of that level's residuals under the initial encoder, and after every epoch
codes that no item picks are reset to randomly drawn residuals of that level (level by level,
so a reset at level l is seen by level l + 1; repeated while a reset empties another code).
The last epoch ends with a reset, so every code of every level is used by the returned codes
whenever a level has at least K distinct residuals.

Example (Amazon Beauty, MiniLM title + category vectors, 50 epochs):
    >>> result = train_rq_vae(vectors, RQVAEConfig(epochs=50))                 # doctest: +SKIP
    >>> result.codes.shape, round(result.relative_error, 2), result.dead_codes  # doctest: +SKIP
    ((12101, 3), 0.56, [0, 0, 0])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RQVAEConfig", "RQVAE", "RQVAEResult", "train_rq_vae"]


@dataclass
class RQVAEConfig:
    levels: int = 3                 # C: codebooks
    codebook_size: int = 256        # K: codes per codebook
    hidden: tuple[int, ...] = (512, 256, 128)  # encoder widths (the decoder mirrors them)
    latent: int = 32                # width of the quantised latent
    beta: float = 0.25              # commitment weight
    epochs: int = 200               # passes over the items
    batch_size: int = 1024          # items per step
    lr: float = 1e-3                # Adam learning rate
    seed: int = 0                   # init, batch order and resets
    reset_dead: bool = True         # reset unused codes after every epoch (against collapse)

    def validate(self) -> None:
        if min(self.levels, self.latent, self.epochs, self.batch_size) < 1 or self.codebook_size < 2:
            raise ValueError(f"rq_vae: need levels, latent, epochs, batch_size >= 1 and "
                             f"codebook_size >= 2, got {self}")


_RESET_ROUNDS = 10


def _nearest(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """(N,) index of the nearest code; exact distances (the matmul form rounds, and a code
    reset onto a data point must be that point's nearest)."""
    return torch.cdist(x, book, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])  # no activation on the output


class RQVAE(nn.Module):
    def __init__(self, dim: int, c: RQVAEConfig) -> None:
        super().__init__()
        c.validate()
        self.config = c
        self.encoder = _mlp([dim, *c.hidden, c.latent])
        self.decoder = _mlp([c.latent, *reversed(c.hidden), dim])
        self.codebooks = nn.Parameter(torch.randn(c.levels, c.codebook_size, c.latent) * 0.1)  # (C, K, E)

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (N, E) -> (codes (N, C), quantised sum (N, E), codebook + commitment loss)."""
        residual, total, codes = z, torch.zeros_like(z), []
        loss = z.new_zeros(())
        for book in self.codebooks:  # (K, E)
            idx = _nearest(residual.detach(), book.detach())  # (N,)
            e = book[idx]
            loss = loss + F.mse_loss(e, residual.detach()) + self.config.beta * F.mse_loss(
                residual, e.detach())
            total = total + e
            residual = residual - e.detach()
            codes.append(idx)
        return torch.stack(codes, 1), total, loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, D) -> (reconstruction (N, D), codes (N, C), quantisation loss)."""
        z = self.encoder(x)
        codes, q, qloss = self.quantise(z)
        q = z + (q - z).detach()  # straight-through: the decoder's gradient flows into z
        return self.decoder(q), codes, qloss

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """Each level's codebook = k-means centroids of its residuals under the current encoder."""
        from genrec.semantic_ids.rq_kmeans import rq_kmeans

        fit = rq_kmeans(self.encoder(x).numpy(), self.config.levels, self.config.codebook_size,
                        n_iter=10, seed=seed)
        self.codebooks.copy_(torch.from_numpy(np.stack(fit.codebooks)))

    @torch.no_grad()
    def reset_dead_codes(self, x: torch.Tensor, gen: torch.Generator) -> list[int]:
        """Move unused codes onto residuals drawn from the data; returns how many resets per
        level (a code reset twice counts twice)."""
        residual, reset = self.encoder(x), []
        for book in self.codebooks:
            n_reset = 0
            # a code moved onto a residual owns it, but may take all the points of a live code,
            # which is then dead: repeat until every code is used (a few rounds at most)
            for _ in range(_RESET_ROUNDS):
                idx = _nearest(residual, book)
                dead = torch.ones(len(book), dtype=torch.bool)
                dead[idx] = False
                if not dead.any():
                    break
                pick = torch.randperm(len(residual), generator=gen)[:int(dead.sum())]
                book[dead.nonzero().squeeze(1)[:len(pick)]] = residual[pick]
                n_reset += len(pick)
            idx = _nearest(residual, book)  # the next level sees the reset
            residual = residual - book[idx]
            reset.append(n_reset)
        return reset


@dataclass
class RQVAEResult:
    codes: np.ndarray               # (n, C) int64
    relative_error: float           # sum ||x - decoder(q)||^2 / sum ||x||^2 after training
    initial_error: float            # the same with the initial (k-means-initialised) model
    dead_codes: list[int]           # codes per level that no item uses in ``codes``
    history: list[dict] = field(default_factory=list)  # per epoch: loss, recon, resets
    model: RQVAE | None = None


def _relative_error(model: RQVAE, x: torch.Tensor) -> float:
    with torch.no_grad():
        recon, _, _ = model(x)
    return float(((recon - x) ** 2).sum() / (x ** 2).sum().clamp(min=1e-12))


def train_rq_vae(vectors: np.ndarray, config: RQVAEConfig = RQVAEConfig()) -> RQVAEResult:
    """Train an RQ-VAE on ``vectors`` (n, D) and return every item's codes."""
    config.validate()
    x = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
    if x.ndim != 2 or not torch.isfinite(x).all():
        raise ValueError(f"vectors must be a finite (n, D) array, got shape {tuple(x.shape)}")
    if len(x) < config.codebook_size:
        raise ValueError(f"{len(x)} vectors cannot fill a codebook of {config.codebook_size} "
                         f"codes; lower codebook_size")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = RQVAE(x.shape[1], config)
    model.init_codebooks(x, config.seed)
    initial = _relative_error(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = []
    for epoch in range(config.epochs):
        model.train()
        total, n_batches = 0.0, 0
        for rows in torch.randperm(len(x), generator=gen).split(config.batch_size):
            recon, _, qloss = model(x[rows])
            loss = F.mse_loss(recon, x[rows]) + qloss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n_batches = total + loss.item(), n_batches + 1
        model.eval()
        resets = model.reset_dead_codes(x, gen) if config.reset_dead else []
        history.append({"epoch": epoch, "loss": total / n_batches, "resets": resets})
    with torch.no_grad():
        _, codes, _ = model(x)
    codes = codes.numpy().astype(np.int64)
    dead = [int(config.codebook_size - len(np.unique(codes[:, d]))) for d in range(config.levels)]
    return RQVAEResult(codes, _relative_error(model, x), initial, dead, history, model)
