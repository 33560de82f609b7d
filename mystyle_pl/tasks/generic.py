"""The generic-prior baseline: the same tasks with the *untuned* generator, projected in free W+.

This is what a personal prior is measured against (the paper's comparison, and ``evaluate``):
the FFHQ generator before tuning, with each observation projected into W+ (one free ``w`` per
layer, started at ``w_avg``) under the same loss (LPIPS + ``l2_weight`` x MSE against ``D(G(ws))``),
the same step budget, early stopping and keep-best rule as the personal projection. Only the
variable differs: ``ws`` in W units instead of the anchors' coefficients, hence its own learning
rate (``w_lr``; the coefficients' 5e-3 would barely move ``w``).

>>> from mystyle_pl.tasks import Invert
>>> from mystyle_pl.generators import StyleGAN2Generator
>>> G = StyleGAN2Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1)
>>> task = generic_task(Invert, G, steps=3, lpips_weight=0.0)
>>> task(torch.zeros(2, 3, 8, 8)).ws.shape
torch.Size([2, 4, 8])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..generators import Generator
from ..precision import render_step
from .projection import BestState, ProjectionResult, ProjectionSettings, Projector, base_lrs, make_optimizer, run_steps


class WPlusProjector(Projector):
    """Batched W+ projection with a generator alone (no personal space): ``ws`` from ``w_avg``.

    Same interface and result as :class:`~.base.Projector`; ``coefficients`` is an empty
    ``[B, 0]`` tensor (there are no anchors).
    """

    def __init__(
        self,
        generator: Generator,  # the untuned generator; frozen during the projection
        lpips=None,  # LPIPS module, forward(x, y, mask) -> [B]; None: LPIPS("alex") on first use
        settings: ProjectionSettings | None = None,  # steps, patience, loss weights (lr is not used: see w_lr)
        w_lr: float = 0.05,  # Adam learning rate on ws, in W units per step
        **overrides,  # fields of ProjectionSettings to replace
    ) -> None:
        settings = settings if settings is not None else ProjectionSettings()
        self.settings = settings.__class__(**{**settings.__dict__, **overrides})
        if self.settings.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.settings.steps}")
        if w_lr <= 0:
            raise ValueError(f"w_lr must be positive, got {w_lr}")
        self.generator, self.space, self.lpips, self.w_lr = generator, None, lpips, float(w_lr)

    def initial_ws(self, y: torch.Tensor, degrade, mask: torch.Tensor | None) -> torch.Tensor:
        """Where the optimisation starts: ``ws [B, num_ws, w_dim]`` (here ``w_avg`` for every layer)."""
        g = self.generator
        return g.w_avg.detach().to(y.device).expand(y.shape[0], g.num_ws, g.w_dim).clone()

    def penalty(self, ws: torch.Tensor) -> torch.Tensor:
        """Per-image regulariser ``[B]`` added to the reconstruction loss (here none)."""
        return ws.new_zeros(ws.shape[0])

    def _project(self, y, degrade, mask, init) -> ProjectionResult:
        s, g = self.settings, self.generator
        batch, device = y.shape[0], y.device
        if init is None:
            ws = self.initial_ws(y, degrade, mask)
        else:
            if tuple(init.shape) != (batch, g.num_ws, g.w_dim):
                raise ValueError(f"init must be ws [B, num_ws, w_dim] = {(batch, g.num_ws, g.w_dim)}, got {tuple(init.shape)}")
            ws = init.detach().to(device).clone()
        ws.requires_grad_(True)
        optimizer = make_optimizer(s, [(ws, self.w_lr)])
        (lr,) = base_lrs(optimizer, [self.w_lr])

        def losses(ws: torch.Tensor) -> torch.Tensor:
            return self.per_image_loss(render_step(g, ws, s.noise_mode, s.precision), y, degrade, mask) + self.penalty(ws)

        best = BestState(batch, device, ws)

        def objective() -> tuple[torch.Tensor, torch.Tensor]:
            per_image = losses(ws)
            best.offer(per_image, ws)
            return per_image, per_image.sum()  # each image's ws gets its own loss's gradient

        trace, seconds = run_steps(optimizer, [lr], s, objective, self.description)
        with torch.no_grad():
            if s.keep_best:
                best.offer(losses(ws), ws)
                (ws,) = best.states
            ws = ws.detach()
            images = g.synthesis(ws, noise_mode=s.noise_mode)
            final = self.per_image_loss(images, y, degrade, mask) + self.penalty(ws)
        return ProjectionResult(
            images=images,
            ws=ws.contiguous(),
            coefficients=self.coefficients_of(ws),
            trace=trace,
            steps_used=len(trace),
            final_loss=final,
            raw_coefficients=None,
            trace_seconds=seconds,
        )

    description = "projecting (W+)"

    def coefficients_of(self, ws: torch.Tensor) -> torch.Tensor:
        """What the result reports as ``coefficients``: here an empty ``[B, 0]`` (no anchors)."""
        return ws.new_zeros(ws.shape[0], 0)


@dataclass
class GenericPrior:
    """A generator without anchors: what the projecting tasks need from a prior, for the baseline."""

    generator: Generator


def generic_task(
    task,  # a projecting task object (Invert, Inpaint, SuperResolve, ...), or such a class
    generator: Generator,  # the untuned generator (e.g. load_generator("mobilestylegan-ffhq"))
    settings: ProjectionSettings | None = None,  # the same budget as the personal projection; None: a task
    # object's own settings, for a class the official defaults (ProjectionSettings())
    lpips=None,  # LPIPS module shared with the personal run (None: LPIPS("alex"))
    w_lr: float = 0.05,  # Adam learning rate on ws (W units)
    **task_kwargs,  # with a class: its own arguments (blind=..., feather=...) and ProjectionSettings overrides
):
    """``task`` bound to ``generator`` alone, projecting in free W+ (the generic prior).

    Raises ``ValueError`` for a task that needs the person's anchors (``personal_only``: edit, sample)."""
    cls = task if isinstance(task, type) else type(task)
    if getattr(cls, "personal_only", True):
        raise ValueError(f"{cls.__name__} needs a personal space (anchors); the generic prior only projects")
    names = set(ProjectionSettings.__dataclass_fields__)
    overrides = {k: task_kwargs.pop(k) for k in list(task_kwargs) if k in names}
    if isinstance(task, type):
        task = task(**task_kwargs)
        settings = settings if settings is not None else ProjectionSettings()
    elif task_kwargs:
        raise ValueError(f"{sorted(task_kwargs)}: a task object is configured in its constructor")
    settings = settings if settings is not None else task.projection_settings()
    projector = WPlusProjector(generator, lpips=lpips, settings=settings, w_lr=w_lr, **overrides)
    return task.bind(GenericPrior(generator), projector=projector)
