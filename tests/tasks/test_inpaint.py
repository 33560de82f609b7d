"""Inpainting (D = masking) and its masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tasks.inpaint import Inpaint, feathered_hole, mask_from_boxes, mask_from_png
from mystyle_pl.tasks.superres import Downsample, SuperResolve

from ..helpers import make_tiny_stylegan2
from .conftest import A_STAR, FAST, R, _render


def test_inpaint_keeps_known_pixels_exactly(prior):
    y, _ = _render(prior, A_STAR)
    y = torch.cat([y, y.flip(-1)])
    mask = mask_from_boxes([(4, 4, 12, 10), "0,12,3,16"], R)
    assert mask.shape == (1, 1, R, R) and mask[0, 0, 5, 5] == 0 and mask[0, 0, 0, 0] == 1
    result = Inpaint(feather=3, **FAST).bind(prior)(y, mask)
    assert result.blended.shape == y.shape and result.images.shape == y.shape
    known = mask.expand_as(y).bool()
    assert torch.equal(result.blended[known], y[known])  # outside the hole: the input, exactly
    hole = ~known
    assert (result.alpha.expand_as(y)[hole] > 0).all()  # inside: some of the projection everywhere
    deep = torch.zeros_like(known)
    deep[..., 7, 8] = True
    assert torch.allclose(result.blended[deep], result.images[deep])  # the hole's core is the projection


def test_feather_is_inside_the_hole():
    mask = mask_from_boxes([(2, 2, 14, 14)], 16)
    alpha = feathered_hole(mask, 4)
    assert (alpha[mask.bool()] == 0).all()
    assert alpha[0, 0, 2, 8] == pytest.approx(0.25) and alpha[0, 0, 8, 8] == 1
    assert torch.equal(feathered_hole(mask, 0), 1 - mask)


def test_mask_png_white_is_hole(tmp_path, prior):
    arr = np.zeros((R, R), np.uint8)
    arr[2:6, 3:9] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    mask = mask_from_png(tmp_path / "m.png", R)
    assert mask.shape == (1, 1, R, R) and mask.sum() == R * R - 24 and mask[0, 0, 3, 4] == 0
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png.*mask size mismatch"):
        mask_from_png(tmp_path / "small.png", R)
    assert mask_from_png(tmp_path / "small.png", R, resize=True).shape == (1, 1, R, R)


def test_inpaint_mask_errors(prior):
    y, _ = _render(prior, A_STAR)
    task = Inpaint(**FAST).bind(prior)
    with pytest.raises(ValueError, match="mask size mismatch"):
        task(y, torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="mask.*empty.*no hole"):
        task(y, torch.ones(1, 1, R, R))
    with pytest.raises(ValueError, match="mask.*full.*no known pixel"):
        task(y, torch.zeros(1, 1, R, R))
    with pytest.raises(ValueError, match=r"1 = known pixel, 0 = hole"):
        task(y, torch.ones(1, 3, R, R))
    with pytest.raises(ValueError, match="box"):
        mask_from_boxes([(0, 0, 20, 4)], R)


def test_inpaint_and_superres_with_lpips_untrained():
    from mystyle_pl.losses import LPIPS

    generator = make_tiny_stylegan2(resolution=32, seed=1)
    with torch.no_grad():
        w = generator.mapping(torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    prior32 = PersonalPrior(generator, Anchors(w=w, names=["a.png", "b.png", "c.png"]))
    y, _ = _render(prior32, torch.tensor([[0.5, 0.3, 0.2]]))
    lpips = LPIPS("alex", pretrained=False)
    mask = mask_from_boxes([(8, 8, 24, 24)], 32)
    result = Inpaint(preset="official", steps=2).bind(prior32, lpips=lpips)(y, mask)
    known = mask.expand_as(y).bool()
    assert torch.isfinite(result.final_loss).all() and torch.equal(result.blended[known], y[known])
    sr = SuperResolve(preset="official", steps=2).bind(prior32, lpips=lpips)(Downsample(8)(y))  # 8 px: LPIPS on an up-sampled copy
    assert sr.images.shape == (1, 3, 32, 32) and sr.degraded.shape == (1, 3, 8, 8)
    assert torch.isfinite(sr.final_loss).all()
