"""Pivotal tuning: after the projection, tune a copy of the generator so that ``G'(ws)`` reproduces
*this* photo (PTI: Roich, Mokady, Bermano & Cohen-Or, "Pivotal Tuning for Latent-based Editing of
Real Images", ACM TOG 2022, arXiv 2106.05744; official code danielroich/PTI).

The projection finds the codes ``ws`` (the *pivot*) whose render is closest to the observation
that the person's generator can paint; what no code reaches (the photo's exact light, hair strands,
background) stays missing, so a held-out inversion sits near 18-22 dB at 256 px. Pivotal tuning
then moves the generator's *weights*, per image, under the same loss as the projection (LPIPS +
``l2_weight`` x MSE of ``D(G'(ws))`` against the observation, with its mask and face weighting),
with the pivot held fixed. Edits (``ws + s * direction``) are rendered by the tuned copy, so they
keep the photo's details (PTI's purpose).

Official PTI values (``configs/hyperparameters.py``): Adam, lr 3e-4, 350 steps, LPIPS + 1 x L2.
Ours: lr 3e-3 with StyleGAN2's lr ramps (5% warm-up, cosine decay over the last 25%), because a
CPU budget is 50-200 steps, not 350: on album 00001's held-out photo (tuned prior, 60-step W+
pivot at 18.4 dB) 60 steps at 3e-4 reach 23.1 dB, at 1.5e-3 24.8 dB, and 100 steps at 3e-3 27.3
dB (``docs/fidelity.md``, "Pivotal tuning"). It is for observations that show the whole face
(inversion, editing): on a degraded observation (a 32 px input) the weights would learn to paint
the degradation's freedom, so the presets leave it off for restoration tasks.

Memory: one generator copy (and its Adam state: 3x its parameters) at a time while tuning, and one
tuned copy per image kept in the result (``ProjectionResult.generators``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..generators import Generator
from ..precision import render_step
from .steps import run_steps

# loss(synth [1, 3, R, R], y [1, 3, H, W], mask [1, 1, H, W] | None) -> [1]: the projection's per-image loss
PivotLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class PivotalResult:
    """What :func:`pivotal_tune` (and :func:`~.features.feature_tune`) return."""

    images: torch.Tensor  # [B, 3, R, R] G'_i(ws_i) in [-1, 1], each by its own generator
    generators: list[Generator]  # B per-image generators (frozen, eval mode)
    traces: list[list[float]]  # per image, its loss at each step's start
    seconds: float  # wall time of the whole batch


# (generator to start from, the image's pivot [1, num_ws, w_dim]) -> (its own generator, the parameters to optimise)
MakeGenerator = Callable[[Generator, torch.Tensor], tuple[Generator, list[torch.Tensor]]]


def tune_per_image(
    generators: list[Generator],  # per image (or one for all), the generator to start from (not modified)
    ws: torch.Tensor,  # [B, num_ws, w_dim] the pivots, held fixed
    y: torch.Tensor,  # [B, 3, H, W] the observations in [-1, 1]
    mask: torch.Tensor | None,  # [B or 1, 1, H, W], 1 = known pixel; None = all known
    loss: PivotLoss,
    settings: Any,  # the schedule fields of ProjectionSettings (ramps, noise_mode, progress)
    steps: int,
    lr: float,
    make: MakeGenerator,
    desc: str,
    precision: str = "32",  # the render inside the steps (mystyle_pl.precision)
) -> PivotalResult:
    """The loop :func:`pivotal_tune` and :func:`~.features.feature_tune` share: per image, ``make``
    its own generator and the parameters to optimise, then ``steps`` Adam steps at ``lr`` (with the
    projection's lr ramps) on ``loss`` of its render of the pivot. Raises ``ValueError`` when ``ws``
    and ``y`` disagree on the batch size or ``steps`` is below 1."""
    if steps < 1:
        raise ValueError(f"{desc} needs steps >= 1, got {steps}")
    if ws.ndim != 3 or ws.shape[0] != y.shape[0]:
        raise ValueError(f"ws must be [B={y.shape[0]}, num_ws, w_dim], got {tuple(ws.shape)}")
    schedule = replace(settings, steps=steps, patience=None)  # the whole budget: the loss keeps falling
    start, images, made, traces = time.perf_counter(), [], [], []
    for i in range(ws.shape[0]):
        w_i, y_i = ws[i : i + 1].detach(), y[i : i + 1]
        g, params = make(generators[i if len(generators) > 1 else 0], w_i)
        optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
        m_i = None if mask is None else mask[i : i + 1] if mask.shape[0] > 1 else mask

        def objective(g=g, w_i=w_i, y_i=y_i, m_i=m_i) -> tuple[torch.Tensor, torch.Tensor]:
            per_image = loss(render_step(g, w_i, settings.noise_mode, precision), y_i, m_i)
            return per_image, per_image.sum()

        label = desc if ws.shape[0] == 1 else f"{desc} {i + 1}/{ws.shape[0]}"
        trace, _ = run_steps(optimizer, [lr], schedule, objective, label)
        del optimizer  # its state (2x the parameters) is not needed any more
        for p in params:
            p.requires_grad_(False)
        g.eval()
        with torch.no_grad():
            images.append(g.synthesis(w_i, noise_mode=settings.noise_mode))
        made.append(g)
        traces.append(trace)
    return PivotalResult(torch.cat(images), made, traces, time.perf_counter() - start)


def _tuned_copy(base: Generator, _w: torch.Tensor) -> tuple[Generator, list[torch.Tensor]]:
    g = copy.deepcopy(base).requires_grad_(True)
    return g, [p for p in g.parameters() if p.is_floating_point()]


def pivotal_tune(
    generator: Generator,  # the generator to start from (not modified)
    ws: torch.Tensor,  # [B, num_ws, w_dim] the pivots (the projection's result), held fixed
    y: torch.Tensor,  # [B, 3, H, W] the observations in [-1, 1]
    mask: torch.Tensor | None,  # [B or 1, 1, H, W], 1 = known pixel; None = all known
    loss: PivotLoss,  # the projection's per-image loss (Projector.per_image_loss with its degradation)
    settings: Any,  # ProjectionSettings: pivotal_steps, pivotal_lr, lr ramps, noise_mode, progress
) -> PivotalResult:
    """Tune one copy of ``generator`` per image for ``settings.pivotal_steps`` Adam steps at
    ``settings.pivotal_lr`` (with the projection's lr ramps). Raises ``ValueError`` when ``ws`` and
    ``y`` disagree on the batch size or the number of steps is below 1."""
    # float32 whatever settings.precision: album 00001's held-out inversion, 50 steps under bfloat16 autocast
    # reached 24.94 dB / LPIPS-VGG 0.263 / dlib 0.299 against 25.10 / 0.249 / 0.257 (docs/fidelity.md, Session 8)
    return tune_per_image(
        [generator], ws, y, mask, loss, settings, int(settings.pivotal_steps), settings.pivotal_lr, _tuned_copy,
        "pivotal tuning",
    )  # fmt: skip
