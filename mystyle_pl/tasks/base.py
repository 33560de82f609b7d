"""The base of every task: a task object *is* its configuration, and runs on a prior it is bound to.

A task class holds its settings in ``__init__`` (so LightningCLI builds it from
``class_path: mystyle_pl.tasks.SuperResolve`` and ``init_args``) and declares what its inputs must
be (:attr:`Task.takes_inputs`, :attr:`Task.low_resolution`, :attr:`Task.needs_mask`). It knows no
prior until it is run::

    task = SuperResolve(blind=True, preset="quick", steps=50)   # the configuration
    result = task.run(prior, images)                             # = task.bind(prior)(images)
    result = prior.run(task, "face_32px.png")                    # the same; any image form prior.as_images reads

:meth:`Task.bind` returns a bound copy (the prior's space and projector built on its device);
calling it runs the task. ``predict``, ``evaluate``, the demo and Python all build these objects;
``predict`` turns a bound task's batch result into files through :meth:`Task.outputs`.

The projecting tasks (:class:`ProjectingTask`) take their projection budget from a named preset
of :mod:`.presets` (the one home of the projection defaults) with per-field overrides.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from ..generators.features import FeatureOffsetGenerator, offset_resolutions
from ..losses import LPIPS
from ..prior import register_task
from ..space import DEFAULT_BETA, PersonalSpace
from .anchored import AnchoredWPlusProjector
from .presets import DEFAULT_PRESET, PRESETS, given_values, task_settings
from .projection import ProjectionResult, ProjectionSettings, Projector


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


@dataclass
class Batch:
    """What ``predict`` hands a bound task: one group of same-size inputs."""

    images: torch.Tensor | None = None  # [B, 3, S, S] in [-1, 1]; None for tasks without inputs (sample)
    masks: torch.Tensor | None = None  # [B, 1, S, S], 1 = known pixel, 0 = hole (tasks with needs_mask)
    factor: int | None = None  # low-resolution tasks: the result's side / S (None = the task's default)
    labels: list[str] = field(default_factory=list)  # one name per input for messages (e.g. the files)
    seeds: list[int | None] = field(default_factory=list)  # tasks without inputs: one seed per output
    indices: list[int] = field(default_factory=list)  # tasks without inputs: the outputs' numbers in the run


@dataclass
class Output:
    """One input's result as files: what ``predict``'s writer writes (tensors on any device)."""

    images: dict[str, torch.Tensor] = field(default_factory=dict)  # PNG stem -> [3, H, W] in [-1, 1]; "crop" = result
    paste: dict[str, str] = field(default_factory=dict)  # PNG stem of a full photo -> key of `images` pasted into it
    strip: list[str] = field(default_factory=list)  # keys of `images` laid side by side into strip.png
    latents: dict[str, torch.Tensor] = field(default_factory=dict)  # tensors of latents.safetensors
    record: dict[str, Any] = field(default_factory=dict)  # the task's fields of record.json
    upscale: int = 1  # the full photo is enlarged this many times before pasting (super-resolution)
    paste_mask: torch.Tensor | None = None  # [1, S, S] crop region pasted into the photo (1 = result); None = face ellipse


class Task:
    """Base of every task. Subclasses set the class attributes, take their settings in ``__init__``
    and implement :meth:`_bind` (optional), :meth:`__call__` and :meth:`outputs`.

    Raises ``RuntimeError`` when an unbound task is called (bind it to a prior first)."""

    name: ClassVar[str] = ""  # the task's name (records, evaluate's conditions, prior.<python method>)
    takes_inputs: ClassVar[bool] = True  # False: draws new images, reads no files (sample)
    low_resolution: ClassVar[bool] = False  # inputs are smaller than the result (R / factor px: superres)
    needs_mask: ClassVar[bool] = False  # every input needs a hole mask (inpaint)
    personal_only: ClassVar[bool] = True  # needs the person's anchors: no generic-prior baseline (edit, sample)

    prior: Any = None  # the prior the task is bound to (set by bind)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_task(cls)  # prior.run("<name>", ...) and the prior's named shortcuts find it

    # ------------------------------------------------------------------ configuration

    def config(self) -> dict[str, Any]:
        """Every ``__init__`` argument of the task and its value (``record.json``'s ``settings``)."""
        out: dict[str, Any] = {}
        for cls in reversed(type(self).__mro__):
            init = cls.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and hasattr(self, p.name):
                    value = getattr(self, p.name)
                    out[p.name] = value if not isinstance(value, ProjectionSettings) else value.__dict__
        return out

    def check(self, prior) -> None:
        """Fail early (before any input is read) on settings this prior cannot take."""

    def make_lpips(self) -> nn.Module | None:
        """The LPIPS module the task needs (``predict`` registers it so Lightning moves it), or None."""
        return None

    # ------------------------------------------------------------------ running

    def bind(self, prior, lpips: nn.Module | None = None, **kwargs) -> Task:
        """A copy of this task bound to ``prior`` (a :class:`~mystyle_pl.prior.PersonalPrior`): built on
        the generator's current device. ``lpips``: a shared LPIPS module (None: the task's own)."""
        bound = copy.copy(self)
        bound.prior = prior
        bound._bind(prior, lpips, **kwargs)
        return bound

    def _bind(self, prior, lpips: nn.Module | None, **kwargs: Any) -> None:
        """Build what the bound task needs (space, projector); ``self`` is the bound copy. ``kwargs``:
        what a task's binding takes (projecting tasks: ``projector``, ``progress``)."""

    def run(self, prior, *inputs, **kwargs):
        """Bind to ``prior`` and run on ``inputs`` (see the task's ``__call__``)."""
        return self.bind(prior)(*inputs, **kwargs)

    def _require_bound(self) -> None:
        if self.prior is None:
            raise RuntimeError(
                f"{type(self).__name__} is not bound to a prior: use task.run(prior, ...) or task.bind(prior)(...)"
            )

    @property
    def generator(self):
        self._require_bound()
        return self.prior.generator

    @property
    def resolution(self) -> int:
        """The generator's resolution ``R`` (px)."""
        return int(self.generator.img_resolution)

    @property
    def device(self) -> torch.device:
        return self.generator.w_avg.device

    def outputs(self, batch: Batch) -> list[Output]:
        """Run the bound task on one ``predict`` batch: one :class:`Output` per input."""
        raise NotImplementedError

    def python_inputs(self, prior, *inputs, **kwargs) -> tuple[tuple, dict]:
        """The Python API's inputs (paths, PIL images, arrays, tensors) -> the ``__call__`` arguments
        (``prior.run(task, img, ...)``); by default the first input through ``prior.as_images``."""
        if not inputs or not self.takes_inputs:
            return inputs, kwargs
        return (prior.as_images(inputs[0]), *inputs[1:]), kwargs


class ProjectingTask(Task):
    """A task that projects its input into the person's space. ``preset`` names a budget of
    :mod:`.presets` (the one home of the projection defaults, shared with ``evaluate``, the demo and
    Python); every override left ``None`` takes the preset's value (official google/mystyle values in
    brackets); ``projection`` replaces the preset by full settings."""

    default_preset: ClassVar[str] = DEFAULT_PRESET
    personal_only = False  # the generic prior (tasks.generic) runs it too

    def __init__(
        self,
        preset: str | None = None,  # "quick" (W+ anchored, 60 steps), "full", "pplus", "official"; None = the task's default
        steps: int | None = None,  # optimiser steps at most [1000]
        method: str | None = None,  # "wplus": a free w per layer pulled toward the person's space; "pplus": anchors' coefficients [pplus]
        lr: float | None = None,  # "pplus": Adam learning rate on the anchors' coefficients [5e-3]
        w_lr: float | None = None,  # "wplus": Adam learning rate on ws (W units)
        optimizer: str | None = None,  # "adam" [official] or "lbfgs" (quasi-Newton; batch size 1: docs/fidelity.md)
        pull: Sequence[float] | None = None,  # "wplus": pull toward P_beta of the coarse, middle, fine layers
        face_weight: float | None = None,  # loss weight of the background next to the face (1); preset "official": uniform
        start: str | None = None,  # "wplus": "scan" (best-matching anchor) or "mean" (anchors' mean)
        plus: bool | None = None,  # "pplus": P+ (per-layer coefficients) [True]; False = P_beta with one w
        beta: float | None = DEFAULT_BETA,  # dilation of the anchors' convex hull [0.03]; None = affine hull
        patience: int | None = None,  # early stopping: steps without a better batch mean loss [off]
        min_delta: float | None = None,  # improvements smaller than this do not count (early stopping) [1e-4]
        l2_weight: float | None = None,  # weight of the pixel MSE next to LPIPS [1.0]
        lpips_weight: float | None = None,  # weight of LPIPS [1.0]; 0 = pixel loss only (no LPIPS weights needed)
        lpips_net: str = "alex",  # LPIPS backbone of the loss: "alex" [official] or "vgg"
        delta_penalty: float | None = None,  # "pplus": weight of the coarse layers' offset norms [10]
        sum_penalty: float | None = None,  # "pplus": weight of the coefficients' (sum - 1)^2 [10]
        loss_resolution: int | None = None,  # compute the loss at this size (area-downsampled); 0 = as given [0]
        delta_prox: bool | None = None,  # "pplus": the offsets' penalty by a proximal step [False]
        lr_rampdown: float | None = None,  # cosine lr decay over this final fraction of the steps [0: constant]
        pivotal_steps: int | None = None,  # pivotal tuning (PTI) of a generator copy per photo after the projection;
        # 0 = off [official: off]; the presets tune for editing only (tasks.pivotal)
        feature_steps: int | None = None,  # steps of a feature-space offset per photo after the projection (and
        # pivotal tuning); 0 = off [official: off]; the presets refine inversion so (tasks.features)
        feature_resolution: int | list[int] | None = None,  # the generator block(s) (px) the offset goes to, each at
        # most half the generator's resolution [presets: 64 and 256 px]; higher holds more of the photo, less to edits
        l2_full_weight: float | None = None,  # weight of a pixel MSE at the observation's own size next to the loss
        # at loss_resolution, in the refinements after the projection; 0 = off [official: off; quick, pplus, full:
        # 30 for the inversion's feature offsets and editing's pivotal tuning]
        precision: str | None = None,  # the generator's render inside the optimisation steps: "32", "bf16-mixed"
        # (bfloat16 autocast; loss, optimiser and the result stay float32) or "auto" (bf16-mixed where the device has
        # native bfloat16) [quick/full/pplus: auto; official: 32]. Not --trainer.precision, which casts the whole step
        progress: bool | None = None,  # a progress bar per projection (steps, loss); None = the caller's choice
        # (predict: shown; Python, evaluate, the demo: their own option)
        projection: ProjectionSettings | None = None,  # full settings instead of a preset (the overrides still apply)
        **overrides,  # any other ProjectionSettings field (Python; e.g. face_weight_consistent=0.0, noise_mode=...)
    ) -> None:
        if preset is not None and projection is not None:
            raise ValueError("pass either preset= or settings= / projection=, not both")
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or null, got {patience}")
        self.preset = preset if preset is not None or projection is not None else self.default_preset
        self.steps, self.method, self.lr, self.w_lr, self.optimizer = steps, method, lr, w_lr, optimizer
        self.pull, self.face_weight, self.start = (tuple(pull) if pull is not None else None), face_weight, start
        self.plus, self.beta, self.patience, self.min_delta = plus, beta, patience, min_delta
        self.l2_weight, self.lpips_weight, self.lpips_net = l2_weight, lpips_weight, lpips_net
        self.delta_penalty, self.sum_penalty = delta_penalty, sum_penalty
        self.loss_resolution, self.delta_prox, self.lr_rampdown = loss_resolution, delta_prox, lr_rampdown
        for name, value in (("pivotal_steps", pivotal_steps), ("feature_steps", feature_steps)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {value}")
        self.pivotal_steps, self.feature_steps, self.precision = pivotal_steps, feature_steps, precision
        self.feature_resolution, self.l2_full_weight = feature_resolution, l2_full_weight
        self.progress, self.projection, self.overrides = progress, projection, dict(overrides)
        self.projection_settings()  # an unknown value fails here, before any input is read

    def projection_settings(self, progress: bool = False) -> ProjectionSettings:
        """The resolved :class:`~.projection.ProjectionSettings` (``progress``: the bar when the task's
        own ``progress`` is None)."""
        bar = self.progress if self.progress is not None else progress
        if self.progress is None and self.projection is not None:
            bar = progress or self.projection.progress
        explicit = dict(
            steps=self.steps, method=self.method, lr=self.lr, w_lr=self.w_lr, optimizer=self.optimizer, pull=self.pull,
            face_weight=self.face_weight, start=self.start, plus=self.plus, l2_weight=self.l2_weight,
            lpips_weight=self.lpips_weight, delta_penalty=self.delta_penalty, sum_penalty=self.sum_penalty,
            patience=self.patience, min_delta=self.min_delta, resolution=self.loss_resolution,
            delta_prox=self.delta_prox, lr_rampdown=self.lr_rampdown, pivotal_steps=self.pivotal_steps,
            feature_steps=self.feature_steps, feature_resolution=self.feature_resolution,
            l2_full_weight=self.l2_full_weight, precision=self.precision, progress=bar,
        )  # fmt: skip
        values = given_values({**self.overrides, **explicit})
        if self.projection is None:
            # the preset's values for this task (ProjectionSettings.per_task), under the explicit ones
            return task_settings(self.preset, **values).for_task(self.name)
        task_settings(DEFAULT_PRESET, **values)  # unknown fields fail here, with the list of known ones
        for key in ("pull", "pull_low_res"):
            if values.get(key) is not None:
                values[key] = tuple(float(p) for p in values[key])
        known = {f.name for f in fields(ProjectionSettings)}
        per_task = {t: {k: v for k, v in f.items() if k not in values} for t, f in self.projection.per_task.items()}
        merged = {**{k: getattr(self.projection, k) for k in known}, **values, "per_task": per_task}
        return ProjectionSettings(**merged).for_task(self.name)

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.update(self.overrides)
        return out

    def make_lpips(self) -> nn.Module | None:
        if self.projection_settings().lpips_weight <= 0:
            return None
        return LPIPS(self.lpips_net)

    def _bind(self, prior, lpips: nn.Module | None, projector: Projector | None = None, progress: bool = False) -> None:
        """``projector``: a ready projector (the generic prior's); ``progress``: the bar when the
        task's ``progress`` is None."""
        if projector is not None:
            self.space, self.projector = projector.space, projector
            return
        self.space = PersonalSpace.from_prior(prior, beta=self.beta)
        settings = self.projection_settings(progress)
        if settings.feature_steps > 0:  # a block this generator lacks fails here, before any photo is projected
            offset_resolutions(prior.generator, settings.feature_resolution)
        if settings.method == "wplus":
            self.projector = AnchoredWPlusProjector(prior.generator, self.space, lpips, settings, renders=prior.anchor_renders)
        elif settings.method == "pplus":
            self.projector = Projector(prior.generator, self.space, lpips, settings)
        else:
            raise ValueError(f"method must be 'pplus' or 'wplus', got {settings.method!r}")

    @staticmethod
    def projected(result: ProjectionResult, i: int, **images: torch.Tensor) -> Output:
        """An :class:`Output` with image ``i``'s latents, loss and consistencies of ``result``."""
        return Output(
            images=dict(images),
            paste={"photo": "crop"},
            latents={"ws": result.ws[i], "coefficients": result.coefficients[i]},
            record={
                "steps_used": int(result.steps_used),
                "precision": result.precision,
                "final_loss": float(result.final_loss[i]),
                **refinement_steps(result, i),
                **{
                    key: round(float(getattr(result, key)[i]), 2)
                    for key in ("consistency", "raw_consistency")
                    if getattr(result, key, None) is not None
                },  # PSNR (dB) of the result (and of the raw projection) degraded like the input, against it
            },
        )


def refinement_steps(result: ProjectionResult, i: int) -> dict[str, Any]:
    """Image ``i``'s pivotal-tuning and feature-offset steps, and the blocks (px) its feature offsets
    sit at (``feature_resolution``), for the result's record (absent when off)."""
    out: dict[str, Any] = {}
    for key, traces in (("pivotal_steps", result.pivotal_traces), ("feature_steps", result.feature_traces)):
        if traces is not None:
            out[key] = len(traces[i])
    generator = result.generators[i] if result.generators is not None else None
    if result.feature_traces is not None and isinstance(generator, FeatureOffsetGenerator):
        out["feature_resolution"] = sorted(generator.offsets)
    return out
