"""Inversion: ``D`` = identity. A face crop at the generator's resolution is projected into
the person's space (``P_beta`` or ``P+``) through the shared :class:`~.base.Projector`.

Also holds the small helpers every task shares (input checks, building the projector).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..space import DEFAULT_BETA, PersonalSpace
from .consistency import consistency_psnr
from .base import ProjectionResult, ProjectionSettings, Projector


def check_images(images: torch.Tensor, name: str = "images", resolution: int | None = None) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``images`` is a float ``[B, 3, H, W]`` tensor
    (in ``[-1, 1]``), square-checked against ``resolution`` when given."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor [B, 3, H, W] in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {images.dtype}")
    if images.shape[0] < 1:
        raise ValueError(f"{name} is an empty batch (B=0)")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if resolution is not None and tuple(images.shape[2:]) != (resolution, resolution):
        raise ValueError(
            f"{name} must be [B, 3, {resolution}, {resolution}] (the generator's resolution), "
            f"got {tuple(images.shape)}; align the face first (mystyle-pl prepare)"
        )


class _ProjectingTask:
    """Common constructor: a prior, its space and the shared projector."""

    task_name = "invert"  # the key of ProjectionSettings.per_task this task reads

    def __init__(
        self,
        prior,  # a PersonalPrior (its generator and anchors)
        settings: ProjectionSettings | None = None,  # None: the official defaults (1000 Adam steps, LPIPS + L2)
        lpips: nn.Module | None = None,  # LPIPS module; None: LPIPS("alex") on first use
        beta: float | None = DEFAULT_BETA,  # dilation of the space P_beta; None = affine hull
        projector: Projector | None = None,  # a ready projector (replaces settings/lpips/overrides)
        **overrides,  # fields of ProjectionSettings to replace (steps=200, lpips_weight=0.0, ...)
    ) -> None:
        self.prior = prior
        self.generator = prior.generator
        if projector is not None:
            self.space = projector.space
            self.projector = projector
        else:
            self.space = PersonalSpace.from_prior(prior, beta=beta)
            resolved = settings if settings is not None else ProjectionSettings()
            resolved = resolved.for_task(self.task_name)  # the preset's values for this task ...
            resolved = replace(resolved, **overrides) if overrides else resolved  # ... under explicit ones
            if resolved.method == "wplus":
                from .anchored import AnchoredWPlusProjector  # (anchored imports this module's siblings)

                self.projector = AnchoredWPlusProjector(self.generator, self.space, lpips, resolved)
            elif resolved.method == "pplus":
                self.projector = Projector(self.generator, self.space, lpips, resolved)
            else:
                raise ValueError(f"method must be 'pplus' or 'wplus', got {resolved.method!r}")

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)

    @property
    def device(self) -> torch.device:
        return self.generator.w_avg.device


@dataclass
class ProjectedResult:
    """What every projecting task returns; tasks subclass it to add their own fields."""

    images: torch.Tensor  # [B, 3, R, R] G(ws) in [-1, 1]
    ws: torch.Tensor  # [B, num_ws, w_dim]
    coefficients: torch.Tensor  # [B, num_ws, N] (P+) or [B, N] (P_beta), sum 1
    trace: list[float]  # batch mean loss per step
    steps_used: int  # Adam steps taken
    final_loss: torch.Tensor  # [B] per-image loss of the result
    projection: ProjectionResult  # the raw projector output

    @classmethod
    def from_projection(cls, result: ProjectionResult, **extra):
        """Build from the projector's output plus the task's own fields."""
        return cls(
            images=result.images,
            ws=result.ws,
            coefficients=result.coefficients,
            trace=result.trace,
            steps_used=result.steps_used,
            final_loss=result.final_loss,
            projection=result,
            **extra,
        )


@dataclass
class InvertResult(ProjectedResult):
    """Inversion result: :class:`ProjectedResult` and how closely ``images`` reproduce the input."""

    consistency: torch.Tensor | None = None  # [B] PSNR (dB) of G(ws) against the input


class Invert(_ProjectingTask):
    """Project face crops ``[B, 3, R, R]`` in ``[-1, 1]`` into the person's space (``D`` = identity)."""

    def __call__(self, images: torch.Tensor) -> InvertResult:
        return self.run(images)

    def run(self, images: torch.Tensor) -> InvertResult:
        check_images(images, "images", self.resolution)
        images = images.to(self.device)
        result = self.projector.project(images)
        return InvertResult.from_projection(result, consistency=consistency_psnr(result.images, images, lambda img: img))
