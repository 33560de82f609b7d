"""Super-resolution (D = area down-sampling), blind mode, output resolution."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.metrics.image import psnr
from mystyle_pl.tasks.superres import Downsample, SuperResolve

from .conftest import A_STAR, FAST, R, _render


def test_superres_matches_the_low_resolution_input(prior):
    hi, _ = _render(prior, A_STAR)
    lo = Downsample(4)(hi)
    assert lo.shape == (1, 3, 4, 4)
    task = SuperResolve(preset="official", lpips_weight=0.0, plus=False, steps=80, lr=0.03).bind(prior)
    assert task.operator(4, 4)(hi).shape == lo.shape  # the operator's output has the input's size
    result = task(lo)
    assert result.factor == 4 and result.images.shape == (1, 3, R, R) and result.degraded.shape == lo.shape
    start = (Downsample(4)(_render(prior, torch.full((1, 4), 0.25))[0]) - lo).square().mean()
    err = (result.degraded - lo).square().mean()
    assert err < 0.05 * start and err < 1e-3


def test_superres_blind_and_errors(prior):
    lo = torch.zeros(1, 3, 8, 8)
    result = SuperResolve(blind=True, **FAST).bind(prior)(lo)
    assert result.images.shape == (1, 3, R, R) and result.factor == 2
    task = SuperResolve(**FAST).bind(prior)
    with pytest.raises(ValueError, match="larger than the output resolution 16"):
        task(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="must divide the output resolution"):
        task(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="factor 4 on a 8x8 input gives 32 px, which must divide the generator's resolution 16"):
        task(lo, factor=4)
    # a factor sets the output size: a 4 px face x2 gives an 8 px result (below the generator's 16)
    small = SuperResolve(**FAST).bind(prior)(torch.zeros(1, 3, 4, 4), factor=2)
    assert small.images.shape == (1, 3, 8, 8) and small.factor == 2 and small.degraded.shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"factor 1 .*outside 2\.\.32"):
        task(torch.zeros(1, 3, R, R))


def test_superres_output_resolution(prior):
    hi, _ = _render(prior, A_STAR)
    half = Downsample(8)(hi)  # the result is asked at 8 px: a 2 px input is x4
    lo = Downsample(2)(hi)
    task = SuperResolve(output_resolution=8, preset="official", lpips_weight=0.0, plus=False, steps=60, lr=0.03).bind(prior)
    result = task(lo)
    assert result.factor == 4 and result.images.shape == (1, 3, 8, 8) and result.degraded.shape == lo.shape
    assert (result.degraded - lo).square().mean() < 1e-3
    assert (result.images - half).square().mean() < (torch.zeros_like(half) - half).square().mean()
    with pytest.raises(ValueError, match="output_resolution=12 must divide"):
        SuperResolve(output_resolution=12, **FAST).bind(prior)


def test_blind_superres_is_corrected_once_through_its_own_operator(prior):
    """Blind inputs (a real photo: blur and noise) are back-projected for one iteration through the blind
    operator (the guessed blur, area down-sampling, no noise): the result explains the input through that
    operator better than the raw projection does, without the deconvolution that iterating through the blur
    would bring (the input's noise amplified into a checkerboard). The reported consistency is measured
    through area down-sampling; ``blind_back_projection=0`` leaves the raw projection."""
    hi, _ = _render(prior, A_STAR)
    lo = Downsample(4)(hi) + 0.05 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    task = SuperResolve(blind=True, **FAST).bind(prior)
    once = task(lo)
    blurred = task.operator(4, 4, noise=False)
    assert float(psnr(blurred(once.images), lo)[0]) > float(psnr(blurred(once.raw), lo)[0]) + 1.0  # a real correction
    assert float(once.consistency[0]) == pytest.approx(float(psnr(Downsample(4)(once.images), lo)[0]), abs=1e-3)
    iterated = SuperResolve(blind=True, blind_back_projection=30, **FAST).bind(prior)(lo)
    assert torch.equal(iterated.raw, once.raw)  # the same projection; only the correction differs

    def roughness(x):  # mean absolute difference between neighbouring pixels
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean())

    # 30 iterations through a blur of 2 px deconvolve the noisy 4 px input: the result's pixel-to-pixel
    # variation grows by half (1.91 against 1.26, measured; seeded, so deterministic); one iteration stays
    # near the raw projection's (1.26 against 1.10). 1.3x separates the two on both sides.
    assert roughness(iterated.images) > 1.3 * roughness(once.images)
    assert roughness(once.images) < 1.3 * roughness(once.raw)
    raw_only = SuperResolve(blind=True, blind_back_projection=0, **FAST).bind(prior)(lo)
    assert torch.equal(raw_only.images, raw_only.raw)


def test_a_low_resolution_observation_is_pulled_with_the_low_resolution_pull(prior):
    """``pull_low_res`` replaces ``pull`` for observations of at most ``low_res_px`` px, in the projection
    itself: with a strong low-resolution pull the result's codes end nearer the person's space than with
    none, and the result says which pull it used. Blind inputs take it at any size. A caller's ``pull`` applies
    to every observation."""
    quick = dict(preset="quick", steps=6, lpips_weight=0.0, pivotal_steps=0, loss_resolution=0)
    lo = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1  # far from the space
    free = SuperResolve(pull=(0.0, 0.0, 0.0), pull_low_res=None, **quick).bind(prior)
    held = SuperResolve(pull=(0.0, 0.0, 0.0), pull_low_res=(100.0, 100.0, 100.0), **quick).bind(prior)
    assert free.pull_for(4) == (0.0, 0.0, 0.0) and held.pull_for(4) == (100.0, 100.0, 100.0)
    assert held.pull_for(32) == (0.0, 0.0, 0.0)  # above low_res_px (16): the ordinary pull
    r_free, r_held = free(lo), held(lo)
    assert r_held.pull == (100.0, 100.0, 100.0) and r_free.pull == (0.0, 0.0, 0.0)

    def distance(task, ws):
        target, _ = task.projector.nearest(ws)
        return float((ws - target).square().sum())

    # 6 Adam steps of lr 0.05 move a code by at most ~0.3 per coordinate; the pull of 100 has to show in
    # the distance from the space by more than a factor 2 (it is ~0 against the free code's)
    assert distance(held, r_held.ws) < 0.5 * distance(free, r_free.ws)
    assert held.projector.settings.pull == (0.0, 0.0, 0.0)  # restored after the call
    # the preset: a low-resolution pull of its own, replaced by one the caller gives
    assert SuperResolve(**quick).bind(prior).pull_for(4) == (10.0, 10.0, 0.03)
    assert SuperResolve(**quick).bind(prior).pull_for(32) == (0.03, 0.03, 0.0)
    assert SuperResolve(pull=(1, 1, 0), **quick).bind(prior).pull_for(4) == (1.0, 1.0, 0.0)
    # blind inputs (real photos: unknown blur and noise) take the low-resolution pull at any size
    blind = SuperResolve(blind=True, **quick).bind(prior)
    assert blind.pull_for(32) == (10.0, 10.0, 0.03) and blind.pull_for(4) == (10.0, 10.0, 0.03)
    assert blind(lo[..., :4, :4], factor=4).pull == (10.0, 10.0, 0.03)
    assert SuperResolve(blind=True, pull=(1, 1, 0), **quick).bind(prior).pull_for(32) == (1.0, 1.0, 0.0)
