"""The shared projection loop: every task is a degradation operator ``D`` through it.

For a batch of observations ``y [B, 3, H, W]`` (already degraded) the :class:`Projector` finds,
for every image independently, coefficients in the personal space (``P_beta``, or ``P+`` with
per-layer offsets) minimising

    LPIPS(D(G(w)), y [, mask]) + l2_weight * MSE(D(G(w)), y [, mask]) + space penalties

with Adam (official google/mystyle ``reconstruct/base_projector.py`` + ``alpha_projector.py``
+ ``hyperparams.py``: LPIPS-alex + 1 x MSE, lr 5e-3, betas (0.9, 0.999), 1000 steps, raw
coefficients initialised at 1/N, per-layer offsets at 0, penalties 10 x ||delta_l|| on the 12
coarse layers (of 18) and 10 x (sum - 1)^2).

Differences from the official loop: a whole batch is optimised at once (the loss is the *sum*
of per-image losses, and Adam is element-wise, so an image's result does not depend on the
batch it is in), optional early stopping (the official code always runs 1000 steps), and an
optional mask for the loss (1 = known pixel, 0 = hole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn

from ..imaging import downsample_to
from ..data.align import face_mask
from ..generators import Generator
from ..losses import LPIPS
from ..space import PersonalSpace
from ..precision import canonical_precision, render_step, resolve_precision
from .features import feature_tune
from .pivotal import pivotal_tune
from .steps import BestState, EarlyStopping, frozen_weights, lr_factor, run_steps  # noqa: F401  (EarlyStopping, lr_factor: re-exported)

Degradation = Callable[[torch.Tensor], torch.Tensor]
OPTIMIZERS = ("adam", "lbfgs")  # ProjectionSettings.optimizer (make_optimizer)


@dataclass(frozen=True)
class ProjectionSettings:
    """How observations are projected into the personal space (defaults: the official values)."""

    steps: int = 1000  # Adam steps at most (official projection_steps).
    lr: float = 5e-3  # Adam learning rate on the raw coefficients (official projection_lr).
    plus: bool = True  # P+ (per-layer offsets, official --is_wplus True) or P_beta with one w.
    l2_weight: float = 1.0  # weight of the pixel MSE next to LPIPS (official l2_weight).
    lpips_weight: float = 1.0  # weight of LPIPS; 0 = no perceptual term (pixel loss only).
    delta_penalty: float = 10.0  # weight of sum_l ||delta_l|| on the coarse layers (official deltas_reg_weight).
    sum_penalty: float = 10.0  # weight of mean_l (sum raw_l - 1)^2 (official sum_1_reg_weight).
    delta_layers: int | None = None  # coarse layers whose offsets are penalised; None: 2/3 of num_ws (12 of 18).
    patience: int | None = None  # early stopping: steps without improvement of the batch mean loss; None = off.
    min_delta: float = 1e-4  # an improvement smaller than this does not count (early stopping).
    resolution: int = 0  # compute the loss at this resolution (area-downsampled); 0 = as given (official).
    noise_mode: str = "const"  # generator noise during the projection (official 'const').
    progress: bool = False  # show a progress bar.
    keep_best: bool = True  # return each image's lowest-loss state seen (official: the last state).
    lr_rampdown: float = 0.0  # cosine decay of the lr to 0 over this final fraction of the steps (official: 0, constant).
    alpha_lr: float | None = None  # lr of the shared coefficients alpha; None = lr (official: one rate for both).
    delta_lr: float | None = None  # lr of the per-layer offsets delta (P+); None = lr (official).
    delta_prox: bool = False  # the ||delta_l|| penalty by a proximal step (group soft-threshold) after each
    # Adam step instead of through its gradient; same objective, reached without Adam's jitter (see below).
    lr_rampup: float = 0.0  # linear lr warm-up over this first fraction of the steps (StyleGAN2's projector: 0.05).
    face_weight: float | None = None  # loss weight of the background relative to the face (1): None = uniform
    # (official). The face is the ellipse of an FFHQ-aligned crop (data.align.face_mask), so only aligned inputs.
    face_weight_consistent: float | None = None  # face_weight when the task makes its result data-consistent
    # afterwards (super-resolution with back-projection: the observation supplies the background); None = face_weight.
    face_weight_blind: float | None = None  # face_weight for blind inputs (real photos), whose single correction
    # (tasks.consistency.BLIND_BACK_PROJECTION_ITERATIONS) leaves the background to the raw projection as well;
    # None = the rule above.
    # --- method "wplus" (W+ pulled toward the person's space; tasks.anchored.AnchoredWPlusProjector) ---
    method: str = "pplus"  # "pplus": coefficients of the anchors per layer (official P+ / P_beta, above);
    # "wplus": a free w per layer, started at the best-matching anchor and pulled toward P_beta per layer group.
    w_lr: float = 0.05  # "wplus": Adam learning rate on ws, in W units per step.
    pull: tuple[float, float, float] = (0.03, 0.03, 0.0)  # "wplus": weight of the mean squared distance of the
    # coarse (4-8 px), middle (16-32 px) and fine (>= 64 px) layers' w from P_beta (their nearest point).
    pull_low_res: tuple[float, float, float] | None = None  # "wplus": the pull used instead of ``pull`` when the
    # observation is at most ``low_res_px`` px across (super-resolution): there the input leaves identity open and
    # the person's space has to close it (x16 of a 256 px truth, four albums: dlib 0.560 -> 0.501 with (10, 10, 0.03),
    # PSNR unchanged; at 32 px it costs, docs/fidelity.md "Session 7"). None = ``pull`` everywhere.
    low_res_px: int = 16  # the observation side (px) at or below which ``pull_low_res`` applies
    pull_target: str = "hull"  # "wplus": "hull" = P_beta (the dilated convex hull); "span" = the anchors' affine span.
    start: str = "scan"  # "wplus": "scan" = the anchor whose render best matches the observation; "mean" = anchors' mean.
    optimizer: str = "adam"  # "adam" (official) or "lbfgs": torch's L-BFGS (history 20, strong-Wolfe line search,
    # lr 1 scaled by the ramps, one iteration per step); see make_optimizer. With "lbfgs" the images of a batch share
    # one line search and curvature history, so an image's result depends on its batch (use batch size 1).
    delta_smooth: float | None = None  # P+: the offsets' norm penalty smoothed as sqrt(||d||^2 + e^2) - e with
    # e = delta_smooth (PersonalSpace.penalties); None = 0 (the exact norm, official) with Adam, 1e-3 with L-BFGS.
    pivotal_steps: int = 0  # pivotal tuning (PTI, :mod:`.pivotal`) after the projection: Adam steps on a copy of the
    # generator's weights per image, the pivot ws fixed; 0 = off (official MyStyle: the generator is never tuned per photo).
    pivotal_lr: float = 3e-3  # its Adam learning rate (official PTI 3e-4 at 350 steps; 3e-3 measured for 50-200 steps).
    feature_steps: int = 0  # feature-space refinement (:mod:`.features`) after the projection (and pivotal tuning): Adam
    # steps on an offset to the features of block ``feature_resolution`` per image, the ws fixed; 0 = off (official).
    feature_lr: float = 0.05  # its Adam learning rate (features are O(1); 0.03-0.1 measured within 0.2 dB, tasks.features).
    feature_resolution: int | tuple[int, ...] = 64  # the block(s) (px) whose output features take an offset, each at
    # most half the generator's resolution; several are fitted together (tasks.features: the presets' inversion 64 and
    # 256 px; higher = more fidelity, fewer coarse edits).
    l2_full_weight: float = 0.0  # weight of a pixel MSE at the observation's own size next to the loss at ``resolution``,
    # which cannot see what the down-sampling removes, in the refinements after the projection (pivotal tuning, the
    # feature offset): in the W+ pivot too it cost 0.6-1.0 dB (docs/fidelity.md, "Session 11"). 0 = off (official).
    # Only acts when ``resolution`` down-samples.
    precision: str = "32"  # the render inside the projection's steps (pivotal tuning stays float32): "32",
    # "bf16-mixed" (bfloat16 autocast; the loss, the optimiser and the final render stay float32) or "auto"
    # (bf16-mixed where the device has native bfloat16): mystyle_pl.precision.
    per_task: dict = field(default_factory=dict)  # task name ("invert", "superres", "inpaint", "edit") -> fields
    # that task uses instead (a preset's measured per-task values; see for_task and tasks.presets).

    def __post_init__(self) -> None:
        for name in ("pivotal_steps", "feature_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.l2_full_weight < 0:
            raise ValueError(f"l2_full_weight must be >= 0 (0 = off), got {self.l2_full_weight}")
        object.__setattr__(self, "precision", canonical_precision(self.precision))  # 32, "32-true" -> "32"
        if not isinstance(self.feature_resolution, int):  # a list from a config -> a tuple (hashable, as presets write it)
            object.__setattr__(self, "feature_resolution", tuple(int(r) for r in self.feature_resolution))
            if not self.feature_resolution:
                raise ValueError("feature_resolution needs at least one block (px), e.g. 64 or [64, 256]; got []")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    def for_task(self, task: str) -> "ProjectionSettings":
        """These settings as the task ``task`` uses them: ``per_task[task]``'s fields replaced.

        >>> ProjectionSettings(steps=5, per_task={"invert": {"steps": 9}}).for_task("invert").steps
        9
        """
        values = self.per_task.get(task, {})
        return replace(self, **values) if values else self


def delta_smoothing(settings: ProjectionSettings) -> float:
    """The ``smooth`` of the offsets' norm penalty: ``settings.delta_smooth``, or when None 0 with Adam
    (the official, exact norm) and 1e-3 with L-BFGS (its line search needs a gradient that sees the
    kink at 0; 1e-3 is small next to the offsets' scale, 1/N ~ 0.05 for 20 anchors)."""
    if settings.delta_smooth is not None:
        return float(settings.delta_smooth)
    return 1e-3 if settings.optimizer == "lbfgs" else 0.0


def make_optimizer(settings: ProjectionSettings, groups: list[tuple[torch.Tensor, float]]) -> torch.optim.Optimizer:
    """The projection's optimiser over ``groups`` = [(parameter, base lr)]: Adam with betas (0.9, 0.999)
    and each group's lr (official google/mystyle ``base_projector.py``), or L-BFGS (Liu & Nocedal 1989;
    ``torch.optim.LBFGS`` with a strong-Wolfe line search of up to 11 trials, history 20, one
    iteration per ``step(closure)``, lr 1: the line search sizes the step, so the groups' lrs are
    not used; a step costs 1 + its trials forward/backward passes).

    Raises ``ValueError`` for an unknown ``settings.optimizer``."""
    if settings.optimizer == "adam":
        return torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in groups], betas=(0.9, 0.999))
    if settings.optimizer == "lbfgs":
        params = [p for p, _ in groups]
        # max_eval: torch's default for max_iter=1 (1) leaves the line search no trial beyond the first
        # point, so a step that overshoots is refused and the variables never move; 12 = the gradient
        # evaluation + up to 11 trials of the line search.
        return torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=12, history_size=20, line_search_fn="strong_wolfe")
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {settings.optimizer!r}")


def base_lrs(optimizer: torch.optim.Optimizer, lrs: list[float]) -> list[float]:
    """Each param group's lr before the ramps: ``lrs`` for Adam, 1 for L-BFGS (its initial step length)."""
    return [1.0] * len(optimizer.param_groups) if isinstance(optimizer, torch.optim.LBFGS) else lrs


@dataclass
class ProjectionResult:
    """What the projection loop returns, and the base of every projecting task's result (tasks add
    their own fields with :meth:`extend`)."""

    images: torch.Tensor  # [B, 3, R, R] G(ws), undegraded, in [-1, 1] (a task may replace it by its result)
    ws: torch.Tensor  # [B, num_ws, w_dim]
    coefficients: torch.Tensor  # [B, num_ws, N] (P+) or [B, N] (P_beta): constrained, sum 1
    trace: list[float]  # batch mean loss per step
    steps_used: int  # Adam steps taken (< settings.steps when stopped early)
    final_loss: torch.Tensor  # [B] per-image loss (reconstruction + penalties) of the returned result
    raw_coefficients: torch.Tensor | None = field(repr=False, default=None)  # [B, N] or [B, num_ws, N] final raw
    # coefficients (None for the W+ projectors)
    trace_seconds: list[float] = field(repr=False, default_factory=list)  # seconds since the loop began, per trace entry
    generators: list[Generator] | None = field(repr=False, default=None)  # per image, the generator that pivotal
    # tuning and / or the feature offset (settings.pivotal_steps / feature_steps > 0) made for it and that rendered
    # ``images``; None = the prior's generator
    pivotal_traces: list[list[float]] | None = field(repr=False, default=None)  # per image, pivotal tuning's loss per step
    feature_traces: list[list[float]] | None = field(repr=False, default=None)  # per image, the feature offset's loss per step
    precision: str = "32"  # the arithmetic of the steps' renders ("32" or "bf16-mixed": settings.precision resolved)

    @classmethod
    def extend(cls, result: ProjectionResult, **extra):
        """``cls`` (a task's result class) with ``result``'s fields and the task's own ``extra`` ones."""
        base = {f.name: getattr(result, f.name) for f in fields(ProjectionResult)}
        return cls(**{**base, **extra})


def masked_mse(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean squared error ``[B]`` of ``x`` and ``y`` ``[B, C, H, W]``, weighted by ``weight``
    ``[B or 1, 1, H, W]`` (>= 0; None = uniform) and normalised by its sum over the pixels."""
    sq = (x - y).square()
    if weight is None:
        return sq.mean(dim=(1, 2, 3))
    weight = weight.to(sq.dtype).expand(sq.shape[0], 1, *sq.shape[2:])
    known = (weight.sum(dim=(1, 2, 3)) * sq.shape[1]).clamp_min(1e-8)
    return (sq * weight).sum(dim=(1, 2, 3)) / known


class Projector:
    """Batched projection of degraded observations into a :class:`PersonalSpace`.

    ``Projector(generator, space, lpips, settings)`` or with keyword overrides of the settings,
    e.g. ``Projector(g, space, lpips, steps=200, patience=20)``.
    """

    def __init__(
        self,
        generator: Generator,  # the (tuned) generator; frozen during the projection
        space: PersonalSpace,  # the person's space (anchors, beta)
        lpips: nn.Module | None = None,  # LPIPS module, forward(x, y, mask) -> [B]; None: LPIPS("alex") on first use
        settings: ProjectionSettings | None = None,  # None: the official defaults
        **overrides,  # fields of ProjectionSettings to replace
    ) -> None:
        settings = settings if settings is not None else ProjectionSettings()
        self.settings = replace(settings, **overrides) if overrides else settings
        if space.num_ws != generator.num_ws or space.w_dim != generator.w_dim:
            raise ValueError(
                f"space has num_ws={space.num_ws}, w_dim={space.w_dim}; the generator has "
                f"num_ws={generator.num_ws}, w_dim={generator.w_dim}"
            )
        if self.settings.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.settings.steps}")
        if self.settings.patience is not None and self.settings.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.settings.patience}")
        if self.settings.optimizer == "lbfgs" and self.settings.delta_prox:
            raise ValueError("delta_prox (a proximal step after each Adam step) needs optimizer='adam'")
        self.generator = generator
        self.space = space
        self.lpips = lpips

    def _lpips(self, device: torch.device) -> nn.Module:
        if self.lpips is None:
            self.lpips = LPIPS("alex")
        return self.lpips.to(device)

    def _check_inputs(self, y: torch.Tensor, mask: torch.Tensor | None) -> None:
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[1] != 3:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must have shape [B, 3, H, W] in [-1, 1], got {shape}")
        if mask is not None and (
            mask.ndim != 4
            or mask.shape[1] != 1
            or mask.shape[0] not in (1, y.shape[0])
            or mask.shape[2:] != y.shape[2:]
        ):
            raise ValueError(
                f"mask must have shape [B={y.shape[0]} or 1, 1, H={y.shape[2]}, W={y.shape[3]}] "
                f"(1 = known pixel, 0 = hole), got {tuple(mask.shape)}"
            )

    def per_image_loss(
        self, synth: torch.Tensor, y: torch.Tensor, degrade: Degradation, mask: torch.Tensor | None,
        full_size: bool = False,
    ) -> torch.Tensor:
        """Reconstruction loss ``[B]`` of generated images ``synth`` against observations ``y``;
        ``full_size``: with the ``l2_full_weight`` MSE at the observation's size (the refinements' loss)."""
        s = self.settings
        x = degrade(synth)
        if x.shape != y.shape:
            raise ValueError(f"degrade(G(w)) has shape {tuple(x.shape)}, the observations y have {tuple(y.shape)}")
        m, full = mask, None
        if full_size and s.l2_full_weight > 0 and s.resolution > 0:
            weight = self.loss_weights(mask, x.shape[-1], x.device) if x.shape[-1] == x.shape[-2] else mask
            full = s.l2_full_weight * masked_mse(x, y, weight)
        if s.resolution > 0:
            x, y = downsample_to(x, s.resolution), downsample_to(y, s.resolution)
            m = downsample_to(mask, s.resolution) if mask is not None else None
        if x.shape[-1] == x.shape[-2]:  # face weighting (aligned square crops only)
            m = self.loss_weights(m, x.shape[-1], x.device)
        if m is not None:
            m = m.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        loss = s.l2_weight * masked_mse(x, y, m)
        if s.lpips_weight > 0:
            loss = loss + s.lpips_weight * self._lpips(y.device)(x, y, mask=m)
        return loss if full is None else loss + full

    def loss_weights(self, mask: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor | None:
        """The per-pixel loss weight ``[B or 1, 1, size, size]``: the known-mask (1 = known, 0 = hole)
        times the face weighting (1 on the face ellipse of an FFHQ-aligned crop, ``face_weight`` on
        the background, a soft edge; :func:`~mystyle_pl.data.align.face_mask`); None = uniform."""
        s = self.settings
        if s.face_weight is None:
            return mask
        key = (size, str(device), s.face_weight)
        cache = self.__dict__.setdefault("_face_weights", {})  # a loss may weigh two sizes (l2_full_weight)
        if key not in cache:
            cache[key] = s.face_weight + (1.0 - s.face_weight) * face_mask(size, device=device)
        face = cache[key]
        return face if mask is None else mask.to(face.dtype) * face

    def project(
        self,
        y: torch.Tensor,  # [B, 3, H, W] observations in [-1, 1] (already degraded)
        degrade: Degradation | None = None,  # D: G(w) [B, 3, R, R] -> [B, 3, H, W]; None = identity
        mask: torch.Tensor | None = None,  # [B or 1, 1, H, W], 1 = known pixel, 0 = hole; None = all known
        init: torch.Tensor | None = None,  # initial raw coefficients [B, N] (P_beta) or [B, num_ws, N] (P+)
    ) -> ProjectionResult:
        """Project every observation of the batch; see :class:`ProjectionResult`."""
        self._check_inputs(y, mask)
        degrade = degrade if degrade is not None else (lambda img: img)
        with frozen_weights(self.generator):  # only the coefficients are optimised
            result = self._project(y, degrade, mask, init)
        result = replace(result, precision=resolve_precision(self.settings.precision, y.device))
        s = self.settings
        if s.pivotal_steps <= 0 and s.feature_steps <= 0:
            return result
        loss = lambda synth, y_i, m_i: self.per_image_loss(synth, y_i, degrade, m_i, full_size=True)  # noqa: E731
        refined = result
        if s.pivotal_steps > 0:
            tuned = pivotal_tune(self.generator, result.ws, y, mask, loss, s)
            refined = replace(refined, images=tuned.images, generators=tuned.generators, pivotal_traces=tuned.traces)
        if s.feature_steps > 0:
            fitted = feature_tune(refined.generators or [self.generator], result.ws, y, mask, loss, s)
            refined = replace(refined, images=fitted.images, generators=fitted.generators, feature_traces=fitted.traces)
        with torch.no_grad():  # the returned loss: the refined render's reconstruction + the pivot's penalties (unchanged)
            before, after = (self.per_image_loss(images, y, degrade, mask) for images in (result.images, refined.images))
        return replace(refined, final_loss=result.final_loss - before + after)

    def _raw(self, alpha: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        return alpha if delta is None else alpha.unsqueeze(1) + delta

    def _project(self, y, degrade, mask, init) -> ProjectionResult:
        s, space = self.settings, self.space
        device, batch = y.device, y.shape[0]
        space.to(device)
        # Official layout: alpha [N] shared by every layer, offsets delta [num_ws, N] from 0 (P+ only).
        if init is None:
            alpha = space.init_raw(batch, plus=False, device=device)
            delta = torch.zeros(batch, space.num_ws, space.num_anchors, device=device) if s.plus else None
        else:
            expected = (batch, space.num_ws, space.num_anchors) if s.plus else (batch, space.num_anchors)
            if tuple(init.shape) != expected:
                dims = "[B, num_ws, N]" if s.plus else "[B, N]"
                raise ValueError(f"init must have shape {dims} = {expected}, got {tuple(init.shape)}")
            if s.plus:  # alpha = layer mean, delta = the rest
                alpha = init.detach().to(device).mean(dim=1)
                delta = init.detach().to(device) - alpha.unsqueeze(1)
            else:
                alpha, delta = init.detach().to(device).clone(), None
        alpha.requires_grad_(True)
        params = [alpha]
        if delta is not None:
            delta.requires_grad_(True)
            params.append(delta)
        # alpha (one mixture for every layer) is free of the offset penalty and may move faster than
        # the penalised per-layer offsets (alpha_lr); the official code uses one rate for both.
        lrs = [s.lr if s.alpha_lr is None else s.alpha_lr] + [s.lr if s.delta_lr is None else s.delta_lr] * (len(params) - 1)
        optimizer = make_optimizer(s, list(zip(params, lrs)))
        lrs = base_lrs(optimizer, lrs)

        prox = s.delta_prox and delta is not None and s.delta_penalty > 0
        smooth = delta_smoothing(s)
        coarse = space.coarse_layers(s.delta_layers)

        def losses(alpha: torch.Tensor, delta: torch.Tensor | None, split: bool = False):
            """Per-image objective [B]; ``split``: (the part to differentiate, the prox-handled part)."""
            raw = self._raw(alpha, delta)
            ws = space.to_ws(space.coefficients(raw))
            synth = render_step(self.generator, ws, s.noise_mode, s.precision)
            recon = self.per_image_loss(synth, y, degrade, mask)
            if not split or not prox:
                pen = space.penalties(
                    raw, delta, delta_weight=s.delta_penalty, sum_weight=s.sum_penalty, delta_layers=s.delta_layers,
                    smooth=smooth,
                )  # fmt: skip
                return (recon + pen, None) if split else recon + pen
            differentiable = recon + space.penalties(raw, delta, delta_weight=0.0, sum_weight=s.sum_penalty)
            return differentiable, s.delta_penalty * delta[:, :coarse].detach().norm(dim=-1).sum(dim=1)

        best = BestState(batch, device, alpha, delta)

        def objective() -> tuple[torch.Tensor, torch.Tensor]:
            differentiable, prox_part = losses(alpha, delta, split=True)
            per_image = differentiable if prox_part is None else differentiable + prox_part
            best.offer(per_image, alpha, delta)
            # Sum, not mean: each image's coefficients get the gradient of its own loss only.
            return per_image, differentiable.sum()

        def prox_step() -> None:
            # Group soft-threshold of each penalised layer's offsets: the proximal step of
            # delta_penalty * ||delta_l|| at the offsets' step size. Adam moves every coordinate by
            # about its lr whatever the gradient, so through the gradient the non-smooth penalty
            # keeps the offsets jittering at that scale (and the objective far above its minimum:
            # at short budgets the official loop never gets below its starting point).
            with torch.no_grad():
                tau = optimizer.param_groups[1]["lr"] * s.delta_penalty
                d = delta[:, :coarse]
                d.mul_((1 - tau / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp_min(0))

        trace, seconds = run_steps(optimizer, lrs, s, objective, "projecting", prox_step if prox else None)
        with torch.no_grad():
            if s.keep_best:  # the state after the last step competes with the best one seen
                best.offer(losses(alpha, delta), alpha, delta)
                alpha, delta = best.states
            raw = self._raw(alpha, delta).detach()
            coeffs = space.coefficients(raw)
            ws = space.to_ws(coeffs)
            images = self.generator.synthesis(ws, noise_mode=s.noise_mode)
            final = self.per_image_loss(images, y, degrade, mask) + space.penalties(
                raw, delta, delta_weight=s.delta_penalty, sum_weight=s.sum_penalty, delta_layers=s.delta_layers,
                smooth=smooth,
            )  # fmt: skip
        return ProjectionResult(
            images=images,
            ws=ws.contiguous(),
            coefficients=coeffs,
            trace=trace,
            steps_used=len(trace),
            final_loss=final.detach(),
            raw_coefficients=raw,
            trace_seconds=seconds,
        )
