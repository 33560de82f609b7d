"""The contract every generator of the project honours.

A generator maps latents to images through two submodules:

* ``mapping(z [B, z_dim], truncation_psi=1.0) -> w [B, w_dim]``
* ``synthesis(ws [B, num_ws, w_dim], noise_mode="const") -> img [B, 3, R, R]`` in ``[-1, 1]``

W space (one ``w`` for every layer) is ``broadcast_w(w)``; W+ gives each layer its own ``w``.
A generator also knows how to describe itself (``family`` and ``config``) so that its
weights can travel with their architecture (see ``formats/native.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> str:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    return noise_mode


def check_ws(ws: torch.Tensor, num_ws: int, w_dim: int) -> torch.Tensor:
    """Raise a clear error unless ``ws`` is ``[B, num_ws, w_dim]``."""
    if not isinstance(ws, torch.Tensor):
        raise TypeError(f"ws must be a torch.Tensor [B, num_ws={num_ws}, w_dim={w_dim}], got {type(ws).__name__}")
    if ws.ndim != 3 or ws.shape[1] != num_ws or ws.shape[2] != w_dim:
        hint = " (for a single w per image use generator.broadcast_w(w))" if ws.ndim == 2 else ""
        raise ValueError(
            f"ws must have shape [B, num_ws={num_ws}, w_dim={w_dim}], got {tuple(ws.shape)}{hint}"
        )
    return ws


def check_z(z: torch.Tensor, z_dim: int) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != z_dim:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must have shape [B, z_dim={z_dim}], got {shape}")
    return z


class Generator(nn.Module):
    """Base class: subclasses define ``mapping`` and ``synthesis`` submodules and ``config``.

    Attributes every generator has: ``family`` (a short name such as ``"stylegan2"``),
    ``z_dim``, ``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels`` and the
    ``w_avg`` buffer (the mean of mapped ``w``; the truncation centre).
    """

    family: ClassVar[str] = ""
    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int

    mapping: nn.Module
    synthesis: nn.Module

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this architecture (JSON-serialisable)."""
        raise NotImplementedError

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    @property
    def ws_resolutions(self) -> list[int]:
        """The resolution (pixels) of the layer each ``ws`` slot modulates: ``num_ws`` ints.

        Default: StyleGAN2's layout (NVlabs/stylegan2-ada-pytorch ``training/networks.py``,
        SynthesisNetwork): slot 0 is the 4 px conv, then two slots per block of resolution
        ``2^k`` (its toRGB shares the next block's first slot), the last slot the final toRGB.
        Generators with another layout override it. Used to group layers into coarse (4-8 px),
        middle (16-32 px) and fine (64 px and up) styles (Karras et al., StyleGAN, CVPR 2019, 3.1).
        """
        res = int(self.img_resolution)
        return [min(res, 2 ** (2 + (i + 1) // 2)) for i in range(self.num_ws)]

    def broadcast_w(self, w: torch.Tensor) -> torch.Tensor:
        """``w [B, w_dim]`` -> ``ws [B, num_ws, w_dim]`` (the same w for every layer)."""
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"w must have shape [B, w_dim={self.w_dim}], got {tuple(w.shape)}")
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        """Random faces: ``z [B, z_dim]`` -> images ``[B, C, R, R]``."""
        w = self.mapping(z, truncation_psi=truncation_psi)
        return self.synthesis(self.broadcast_w(w), noise_mode=noise_mode)

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
        """The mean of ``mapping(z)`` over seeded random ``z`` (used when a checkpoint lacks ``w_avg``)."""
        device = self.w_avg.device
        generator = torch.Generator(device="cpu").manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=device)
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = torch.randn(n, self.z_dim, generator=generator).to(device)
            total += self.mapping(z).double().sum(dim=0)
            done += n
        return (total / num_samples).float()

    def describe(self) -> dict[str, Any]:
        """A short summary for ``mystyle-pl info``."""
        return {
            "family": self.family,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "parameters": sum(p.numel() for p in self.parameters()),
            "mapping_parameters": sum(p.numel() for p in self.mapping.parameters()),
            "synthesis_parameters": sum(p.numel() for p in self.synthesis.parameters()),
            "config": self.config,
        }
