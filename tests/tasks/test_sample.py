"""Sampling new photos of the person from the anchors' hull."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.tasks.sample import Sample

from .conftest import R


def test_sample_in_the_hull(prior):
    result = Sample().bind(prior)(5, seed=0)
    assert result.images.shape == (5, 3, R, R) and result.ws.shape == (5, prior.generator.num_ws, 32)
    assert prior.space(beta=0.0).contains(result.ws[:, 0], tol=1e-4).all()
    assert torch.allclose(Sample().bind(prior)(5, seed=0).images, result.images)
    with pytest.raises(ValueError, match="n .*>= 1"):
        Sample().bind(prior)(0)
