"""Inversion: ``D`` = identity. A face crop at the generator's resolution is projected into the
person's space (``P_beta`` or ``P+``) through the shared projection loop (:mod:`.projection`);
the presets then fit feature offsets at 64 and 256 px (:mod:`.features`), so the result is the
photo itself with the person's generator painting the layers between and above them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, Output, ProjectingTask, check_images
from .consistency import consistency_psnr
from .projection import ProjectionResult


@dataclass
class InvertResult(ProjectionResult):
    """Inversion result: the projection and how closely ``images`` reproduce the input."""

    consistency: torch.Tensor | None = None  # [B] PSNR (dB) of G(ws) against the input


class Invert(ProjectingTask):
    """Project face crops ``[B, 3, R, R]`` in ``[-1, 1]`` into the person's space (``D`` = identity).

    ``Invert(preset="quick", steps=50).run(prior, images)`` -> :class:`InvertResult`; raises
    ``ValueError`` for images that are not ``[B, 3, R, R]`` floats."""

    name = "invert"

    def __call__(self, images: torch.Tensor) -> InvertResult:
        self._require_bound()
        check_images(images, "images", self.resolution)
        images = images.to(self.device)
        result = self.projector.project(images)
        return InvertResult.extend(result, consistency=consistency_psnr(result.images, images, None))

    def outputs(self, batch: Batch) -> list[Output]:
        result = self(batch.images)
        return [self.projected(result, i, crop=result.images[i]) for i in range(batch.images.shape[0])]
