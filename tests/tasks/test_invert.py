"""Inversion (D = identity) on a tiny seeded prior: CPU, seconds."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.tasks.invert import Invert

from .conftest import A_STAR, FAST, R, _render, _spread


def test_invert_reconstructs_a_point_in_the_hull(prior):
    y, w_star = _render(prior, A_STAR)
    result = Invert(preset="official", lpips_weight=0.0, plus=False, steps=150, lr=0.03).bind(prior)(y)
    assert result.images.shape == (1, 3, R, R) and result.ws.shape == (1, prior.generator.num_ws, 32)
    assert result.steps_used == 150 and result.trace[-1] < 0.1 * result.trace[0]
    assert (result.ws[0, 0] - w_star[0]).norm() < 0.15 * _spread(prior)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 16, 16\]"):
        Invert(**FAST).bind(prior)(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"images must be a tensor \[B, 3, H, W\]"):
        Invert(**FAST).bind(prior)(torch.zeros(3, 16, 16))
