"""Colourisation (D = RGB -> ITU-R BT.601 luminance) on a tiny seeded prior: CPU, seconds."""

from __future__ import annotations

import torch

from mystyle_pl.tasks.colorize import BT601, Colorize, luminance
from mystyle_pl.tasks.consistency import consistency_psnr

from .conftest import A_STAR, FAST, R, _render


def test_luminance_is_bt601_in_every_channel():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    y = luminance(x)
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert BT601 == (0.299, 0.587, 0.114)
    assert y.shape == x.shape and all(torch.allclose(y[:, c], expected) for c in range(3))
    assert torch.allclose(luminance(y), y)  # D is a projection: gray stays gray


def test_colorize_keeps_the_input_luminance_and_takes_colour_from_the_prior(prior):
    truth, _ = _render(prior, A_STAR)
    gray = luminance(truth)
    result = Colorize(plus=False, **{**FAST, "steps": 60, "lr": 0.03}).run(prior, gray)
    assert result.images.shape == result.raw.shape == (1, 3, R, R)
    assert torch.allclose(luminance(result.images), gray, atol=1e-5)  # data-consistent: the input's luminance
    assert float(result.consistency[0]) > 60 and float(result.consistency[0]) > float(result.raw_consistency[0])
    assert torch.allclose(result.raw_consistency, consistency_psnr(result.raw, gray, luminance))
    # the colours come from the person's space: closer to the truth than the gray input
    assert (result.images - truth).square().mean() < (gray - truth).square().mean()
    # a colour input is reduced to its luminance first: the same result as from the gray one
    again = Colorize(plus=False, **{**FAST, "steps": 60, "lr": 0.03}).run(prior, truth)
    assert torch.allclose(again.images, result.images, atol=1e-5)
    raw = Colorize(keep_luminance=False, **FAST).run(prior, gray)
    assert torch.equal(raw.images, raw.raw)
    assert prior.colorize(gray, **FAST).images.shape == (1, 3, R, R)  # the Python shortcut
