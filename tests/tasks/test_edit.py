"""Semantic editing along W directions inside the person's space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mystyle_pl.tasks.edit import Edit, load_direction, principal_directions

from .conftest import A_STAR, FAST, R, _render


def test_edit_strengths_and_policies(prior):
    y, _ = _render(prior, A_STAR)
    space = prior.space(beta=0.03)
    direction = prior.w[0] - prior.w[1]  # in the span
    task = Edit(policy="continue", **FAST).bind(prior)
    result = task(y, direction[None], [0.0, 0.5, 3.0])
    assert result.images.shape == (1, 3, 3, R, R) and result.ws.shape[:2] == (1, 3)
    assert torch.allclose(result.direction, space.project_direction(direction), atol=1e-5)
    assert torch.allclose(result.images[:, 0], result.projection.images, atol=1e-5)  # strength 0 = the projection
    assert torch.allclose(result.ws[:, 0], result.projection.ws)
    assert result.coefficients.shape == (1, 3, prior.generator.num_ws, 4)
    assert torch.allclose(result.coefficients @ prior.w, result.ws, atol=1e-3)
    assert not result.inside[0, 2]  # 3 x (w0 - w1) leaves P_beta
    projected = task(y, direction, [0.0, 3.0], projection=result.projection, policy="project")
    assert space.contains(projected.ws[0, 1], tol=1e-3).all()
    stopped = task(y, direction, [3.0], projection=result.projection, policy="stop")
    assert 0 < stopped.applied[0, 0] < 3.0  # clamped at the boundary of P_beta
    assert space.contains(stopped.ws[0, 0], tol=1e-3).all()


def test_direction_files_and_principal_directions(tmp_path, prior):
    d = torch.randn(1, 32)
    torch.save(d, tmp_path / "d.pt")
    np.save(tmp_path / "d.npy", d.numpy())
    assert torch.allclose(load_direction(tmp_path / "d.pt", 32), d[0])
    assert torch.allclose(load_direction(tmp_path / "d.npy", 32), d[0])
    np.save(tmp_path / "bad.npy", np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match=r"bad.npy.*w_dim=32.*wrong size"):
        load_direction(tmp_path / "bad.npy", 32)
    with pytest.raises(ValueError, match=r"direction has shape \(1, 16\).*w_dim=32"):
        Edit(**FAST).bind(prior).direction_of(torch.zeros(1, 16))
    dirs, std = principal_directions(prior.generator, k=3, num_samples=200, seed=0, return_std=True)
    assert dirs.shape == (3, 32) and torch.allclose(dirs.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (std[:-1] >= std[1:]).all()
    y, _ = _render(prior, A_STAR)
    result = Edit(principal_samples=200, **FAST).bind(prior)(y, tmp_path / "d.pt", [1.0])
    assert result.images.shape == (1, 1, 3, R, R)
    assert Edit(principal_samples=200, **FAST).bind(prior)(y, 0, [1.0]).direction.shape == (32,)


def test_edits_of_a_wplus_projection_keep_its_residual(prior):
    """A W+ projection (the quick preset) lies outside P_beta; the edge policies act on its nearest point
    there and carry the rest along, so strength 0 is the projection itself (before: the album's nearest face)."""
    y, _ = _render(prior, A_STAR)
    y = (y + torch.linspace(-0.3, 0.3, R).view(1, 1, 1, -1)).clamp(-1, 1)  # off the generator's manifold
    task = Edit(preset="quick", steps=8, lpips_weight=0.0, pivotal_steps=0, policy="project").bind(prior)
    space = prior.space(beta=0.03)
    direction = prior.w[0] - prior.w[1]
    result = task(y, direction, [0.0, 3.0])
    pivot = result.projection.ws
    assert not space.contains(pivot[0], tol=1e-3).all()  # the case under test: a pivot outside the space
    assert torch.allclose(result.ws[:, 0], pivot, atol=1e-4)
    assert torch.allclose(result.images[:, 0], result.projection.images, atol=1e-4)
    inside, _ = space.nearest(pivot)
    moved, _ = space.nearest(inside + 3.0 * task._layer_mask() * result.direction)
    assert torch.allclose(result.ws[:, 1] - pivot, moved - inside, atol=1e-4)  # the motion stays in P_beta
