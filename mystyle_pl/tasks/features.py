"""Feature-space refinement: after the projection, fit per photo offsets to the features that the
generator's blocks at ``feature_resolution`` px output (one block or several, fitted together;
Barbershop's FS space, SAM's feature layers; :mod:`mystyle_pl.generators.features`), with the
projection's codes held fixed.

A W+ code paints what the person's generator can paint; the photo's own layout, light and
background at 64 px lie outside it (a held-out inversion's pivot sits near 21-22 dB at 256 px).
Pivotal tuning (:mod:`.pivotal`) closes part of that gap by moving the generator's weights; an
offset to one block's features closes more of it at less cost: no weight gradients, no copy of the
generator, and its steps may render under bfloat16 (the optimised tensor is an activation). The
layers above the feature block still render the detail from the person's codes.

Measured on album 00027's held-out photo (``outputs/s11/inv_probe.py``, 40-step bfloat16 pivot,
30 steps, loss LPIPS + MSE at 256 px + 30 x MSE at 1024 px; PSNR to the truth at 256 px /
consistency at 1024 px / LPIPS-VGG): offset at 64 px 34.7 dB / 31.6 dB / 0.103, at 32 px (weight 10)
31.7 / 29.2 / 0.162, at 128 px (weight 3) 31.0 / 28.7 / 0.178; pivotal tuning 50 steps from a
60-step float32 pivot 29.2 / 28.0 / 0.204. Learning rate 0.05 (0.03 and 0.1 measured within 0.2 dB).
A second offset at 256 px, fitted with the 64 px one, supplies the detail the codes paint only
approximately: album 00001, 40 steps after the same pivot (``outputs/s12/joint.py``), consistency
28.9 -> 34.0 dB, LPIPS-VGG 0.123 -> 0.034 (64 + 128 + 256 px 34.0; 256 px alone 28.9: it cannot move
the light); four albums' mean 30.4 -> 35.8 dB (docs/fidelity.md, "Session 12").

The cost: what the offset fixes, coarse edits cannot move (SAM's trade-off), so the presets use it
for inversion and keep pivotal tuning for editing.
"""

from __future__ import annotations

from typing import Any

import torch

from ..generators import Generator
from ..generators.features import FeatureOffsetGenerator, blocks_features, offset_resolutions
from .pivotal import PivotalResult, PivotLoss, tune_per_image
from .steps import frozen_weights


def feature_tune(
    generators: list[Generator],  # per image (or one for all): the generator to start from (not modified)
    ws: torch.Tensor,  # [B, num_ws, w_dim] the pivots (the projection's result), held fixed
    y: torch.Tensor,  # [B, 3, H, W] the observations in [-1, 1]
    mask: torch.Tensor | None,  # [B or 1, 1, H, W], 1 = known pixel; None = all known
    loss: PivotLoss,  # the projection's per-image loss
    settings: Any,  # ProjectionSettings: feature_steps, feature_lr, feature_resolution, precision, ramps, noise_mode
) -> PivotalResult:
    """Fit feature offsets per image, one per block of ``settings.feature_resolution`` (an int or
    several, fitted together), for ``settings.feature_steps`` Adam steps at ``settings.feature_lr``
    (with the projection's lr ramps; renders under ``settings.precision``). ``generators`` in the
    result are :class:`~mystyle_pl.generators.features.FeatureOffsetGenerator` (nested, the finest
    outermost; ``offsets`` lists them) sharing the base generator's weights; each resolution is capped
    at half the generator's (:func:`~mystyle_pl.generators.features.offset_resolutions`). Raises
    ``ValueError`` for a ``feature_resolution`` the generator has no block at, a batch mismatch or
    fewer than 1 step."""
    resolutions = offset_resolutions(generators[0], settings.feature_resolution)

    def make(base: Generator, w_i: torch.Tensor) -> tuple[Generator, list[torch.Tensor]]:
        features = blocks_features(base, w_i, resolutions, settings.noise_mode)
        generator, offsets = base, []
        for resolution in resolutions:  # nested, finest outermost; all fitted together
            offset = torch.zeros_like(features[resolution], memory_format=torch.contiguous_format).requires_grad_(True)
            generator = FeatureOffsetGenerator(generator, resolution, offset)
            offsets.append(offset)
        return generator, offsets

    with frozen_weights(*generators):  # the offsets are the only thing optimised: no weight gradients
        return tune_per_image(
            generators, ws, y, mask, loss, settings, int(settings.feature_steps), settings.feature_lr, make,
            f"feature offset at {' + '.join(map(str, resolutions))} px", precision=settings.precision,
        )  # fmt: skip
