"""Data consistency: how well a result explains its observation, and a result made to explain it.

A projection ``x = G(w)`` is the prior's answer; the observation ``y = D(x_true)`` pins down part
of the truth exactly (the low frequencies for super-resolution, the known pixels for inpainting).
:func:`back_project` keeps the projection's detail and takes from ``y`` what ``y`` determines:
iterative back-projection (Irani & Peleg, "Improving resolution by image registration", CVGIP
1991), ``x <- x + U(y - D(x))`` with ``U`` bicubic up-sampling, which for an area ``D`` converges
to a result with ``D(x) = y`` (the range-null-space split of Wang et al., DDNM, ICLR 2023, with a
smooth rather than a blocky pseudo-inverse). :func:`consistency_psnr` measures ``D(x)`` against
``y``: the observation a result should reproduce.

Back-projection adds the observation's low frequencies to the projection's detail wherever the
projection put it. Where the projection does not explain the input (its head narrower or elsewhere,
another background), that detail is a second outline over the input's blur. :func:`agreement` maps
where the projection explains the input; ``back_project(..., detail_gate=tau)`` starts from the
projection there and from the input's bicubic up-sampling elsewhere (a confidence-weighted detail
transfer), and then corrects as before.

Images are float ``[B, 3, H, W]`` in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..metrics.image import psnr

BACK_PROJECTION_ITERATIONS = 30  # x8 area down-sampling: 30 iterations reach D(x) ~ y to > 50 dB (fidelity probes)
# Blind inputs (a real photo, its blur guessed): one iteration through the blind operator (blur 0.5 x factor, area).
# Four real pairs (docs/fidelity.md, Session 8), dlib / LPIPS-VGG / consistency through area: 30 area iterations
# 0.561 / 0.439 / 67 dB; 1 area iteration 0.539 / 0.422 / 40 dB; 1 through the blur 0.510 / 0.419 / 33 dB.
BLIND_BACK_PROJECTION_ITERATIONS = 1
# The residual (image units, [-1, 1] scale) at which the projection's detail weight falls to 1/e. Four albums'
# held-out photo (docs/fidelity.md, Session 14; dlib / LPIPS-VGG / PSNR, ungated -> 0.5, the evaluation's command):
# x8 0.347 / 0.372 / 24.0 -> 0.343 / 0.358 / 24.4, x16 0.421 / 0.404 / 20.0 -> 0.415 / 0.397 / 20.8, real
# 0.378 / 0.390 / 21.2 -> 0.380 / 0.388 / 22.1. Tighter gates (0.05-0.2) blur the face until dlib finds none on one album.
DETAIL_GATE = 0.5


def _binomial3(r: torch.Tensor) -> torch.Tensor:
    """``r [B, 1, h, w]`` smoothed by the 3x3 binomial kernel (1 2 1)^2 / 16, edges replicated."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=r.dtype, device=r.device)
    kernel = (k[:, None] * k[None, :] / 16).view(1, 1, 3, 3)
    return F.conv2d(F.pad(r, (1, 1, 1, 1), mode="replicate"), kernel)


def agreement(
    x: torch.Tensor,  # [B, 3, H, W] the projection's result in [-1, 1]
    y: torch.Tensor,  # [B, 3, h, w] the observation in [-1, 1]
    degrade: Callable[[torch.Tensor], torch.Tensor],  # D: [B, 3, H, W] -> [B, 3, h, w] (without noise)
    tau: float,  # the residual at which the weight falls to 1/e (image units, [-1, 1] scale), > 0
) -> torch.Tensor:
    """Where ``x`` explains ``y``: ``[B, 1, H, W]`` in ``(0, 1]``, ``exp(-(r / tau)^2)`` with ``r`` the
    channel mean of ``|y - D(x)|`` per observed pixel, smoothed by a 3x3 binomial filter (one pixel's
    noise does not switch the weight) and bilinearly up-sampled to ``x``'s size. 1 where ``D(x) = y``.

    Raises ``ValueError`` for ``tau <= 0`` or when ``D(x)`` and ``y`` differ in shape."""
    if not tau > 0:
        raise ValueError(f"detail_gate (tau) must be > 0, got {tau}")
    with torch.no_grad():
        residual = y - degrade(x)
        if residual.shape != y.shape:
            raise ValueError(f"D(x) has shape {tuple(residual.shape)}, y has {tuple(y.shape)}")
        r = _binomial3(residual.abs().mean(dim=1, keepdim=True))
        weight = torch.exp(-((r / float(tau)) ** 2))
        return F.interpolate(weight, size=x.shape[-2:], mode="bilinear", align_corners=False)


def back_project(
    x: torch.Tensor,  # [B, 3, H, W] the projection's result in [-1, 1]
    y: torch.Tensor,  # [B, 3, h, w] the observation in [-1, 1]
    degrade: Callable[[torch.Tensor], torch.Tensor],  # D: [B, 3, H, W] -> [B, 3, h, w] (without noise)
    iterations: int = BACK_PROJECTION_ITERATIONS,  # 0 = x unchanged
    step: float = 1.0,  # relaxation of each correction (1 = the plain Irani-Peleg update)
    detail_gate: float | None = None,  # tau of agreement(): start from a * x + (1 - a) * bicubic(y), keeping
    # the projection's detail only where it explains y; None = start from x (the plain back-projection)
) -> torch.Tensor:
    """``x`` corrected so that ``D(x)`` matches ``y``: ``[B, 3, H, W]`` (not clamped, like ``G(w)``:
    clamping to ``[-1, 1]`` happens where images are written).

    Raises ``ValueError`` when ``D(x)`` and ``y`` differ in shape, for negative ``iterations`` or a
    ``detail_gate`` that is not > 0.

    >>> x = torch.zeros(1, 3, 32, 32); y = torch.full((1, 3, 4, 4), 0.5)
    >>> down = lambda img: F.interpolate(img, size=(4, 4), mode="area")
    >>> round(float(down(back_project(x, y, down)).mean()), 4)
    0.5
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    with torch.no_grad():
        if detail_gate is not None and iterations > 0:
            a = agreement(x, y, degrade, detail_gate)
            x = a * x + (1 - a) * F.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False)
        for _ in range(iterations):
            residual = y - degrade(x)
            if residual.shape != y.shape:
                raise ValueError(f"D(x) has shape {tuple(residual.shape)}, y has {tuple(y.shape)}")
            x = x + step * F.interpolate(residual, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return x


def consistency_psnr(
    x: torch.Tensor,  # [B, 3, H, W] a result in [-1, 1]
    y: torch.Tensor,  # [B, 3, h, w] its observation in [-1, 1]
    degrade: Callable[[torch.Tensor], torch.Tensor] | None,  # D without noise; None = identity (inversion, editing)
    mask: torch.Tensor | None = None,  # [B or 1, 1, h, w] 1 = known pixel (inpainting); None = all
) -> torch.Tensor:
    """PSNR (dB) ``[B]`` of ``D(x)`` against ``y`` at the observation's size: does the result
    reproduce what was observed? (For inpainting pass the known-mask: the known region only.)"""
    with torch.no_grad():
        return psnr(x if degrade is None else degrade(x), y, mask)
