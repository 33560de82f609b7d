"""What ``predict`` runs: one small spec class per task, chosen in the config by ``class_path``.

A spec's ``__init__`` arguments are the task's arguments (``model.init_args.task.init_args`` in
the YAML). It builds the task object of :mod:`mystyle_pl.tasks` once the prior sits on its
device, runs it on a group of same-size items, and turns the batched result into one
:class:`Prediction` per input: the images to write, which of them to paste back into the photo,
the latents, and the task's part of the JSON record. The projection loop itself is
:class:`mystyle_pl.tasks.base.Projector`; nothing here re-implements it.

========================  ===========================  =========================================
spec                      task                         images written per input
========================  ===========================  =========================================
``InvertSpec``            :class:`~.tasks.Invert`      crop (G(ws))
``InpaintSpec``           :class:`~.tasks.Inpaint`     crop (blended), generated (G(ws)), mask
``SuperResolveSpec``      :class:`~.tasks.SuperResolve` crop (R px), degraded (D(G(ws)))
``EditSpec``              :class:`~.tasks.Edit`        crop (projection), strength_<s>, strip
``SampleSpec``            :class:`~.tasks.Sample`      crop (a new image)
========================  ===========================  =========================================
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .data import TaskItem


@dataclass
class Prediction:
    """One input's result, ready for the writer (tensors on the CPU after :meth:`cpu`)."""

    item: TaskItem  # the input (name, source, crop, photo + transform)
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # PNG stem -> [3, H, W] in [-1, 1]; "crop" = result
    paste: dict[str, str] = field(default_factory=dict)  # PNG stem of a full photo -> key of `images` pasted into it
    strip: list[str] = field(default_factory=list)  # keys of `images` laid side by side into strip.png
    latents: dict[str, torch.Tensor] = field(default_factory=dict)  # tensors of latents.safetensors
    record: dict[str, Any] = field(default_factory=dict)  # the task's fields of record.json
    upscale: int = 1  # the full photo is enlarged this many times before pasting (super-resolution)
    paste_mask: torch.Tensor | None = None  # [1, S, S] crop region pasted into the photo (1 = result); None = face ellipse
    error: str | None = None  # the input could not be used (names the file); nothing but the record is written

    @property
    def name(self) -> str:
        return self.item.name

    def cpu(self) -> Prediction:
        self.images = {k: v.detach().float().cpu() for k, v in self.images.items()}
        self.latents = {k: v.detach().float().cpu().contiguous() for k, v in self.latents.items()}
        if self.paste_mask is not None:
            self.paste_mask = self.paste_mask.detach().float().cpu()
        for attr in ("image", "mask"):
            value = getattr(self.item, attr)
            if value is not None:
                setattr(self.item, attr, value.detach().cpu())
        return self


def _paste_region(mask: torch.Tensor, grow: int | None = None) -> torch.Tensor:
    """Where an inpainted crop goes back into the photo: the hole of ``mask [1, S, S]`` (1 = known,
    0 = hole), grown by ``grow`` px and softened over as many (the blended crop equals the input
    crop around the hole, so the seam falls on unchanged pixels); the photo keeps the rest."""
    import torch.nn.functional as F

    grow = max(2, mask.shape[-1] // 64) if grow is None else grow
    hole = 1.0 - mask.float()[None]
    grown = F.max_pool2d(hole, 2 * grow + 1, stride=1, padding=grow)
    return F.avg_pool2d(grown, 2 * grow + 1, stride=1, padding=grow, count_include_pad=False)[0].clamp(0, 1)


def _hole_image(mask: torch.Tensor) -> torch.Tensor:
    """A known-mask ``[1, H, W]`` (1 = known, 0 = hole) as an image ``[3, H, W]``: white = hole."""
    return (1.0 - 2.0 * mask.float()).expand(3, *mask.shape[-2:])


def strength_key(s: float) -> str:
    """File stem of an edit strength: ``strength_+1.5``, ``strength_-2``, ``strength_+0``."""
    return f"strength_{s:+g}"


class TaskSpec:
    """Base of the task specs. Subclasses set the class attributes and implement :meth:`build`
    and :meth:`predict`."""

    name: ClassVar[str] = ""  # the task's name (output records)
    takes_inputs: ClassVar[bool] = True  # False: draws new images, reads no files (sample)
    low_resolution: ClassVar[bool] = False  # inputs are R / factor px (superres)
    needs_mask: ClassVar[bool] = False  # every input needs a hole mask (inpaint)

    def check(self, prior) -> None:
        """Fail early (before any input is read) on arguments this prior cannot take."""

    def make_lpips(self):
        """The LPIPS module the task needs (registered on the model so Lightning moves it), or None."""

    def build(self, prior, lpips=None):
        """The task object, built on the prior's current device."""
        raise NotImplementedError

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        """Run ``task`` on usable items whose crops have the same size (one projection batch)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Every ``__init__`` argument of the spec and its value (for record.json)."""
        out: dict[str, Any] = {}
        for cls in reversed(type(self).__mro__):
            init = cls.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    out[p.name] = getattr(self, p.name)
        return out


class ProjectingSpec(TaskSpec):
    """Arguments shared by the tasks that project their input. ``preset`` names a budget of
    :mod:`mystyle_pl.tasks.presets` (the one home of the projection defaults, shared with
    ``evaluate``, the demo and Python); every other argument left ``None`` takes the preset's value
    (official google/mystyle values in brackets)."""

    default_preset: ClassVar[str] = "quick"

    def __init__(
        self,
        preset: str | None = None,  # "quick" (W+ anchored, 100 steps), "full", "pplus", "official"; None = the task's default
        steps: int | None = None,  # optimiser steps at most [1000]
        method: str | None = None,  # "wplus": a free w per layer pulled toward the person's space; "pplus": anchors' coefficients [pplus]
        lr: float | None = None,  # "pplus": Adam learning rate on the anchors' coefficients [5e-3]
        w_lr: float | None = None,  # "wplus": Adam learning rate on ws (W units)
        pull: Sequence[float] | None = None,  # "wplus": pull toward P_beta of the coarse, middle, fine layers
        face_weight: float | None = None,  # loss weight of the background next to the face (1); preset "official": uniform
        start: str | None = None,  # "wplus": "scan" (best-matching anchor) or "mean" (anchors' mean)
        plus: bool | None = None,  # "pplus": P+ (per-layer coefficients) [True]; False = P_beta with one w
        beta: float | None = 0.03,  # dilation of the anchors' convex hull [0.03]
        patience: int | None = None,  # early stopping: steps without a better batch mean loss [off]
        min_delta: float = 1e-4,  # improvements smaller than this do not count (early stopping)
        l2_weight: float | None = None,  # weight of the pixel MSE next to LPIPS [1.0]
        lpips_weight: float | None = None,  # weight of LPIPS [1.0]; 0 = pixel loss only (no LPIPS weights needed)
        lpips_net: str = "alex",  # LPIPS backbone: "alex" [official] or "vgg"
        delta_penalty: float | None = None,  # "pplus": weight of the coarse layers' offset norms [10]
        sum_penalty: float | None = None,  # "pplus": weight of the coefficients' (sum - 1)^2 [10]
        loss_resolution: int | None = None,  # compute the loss at this size (area-downsampled); 0 = as given [0]
        delta_prox: bool | None = None,  # "pplus": the offsets' penalty by a proximal step [False]
        lr_rampdown: float | None = None,  # cosine lr decay over this final fraction of the steps [0: constant]
        progress: bool = True,  # a progress bar per projection batch (steps and loss)
    ) -> None:
        from ..tasks.presets import PRESETS

        preset = preset if preset is not None else self.default_preset
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or null, got {patience}")
        self.preset, self.steps, self.method, self.lr, self.w_lr = preset, steps, method, lr, w_lr
        self.pull, self.face_weight, self.start = (tuple(pull) if pull is not None else None), face_weight, start
        self.plus, self.beta = plus, beta
        self.patience, self.min_delta = patience, min_delta
        self.l2_weight, self.lpips_weight, self.lpips_net = l2_weight, lpips_weight, lpips_net
        self.delta_penalty, self.sum_penalty = delta_penalty, sum_penalty
        self.loss_resolution, self.progress = loss_resolution, progress
        self.delta_prox, self.lr_rampdown = delta_prox, lr_rampdown
        self.projection_settings()  # an unknown value fails here, before any input is read

    def projection_settings(self):
        from ..tasks.presets import task_settings

        return task_settings(
            self.preset, steps=self.steps, method=self.method, lr=self.lr, w_lr=self.w_lr, pull=self.pull,
            face_weight=self.face_weight, start=self.start, plus=self.plus, l2_weight=self.l2_weight,
            lpips_weight=self.lpips_weight, delta_penalty=self.delta_penalty, sum_penalty=self.sum_penalty,
            patience=self.patience, min_delta=self.min_delta, resolution=self.loss_resolution,
            delta_prox=self.delta_prox, lr_rampdown=self.lr_rampdown, progress=self.progress,
        )  # fmt: skip

    def make_lpips(self):
        if self.projection_settings().lpips_weight <= 0:
            return None
        from ..losses import LPIPS

        return LPIPS(self.lpips_net)

    def _task_kwargs(self, lpips) -> dict[str, Any]:
        return {"settings": self.projection_settings(), "lpips": lpips, "beta": self.beta}

    @staticmethod
    def _stack(items: Sequence[TaskItem]) -> torch.Tensor:
        return torch.stack([item.image for item in items])

    @staticmethod
    def _projected(item: TaskItem, result, i: int, **images: torch.Tensor) -> Prediction:
        """A prediction with the projection's latents and loss for image ``i`` of ``result``."""
        return Prediction(
            item=item,
            images=dict(images),
            paste={"photo": "crop"},
            latents={"ws": result.ws[i], "coefficients": result.coefficients[i]},
            record={
                "steps_used": int(result.steps_used),
                "final_loss": float(result.final_loss[i]),
                **{
                    key: round(float(getattr(result, key)[i]), 2)
                    for key in ("consistency", "raw_consistency")
                    if getattr(result, key, None) is not None
                },  # PSNR (dB) of the result (and of the raw projection) degraded like the input, against it
            },
        )


class InvertSpec(ProjectingSpec):
    """Inversion: project each face crop into the person's space (``D`` = identity)."""

    name = "invert"

    def build(self, prior, lpips=None):
        from ..tasks.invert import Invert

        return Invert(prior, **self._task_kwargs(lpips))

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        result = task(self._stack(items))
        return [self._projected(item, result, i, crop=result.images[i]) for i, item in enumerate(items)]


class InpaintSpec(ProjectingSpec):
    """Inpainting: fill the holes (``data.mask`` / ``data.boxes``) from the known pixels."""

    name = "inpaint"
    needs_mask = True

    def __init__(
        self,
        feather: int | None = None,  # seam width in pixels inside the hole; None = max(1, R // 64); 0 = hard paste
        **kwargs,  # ProjectingSpec arguments (steps, lr, plus, beta, patience, ...)
    ) -> None:
        super().__init__(**kwargs)
        self.feather = feather

    def build(self, prior, lpips=None):
        from ..tasks.inpaint import Inpaint

        return Inpaint(prior, feather=self.feather, **self._task_kwargs(lpips))

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        masks = torch.stack([item.mask for item in items])  # [B, 1, S, S], 1 = known, 0 = hole
        result = task(self._stack(items), masks, labels=[item.source or item.name for item in items])
        out = []
        for i, item in enumerate(items):
            pred = self._projected(
                item, result, i, crop=result.blended[i], generated=result.images[i], mask=_hole_image(masks[i])
            )
            pred.record["hole_fraction"] = float((masks[i] == 0).float().mean())
            pred.paste_mask = _paste_region(masks[i])
            out.append(pred)
        return out


class SuperResolveSpec(ProjectingSpec):
    """Super-resolution: project low-resolution faces (``D`` = area down-sampling) to the
    generator's resolution. ``blind`` for real degraded photos (blur + noise in ``D``)."""

    name = "superres"
    low_resolution = True

    def __init__(
        self,
        blind: bool = False,  # blind mode: a Gaussian blur and noise in D (real degraded photos)
        blur_sigma: float | None = None,  # blind blur at the generator's resolution, px; None = 0.5 x factor
        noise_std: float = 0.02,  # blind noise std ([-1, 1] units)
        seed: int = 0,  # seeds the blind noise
        back_projection: int = 30,  # iterations making the result reproduce the input when down-sampled
        # (the input's low frequencies, the projection's detail; tasks.consistency); 0 = the raw projection
        **kwargs,  # ProjectingSpec arguments (preset, steps, w_lr, pull, beta, ...)
    ) -> None:
        super().__init__(**kwargs)
        self.blind, self.blur_sigma, self.noise_std, self.seed = blind, blur_sigma, noise_std, seed
        if back_projection < 0:
            raise ValueError(f"back_projection must be >= 0 iterations, got {back_projection}")
        self.back_projection = back_projection

    def build(self, prior, lpips=None):
        from ..tasks.superres import SuperResolve

        return SuperResolve(
            prior, blind=self.blind, blur_sigma=self.blur_sigma, noise_std=self.noise_std, seed=self.seed,
            back_projection=self.back_projection, **self._task_kwargs(lpips),
        )  # fmt: skip

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        factor = items[0].factor
        result = task(self._stack(items), factor=factor)
        out = []
        for i, item in enumerate(items):
            pred = self._projected(
                item, result, i, crop=result.images[i], raw=result.raw[i], degraded=result.degraded[i]
            )
            pred.upscale = int(result.factor)
            pred.record["factor"] = int(result.factor)
            out.append(pred)
        return out


class EditSpec(ProjectingSpec):
    """Semantic editing: project, then move along a W direction at each strength. Its default
    preset is the paper's P+ ("pplus"): the edit policies keep results inside the person's space."""

    name = "edit"
    default_preset = "pplus"

    def __init__(
        self,
        direction: int | str = 0,  # a .pt/.npy W direction [1, w_dim] or [w_dim], or a principal direction index
        strengths: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),  # multiples of the direction (principal ones: unit)
        policy: str = "project",  # when an edit leaves the person's space: "continue", "stop" (clamp) or "project"
        layers: list[int] | None = None,  # generator layers receiving the edit; None = all
        span: bool = True,  # project the direction into the anchors' span first
        principal_samples: int = 10000,  # mapped z for the principal directions (direction given as an index)
        **kwargs,  # ProjectingSpec arguments (steps, lr, plus, beta, patience, ...)
    ) -> None:
        super().__init__(**kwargs)
        from ..tasks.edit import POLICIES

        strengths = [float(s) for s in strengths]
        if not strengths:
            raise ValueError("strengths is empty: give at least one strength")
        keys = [strength_key(s) for s in strengths]
        if len(set(keys)) != len(keys):
            raise ValueError(f"strengths has duplicates: {strengths}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(direction, str) and not direction.lstrip("-").isdigit() and not Path(direction).is_file():
            raise FileNotFoundError(f"direction file not found: {direction}")
        if isinstance(direction, str) and direction.lstrip("-").isdigit():
            direction = int(direction)
        self.direction, self.strengths, self.policy = direction, strengths, policy
        self.layers, self.span, self.principal_samples = layers, span, principal_samples
        self._direction: torch.Tensor | None = None

    def check(self, prior) -> None:
        from ..tasks.edit import load_direction

        w_dim, num_ws = prior.generator.w_dim, prior.generator.num_ws
        if isinstance(self.direction, int):
            if not 0 <= self.direction < w_dim:
                raise ValueError(
                    f"direction: principal direction index must be in [0, w_dim={w_dim}), got {self.direction}"
                )
        else:
            load_direction(self.direction, w_dim=w_dim)  # a wrong size is an error naming the file
        for layer in self.layers or []:
            if not 0 <= int(layer) < num_ws:
                raise ValueError(f"layers: layer {layer} out of range for this generator (num_ws={num_ws})")

    def build(self, prior, lpips=None):
        from ..tasks.edit import Edit

        task = Edit(
            prior, policy=self.policy, layers=self.layers, span=self.span,
            principal_samples=self.principal_samples, **self._task_kwargs(lpips),
        )  # fmt: skip
        self._direction = task.direction(self.direction)  # resolved once (file read, PCA, span projection)
        return task

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        result = task(self._stack(items), self._direction, self.strengths)
        proj = result.projection
        keys = [strength_key(s) for s in self.strengths]
        out = []
        for i, item in enumerate(items):
            images = {"crop": proj.images[i], **{k: result.images[i, j] for j, k in enumerate(keys)}}
            out.append(
                Prediction(
                    item=item,
                    images=images,
                    paste={"photo": "crop", **{f"photo_{k}": k for k in keys}},
                    strip=keys,
                    latents={
                        "ws": result.ws[i],  # [S, num_ws, w_dim] the edited codes
                        "coefficients": result.coefficients[i],  # [S, num_ws, N]
                        "projection_ws": proj.ws[i],  # [num_ws, w_dim]
                        "projection_coefficients": proj.coefficients[i],
                        "direction": result.direction,  # [w_dim] after the span projection
                        "strengths": torch.tensor(self.strengths),
                        "applied": result.applied[i],
                    },
                    record={
                        "steps_used": int(proj.steps_used),
                        "final_loss": float(proj.final_loss[i]),
                        "strengths": list(self.strengths),
                        "applied": [float(a) for a in result.applied[i]],
                        "inside": [bool(b) for b in result.inside[i]],
                        "policy": result.policy,
                    },
                )
            )
        return out


class SampleSpec(TaskSpec):
    """New images of the person: random points of the anchors' convex hull (no inputs)."""

    name = "sample"
    takes_inputs = False

    def __init__(
        self,
        k: int | None = 3,  # anchors mixed per sample (official 3); None = all anchors
        method: str = "official",  # "official" (uniform weights, normalised) or "dirichlet"
        alpha: float = 1.0,  # Dirichlet concentration (method "dirichlet")
        noise_mode: str = "const",  # generator noise: "const", "random" or "none"
    ) -> None:
        self.k, self.method, self.alpha, self.noise_mode = k, method, alpha, noise_mode

    def build(self, prior, lpips=None):
        from ..tasks.sample import Sample

        return Sample(prior, k=self.k, method=self.method, alpha=self.alpha, noise_mode=self.noise_mode)

    def predict(self, task, items: Sequence[TaskItem]) -> list[Prediction]:
        out = []
        for item in items:  # one draw per item with its own seed: independent of batching and ranks
            result = task(1, seed=item.seed)
            out.append(
                Prediction(
                    item=item,
                    images={"crop": result.images[0]},
                    latents={"ws": result.ws[0], "coefficients": result.coefficients[0]},
                    record={"seed": item.seed, "index": item.index},
                )
            )
        return out
