"""A tiny seeded prior shared by the task tests (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.prior import PersonalPrior

from ..helpers import make_tiny_stylegan2

R = 16
# the official projection (P+, the anchors' coefficients) at a tiny budget
FAST = {"preset": "official", "lpips_weight": 0.0, "steps": 5, "lr": 0.02}
A_STAR = torch.tensor([[0.4, 0.3, 0.2, 0.1]])


@pytest.fixture(scope="module")
def prior():
    generator = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    return PersonalPrior(generator, Anchors(w=w, names=[f"{i}.png" for i in range(4)]))


def _render(prior, a):
    w = a @ prior.w
    with torch.no_grad():
        return prior.generator.synthesis(prior.generator.broadcast_w(w), noise_mode="const"), w


def _spread(prior):
    return (prior.w - prior.w.mean(0)).norm(dim=1).mean()
