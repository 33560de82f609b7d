"""Helpers shared by the tests: tiny seeded generators, the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mystyle_pl.generators import StyleGAN2Generator

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MYSTYLE_SHARED_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("MYSTYLE_SHARED_DATA")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def make_tiny_stylegan2(resolution: int = 32, seed: int = 0, **overrides) -> StyleGAN2Generator:
    """A small, seeded StyleGAN2 with non-zero noise strengths and biases (so every path matters)."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=32, w_dim=32, img_resolution=resolution, channel_base=16 * resolution, channel_max=32)
    kwargs.update(overrides)
    return activate_every_path(StyleGAN2Generator(**kwargs))


def activate_every_path(generator):
    """Give noise strengths, biases and ``w_avg`` random values (they start at zero), in eval mode."""
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                param.normal_(0, 0.1)
        generator.mapping.w_avg.normal_()
    return generator.eval()
