"""The generic-prior baseline: the same tasks in free W+ with the untuned generator."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.tasks.edit import Edit
from mystyle_pl.tasks.invert import Invert
from mystyle_pl.tasks.superres import Downsample, SuperResolve

from .conftest import A_STAR, R, _render


def test_generic_prior_projects_in_free_w_plus(prior):
    from mystyle_pl.tasks.generic import generic_task

    y, _ = _render(prior, A_STAR)
    g = prior.generator
    result = generic_task(Invert, g, lpips_weight=0.0, steps=60, w_lr=0.05)(y)
    assert result.ws.shape == (1, g.num_ws, g.w_dim) and result.coefficients.shape == (1, 0)
    assert result.trace[-1] < 0.5 * result.trace[0]
    assert not torch.allclose(result.ws[0, 0], result.ws[0, -1])  # layers move independently (W+)
    lo = Downsample(4)(y)
    sr = generic_task(SuperResolve, g, lpips_weight=0.0, steps=60)(lo)
    with torch.no_grad():
        start = Downsample(4)(g.synthesis(g.broadcast_w(g.w_avg[None]), noise_mode="const"))
    assert sr.images.shape == (1, 3, R, R)
    assert (sr.degraded - lo).square().mean() < 0.5 * (start - lo).square().mean()
    with pytest.raises(ValueError, match="needs a personal space"):
        generic_task(Edit, g)
