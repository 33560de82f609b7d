"""Colourisation: ``D`` = RGB -> luminance. A grayscale face crop is projected into the person's
space, whose generator supplies the colours.

The luminance is ITU-R BT.601's ``Y = 0.299 R + 0.587 G + 0.114 B`` (the weights of JPEG / PIL's
``convert("L")``), taken on images in ``[-1, 1]`` (the weights sum to 1, so the affine map to
``[0, 1]`` commutes with it) and repeated over three channels, so the observation stays an
``[B, 3, R, R]`` image that LPIPS and the loop take as they are. A colour input is reduced to its
luminance first: the task only ever sees the gray.

With ``keep_luminance`` (default) the result is made data-consistent: its luminance is replaced by
the input's (the same offset added to R, G and B moves ``Y`` by exactly that offset and keeps the
chroma ``R - Y``, ``B - Y``), so ``D(result)`` reproduces the input and only the colours come from
the prior. ``.raw`` is the projection before that.

>>> x = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1)
>>> round(float(luminance(x)[0, 0, 0, 0]), 3)  # 0.299 - 0.587 + 0
-0.288
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, Output, ProjectingTask, check_images
from .consistency import consistency_psnr
from .projection import ProjectionResult

BT601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights of R, G, B


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``D``: ``[B, 3, H, W]`` in ``[-1, 1]`` -> its BT.601 luminance repeated over 3 channels, ``[B, 3, H, W]``.

    Raises ``ValueError`` unless ``images`` has 3 channels."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"luminance needs images [B, 3, H, W], got {tuple(images.shape)}")
    weights = images.new_tensor(BT601).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True).expand_as(images)


@dataclass
class ColorizeResult(ProjectionResult):
    """``images`` is the colour result in ``[-1, 1]`` (with the input's luminance when ``keep_luminance``)."""

    raw: torch.Tensor | None = None  # [B, 3, R, R] the projection G(ws) before the luminance transfer
    gray: torch.Tensor | None = None  # [B, 3, R, R] the observation D(input) the projection fitted
    consistency: torch.Tensor | None = None  # [B] PSNR (dB) of D(images) against the gray input
    raw_consistency: torch.Tensor | None = None  # [B] PSNR (dB) of D(raw) against the gray input


class Colorize(ProjectingTask):
    """Colour grayscale face crops ``[B, 3, R, R]`` in ``[-1, 1]`` (gray in every channel, or any colour
    photo, whose luminance is used) from the person's space.

    ``Colorize().run(prior, images)`` -> :class:`ColorizeResult`; raises ``ValueError`` for images
    that are not ``[B, 3, R, R]`` floats."""

    name = "colorize"

    def __init__(
        self,
        keep_luminance: bool = True,  # the result takes the input's luminance (data-consistent); False = G(ws)
        **kwargs,  # ProjectingTask arguments (preset, steps, w_lr, pull, beta, ...)
    ) -> None:
        super().__init__(**kwargs)
        self.keep_luminance = keep_luminance

    def __call__(self, images: torch.Tensor) -> ColorizeResult:
        self._require_bound()
        check_images(images, "images", self.resolution)
        gray = luminance(images.to(self.device))
        result = self.projector.project(gray, degrade=luminance)
        with torch.no_grad():
            raw = result.images
            out = raw + (gray - luminance(raw)) if self.keep_luminance else raw
            return ColorizeResult.extend(
                result, images=out, raw=raw, gray=gray,
                consistency=consistency_psnr(out, gray, luminance),
                raw_consistency=consistency_psnr(raw, gray, luminance),
            )  # fmt: skip

    def outputs(self, batch: Batch) -> list[Output]:
        result = self(batch.images)
        return [
            self.projected(result, i, crop=result.images[i], raw=result.raw[i], gray=result.gray[i])
            for i in range(batch.images.shape[0])
        ]
