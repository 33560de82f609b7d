"""Tasks (invert, inpaint, superres, edit, sample) on a tiny seeded prior: CPU, seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.io import to_uint8
from mystyle_pl.metrics.image import psnr
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tasks.edit import Edit, load_direction, principal_directions
from mystyle_pl.tasks.inpaint import Inpaint, feathered_hole, mask_from_boxes, mask_from_png
from mystyle_pl.tasks.invert import Invert
from mystyle_pl.tasks.sample import Sample
from mystyle_pl.tasks.superres import Downsample, SuperResolve

from .helpers import make_tiny_stylegan2

R = 16
FAST = {"lpips_weight": 0.0, "steps": 5, "lr": 0.02}


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


A_STAR = torch.tensor([[0.4, 0.3, 0.2, 0.1]])


def _spread(prior):
    return (prior.w - prior.w.mean(0)).norm(dim=1).mean()


# ------------------------------------------------------------------ invert


def test_invert_reconstructs_a_point_in_the_hull(prior):
    y, w_star = _render(prior, A_STAR)
    result = Invert(prior, lpips_weight=0.0, plus=False, steps=150, lr=0.03)(y)
    assert result.images.shape == (1, 3, R, R) and result.ws.shape == (1, prior.generator.num_ws, 32)
    assert result.steps_used == 150 and result.trace[-1] < 0.1 * result.trace[0]
    assert (result.ws[0, 0] - w_star[0]).norm() < 0.15 * _spread(prior)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 16, 16\]"):
        Invert(prior, **FAST)(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"images must be a tensor \[B, 3, H, W\]"):
        Invert(prior, **FAST)(torch.zeros(3, 16, 16))


# ------------------------------------------------------------------ inpaint


def test_inpaint_keeps_known_pixels_exactly(prior):
    y, _ = _render(prior, A_STAR)
    y = torch.cat([y, y.flip(-1)])
    mask = mask_from_boxes([(4, 4, 12, 10), "0,12,3,16"], R)
    assert mask.shape == (1, 1, R, R) and mask[0, 0, 5, 5] == 0 and mask[0, 0, 0, 0] == 1
    result = Inpaint(prior, feather=3, **FAST)(y, mask)
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
    task = Inpaint(prior, **FAST)
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


# ------------------------------------------------------------------ super-resolution


def test_superres_matches_the_low_resolution_input(prior):
    hi, _ = _render(prior, A_STAR)
    lo = Downsample(4)(hi)
    assert lo.shape == (1, 3, 4, 4)
    task = SuperResolve(prior, lpips_weight=0.0, plus=False, steps=80, lr=0.03)
    assert task.operator(4, 4)(hi).shape == lo.shape  # the operator's output has the input's size
    result = task(lo)
    assert result.factor == 4 and result.images.shape == (1, 3, R, R) and result.degraded.shape == lo.shape
    start = (Downsample(4)(_render(prior, torch.full((1, 4), 0.25))[0]) - lo).square().mean()
    err = (result.degraded - lo).square().mean()
    assert err < 0.05 * start and err < 1e-3


def test_superres_blind_and_errors(prior):
    lo = torch.zeros(1, 3, 8, 8)
    result = SuperResolve(prior, blind=True, **FAST)(lo)
    assert result.images.shape == (1, 3, R, R) and result.factor == 2
    task = SuperResolve(prior, **FAST)
    with pytest.raises(ValueError, match="larger than the output resolution 16"):
        task(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="must divide the output resolution"):
        task(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="factor 4 on a 8x8 input gives 32 px, which must divide the generator's resolution 16"):
        task(lo, factor=4)
    # a factor sets the output size: a 4 px face x2 gives an 8 px result (below the generator's 16)
    small = SuperResolve(prior, **FAST)(torch.zeros(1, 3, 4, 4), factor=2)
    assert small.images.shape == (1, 3, 8, 8) and small.factor == 2 and small.degraded.shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"factor 1 .*outside 2\.\.32"):
        task(torch.zeros(1, 3, R, R))



def test_blind_superres_is_made_consistent_through_area_downsampling(prior):
    """Blind inputs are back-projected through area down-sampling, not through the guessed blur:
    the result, area-down-sampled, reproduces the input (and the reported consistency says so);
    back-projecting through the blur would deconvolve the input instead (its area-down-sampled
    result then misses the input by the blur's effect)."""
    hi, _ = _render(prior, A_STAR)
    lo = Downsample(4)(hi) + 0.05 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    result = SuperResolve(prior, blind=True, **FAST)(lo)
    consistency = float(psnr(Downsample(4)(result.images), lo)[0])
    # 30 Irani-Peleg iterations on a 4x4 input converge to float precision; 40 dB is far below that
    # and far above what the blurred operator leaves (it matches blur(result), not the result).
    assert consistency > 40.0
    assert float(result.consistency[0]) == pytest.approx(consistency, abs=0.5)


# ------------------------------------------------------------------ edit


def test_edit_strengths_and_policies(prior):
    y, _ = _render(prior, A_STAR)
    space = prior.space(beta=0.03)
    direction = prior.w[0] - prior.w[1]  # in the span
    task = Edit(prior, policy="continue", **FAST)
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
        Edit(prior, **FAST).direction(torch.zeros(1, 16))
    dirs, std = principal_directions(prior.generator, k=3, num_samples=200, seed=0, return_std=True)
    assert dirs.shape == (3, 32) and torch.allclose(dirs.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (std[:-1] >= std[1:]).all()
    y, _ = _render(prior, A_STAR)
    result = Edit(prior, principal_samples=200, **FAST)(y, tmp_path / "d.pt", [1.0])
    assert result.images.shape == (1, 1, 3, R, R)
    assert Edit(prior, principal_samples=200, **FAST)(y, 0, [1.0]).direction.shape == (32,)


# ------------------------------------------------------------------ sample


def test_sample_in_the_hull(prior):
    result = Sample(prior)(5, seed=0)
    assert result.images.shape == (5, 3, R, R) and result.ws.shape == (5, prior.generator.num_ws, 32)
    assert prior.space(beta=0.0).contains(result.ws[:, 0], tol=1e-4).all()
    assert torch.allclose(Sample(prior)(5, seed=0).images, result.images)
    with pytest.raises(ValueError, match="n .*>= 1"):
        Sample(prior)(0)


# ------------------------------------------------------------------ Python API


def test_python_api_accepts_pil_paths_and_tensors(tmp_path, prior):
    y, _ = _render(prior, A_STAR)
    arr = to_uint8(y)[0]
    pil = Image.fromarray(arr)
    pil.save(tmp_path / "face.png")
    from_pil = prior.invert(pil, **FAST)
    from_path = prior.invert(tmp_path / "face.png", **FAST)
    assert torch.allclose(from_pil.ws, from_path.ws)
    assert prior.invert(y[0], **FAST).images.shape == (1, 3, R, R)
    hole = np.zeros((R, R), np.uint8)
    hole[4:10, 4:10] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    out = prior.inpaint(str(tmp_path / "face.png"), tmp_path / "mask.png", **FAST)
    assert out.blended.shape == (1, 3, R, R)
    assert prior.inpaint(pil, [(2, 2, 6, 6)], **FAST).mask[0, 0, 3, 3] == 0
    small = Image.fromarray(to_uint8(Downsample(8)(y))[0])
    assert prior.super_resolve(small, factor=2, **FAST).images.shape == (1, 3, R, R)
    edited = prior.edit(pil, prior.w[0] - prior.w[1], [0.0, 1.0], **FAST)
    assert edited.images.shape == (1, 2, 3, R, R)
    assert prior.sample(3, seed=1).images.shape == (3, 3, R, R)
    with pytest.raises(ValueError, match="img: expected a PIL image"):
        prior.invert(42)


def test_inpaint_and_superres_with_lpips_untrained():
    from mystyle_pl.losses import LPIPS

    generator = make_tiny_stylegan2(resolution=32, seed=1)
    with torch.no_grad():
        w = generator.mapping(torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    prior32 = PersonalPrior(generator, Anchors(w=w, names=["a.png", "b.png", "c.png"]))
    y, _ = _render(prior32, torch.tensor([[0.5, 0.3, 0.2]]))
    lpips = LPIPS("alex", pretrained=False)
    mask = mask_from_boxes([(8, 8, 24, 24)], 32)
    result = Inpaint(prior32, lpips=lpips, steps=2)(y, mask)
    known = mask.expand_as(y).bool()
    assert torch.isfinite(result.final_loss).all() and torch.equal(result.blended[known], y[known])
    sr = SuperResolve(prior32, lpips=lpips, steps=2)(Downsample(8)(y))  # 8 px: LPIPS on an up-sampled copy
    assert sr.images.shape == (1, 3, 32, 32) and sr.degraded.shape == (1, 3, 8, 8)
    assert torch.isfinite(sr.final_loss).all()


# ------------------------------------------------------------------ output resolution, generic prior


def test_superres_output_resolution(prior):
    hi, _ = _render(prior, A_STAR)
    half = Downsample(8)(hi)  # the result is asked at 8 px: a 2 px input is x4
    lo = Downsample(2)(hi)
    task = SuperResolve(prior, output_resolution=8, lpips_weight=0.0, plus=False, steps=60, lr=0.03)
    result = task(lo)
    assert result.factor == 4 and result.images.shape == (1, 3, 8, 8) and result.degraded.shape == lo.shape
    assert (result.degraded - lo).square().mean() < 1e-3
    assert (result.images - half).square().mean() < (torch.zeros_like(half) - half).square().mean()
    with pytest.raises(ValueError, match="output_resolution=12 must divide"):
        SuperResolve(prior, output_resolution=12, **FAST)


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


# ------------------------------------------------------------------ optimiser options


def test_delta_prox_reaches_a_lower_objective_and_zeroes_unneeded_offsets(prior):
    y, _ = _render(prior, A_STAR)
    common = dict(lpips_weight=0.0, steps=40, lr=0.02, plus=True)
    official = Invert(prior, **common)(y)
    prox = Invert(prior, delta_prox=True, **common)(y)
    assert prox.final_loss.item() < official.final_loss.item()
    # y lies in the hull: every penalised layer can share alpha, so the proximal step keeps their offsets at 0
    coarse = prior.space().coarse_layers()
    raw = prox.projection.raw[0]
    offsets = raw[:coarse] - raw[:coarse].mean(dim=0)
    assert offsets.abs().max() < 1e-6


def test_lr_factor_ramp():
    from mystyle_pl.tasks.base import lr_factor

    assert lr_factor(0, 100, 0.25) == 1.0 and lr_factor(75, 100, 0.25) == 1.0
    assert abs(lr_factor(88, 100, 0.25) - 0.5 * (1 + np.cos(np.pi * 13 / 25))) < 1e-9
    assert lr_factor(50, 100, 0.0) == 1.0


def test_early_stopping_counts_steps_without_improvement():
    from mystyle_pl.tasks.base import EarlyStopping

    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert [stop.stop(v) for v in (1.0, 0.5, 0.45, 0.44, 0.3)] == [False, False, False, True, False]
    assert not any(EarlyStopping(None, 0.0).stop(1.0) for _ in range(10))
