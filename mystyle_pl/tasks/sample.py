"""Sampling: new photos of the person, from random points of the convex hull ``P_0`` of the anchors
(:meth:`PersonalSpace.sample`: the official ``sample_from_P0``, or a Dirichlet option)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..space import PersonalSpace
from .base import Batch, Output, Task


@dataclass
class SampleResult:
    images: torch.Tensor  # [n, 3, R, R] in [-1, 1]
    ws: torch.Tensor  # [n, num_ws, w_dim] (the same w in every layer)
    coefficients: torch.Tensor  # [n, N] convex weights over the anchors (sum 1, >= 0)
    seed: int | None  # the seed used (None: unseeded)


class Sample(Task):
    """``n`` new photos of the person from the prior's space (no projection involved).

    ``Sample(k=3).run(prior, 8, seed=0)`` -> :class:`SampleResult`; raises ``ValueError`` for
    ``n < 1`` or ``batch_size < 1``."""

    name = "sample"
    takes_inputs = False

    def __init__(
        self,
        k: int | None = 3,  # anchors mixed per sample (official 3); None = all anchors
        method: str = "official",  # "official" (uniform weights, normalised) or "dirichlet"
        alpha: float = 1.0,  # Dirichlet concentration (method "dirichlet")
        batch_size: int = 8,  # images synthesised at once
        noise_mode: str = "const",  # generator noise: "const", "random" or "none"
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.k, self.method, self.alpha = k, method, alpha
        self.batch_size, self.noise_mode = batch_size, noise_mode

    def _bind(self, prior, lpips, **kwargs) -> None:
        self.space = PersonalSpace.from_prior(prior, beta=0.0)

    def __call__(self, n: int, seed: int | None = None) -> SampleResult:
        self._require_bound()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (number of samples) must be an integer >= 1, got {n!r}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w, a = self.space.sample(
            n, k=self.k, method=self.method, alpha=self.alpha, generator=gen, return_coefficients=True
        )
        ws = self.generator.broadcast_w(w)
        with torch.no_grad():
            images = torch.cat(
                [
                    self.generator.synthesis(ws[i : i + self.batch_size], noise_mode=self.noise_mode)
                    for i in range(0, n, self.batch_size)
                ]
            )
        return SampleResult(images=images, ws=ws.contiguous(), coefficients=a, seed=seed)

    def outputs(self, batch: Batch) -> list[Output]:
        out = []
        for seed, index in zip(batch.seeds, batch.indices):  # one draw per output with its own seed:
            result = self(1, seed=seed)  # independent of batching and ranks
            out.append(
                Output(
                    images={"crop": result.images[0]},
                    latents={"ws": result.ws[0], "coefficients": result.coefficients[0]},
                    record={"seed": seed, "index": index},
                )
            )
        return out
