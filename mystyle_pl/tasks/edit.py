"""Semantic editing: project the photo (``D`` = identity), then move its ``ws`` along a W direction.

The direction is an InterFaceGAN-style boundary ``[1, w_dim]`` (or ``[w_dim]``) read from a
``.pt`` (``torch.load(weights_only=True)``) or ``.npy`` (``allow_pickle=False``) file, or one of
the generator's principal directions (GANSpace-style PCA of mapped random ``z``). It is projected
into the span of the anchors (:meth:`PersonalSpace.project_direction`, the directions of the
affine hull) and applied at a list of strengths. When an edit leaves ``P_beta`` the edge policy
decides: ``continue`` (apply as is), ``stop`` (clamp the strength at the boundary of ``P_beta``,
found by bisection), ``project`` (replace the edited point by its nearest point in ``P_beta``).
The policies act on the projection's nearest point in ``P_beta``; the projection's residual outside
it (a W+ projection's detail of the photo) is added back to every edit. With pivotal tuning
(:mod:`.pivotal`) each photo's edits are rendered by its own tuned generator.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import Batch, Output, ProjectingTask, check_images, refinement_steps
from .consistency import consistency_psnr
from .projection import ProjectionResult

POLICIES = ("continue", "stop", "project")


def _as_direction(d, w_dim: int, name: str) -> torch.Tensor:
    if isinstance(d, np.ndarray):
        d = torch.from_numpy(np.asarray(d, dtype=np.float32))
    if not isinstance(d, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [1, w_dim={w_dim}] or [w_dim={w_dim}], got {type(d).__name__}")
    shape = tuple(d.shape)
    if d.ndim == 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 1 or d.shape[0] != w_dim:
        raise ValueError(
            f"{name} has shape {shape}: a direction must be [1, w_dim={w_dim}] or [w_dim={w_dim}] "
            "(wrong size for this generator)"
        )
    d = d.detach().float()
    if not torch.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return d


def load_direction(path: str | os.PathLike, w_dim: int | None = None) -> torch.Tensor:
    """Read a W direction ``[w_dim]`` from ``.pt`` / ``.pth`` (a tensor, or a dict holding exactly one
    tensor; ``weights_only=True``) or ``.npy`` (``allow_pickle=False``). ``w_dim`` checks the size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict):
                tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
                if len(tensors) != 1:
                    raise ValueError(f"a dict with {len(tensors)} tensors (expected one)")
                data = tensors[0]
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            raise ValueError(f"unknown extension {suffix!r} (expected .pt, .pth or .npy)")
    except ValueError as e:
        raise ValueError(f"direction {path}: {e}") from e
    except Exception as e:  # unpickling refused, corrupt file
        raise ValueError(f"direction {path}: cannot read it ({e})") from e
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.asarray(data, dtype=np.float32))
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"direction {path}: holds {type(data).__name__}, not a tensor")
    if w_dim is None:
        w_dim = data.shape[-1] if data.ndim else 0
    return _as_direction(data, w_dim, f"direction {path}")


def principal_directions(
    generator,  # the generator (its mapping network)
    k: int = 10,  # number of directions
    num_samples: int = 10000,  # mapped random z used for the PCA
    seed: int = 0,  # seeds the z draws
    return_std: bool = False,  # also return the std of w along each direction [k]
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """GANSpace-style principal directions of W: PCA of ``mapping(z)`` -> unit rows ``[k, w_dim]``
    (sign fixed so the largest-magnitude component is positive), most variance first."""
    w_dim = generator.w_dim
    if not 1 <= k <= min(w_dim, num_samples):
        raise ValueError(f"k must be in [1, min(w_dim={w_dim}, num_samples={num_samples})], got {k}")
    device = generator.w_avg.device
    z = torch.randn(num_samples, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        w = generator.mapping(z).double()
    w = w - w.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    dirs = vh[:k]
    sign = torch.sign(dirs.gather(1, dirs.abs().argmax(dim=1, keepdim=True)))
    dirs = (dirs * sign).float()
    std = (s[:k] / max(1, num_samples - 1) ** 0.5).float()
    return (dirs, std) if return_std else dirs


@dataclass
class EditResult:
    images: torch.Tensor  # [B, S, 3, R, R] one image per strength, in [-1, 1]
    ws: torch.Tensor  # [B, S, num_ws, w_dim] the edited codes
    coefficients: torch.Tensor  # [B, S, num_ws, N] coefficients of the edited codes over the anchors
    strengths: list[float]  # the requested strengths (S)
    applied: torch.Tensor  # [B, S] strength actually applied ('stop' clamps it; else = requested)
    inside: torch.Tensor  # [B, S] bool: the edited code (before 'project') lies in P_beta
    direction: torch.Tensor  # [w_dim] the direction after projection into the anchors' span
    policy: str
    projection: ProjectionResult  # the projection of the input (strength 0 before any policy)

    @property
    def projected(self) -> torch.Tensor:
        """The projection of the input ``[B, 3, R, R]``."""
        return self.projection.images


def strength_key(s: float) -> str:
    """File stem of an edit strength: ``strength_+1.5``, ``strength_-2``, ``strength_+0``."""
    return f"strength_{s:+g}"


class Edit(ProjectingTask):
    """Edit face crops ``[B, 3, R, R]`` (in ``[-1, 1]``) along a W direction inside the person's space.

    ``Edit(direction=0, strengths=[-1, 1]).run(prior, images)`` -> :class:`EditResult`. Its default
    preset is the paper's P+ ("pplus"): the edit policies keep results inside the person's space.
    Raises ``ValueError`` for an unknown policy, empty or repeated strengths, a direction of the wrong
    size, and ``FileNotFoundError`` for a missing direction file."""

    name = "edit"
    default_preset = "pplus"
    personal_only = True  # the direction is projected into the anchors' span

    def __init__(
        self,
        direction: int | str = 0,  # a .pt/.npy W direction [1, w_dim] or [w_dim], or a principal direction index
        strengths: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),  # multiples of the direction (principal ones: unit)
        policy: str = "project",  # when an edit leaves the person's space: "continue", "stop" (clamp) or "project"
        layers: list[int] | None = None,  # generator layers receiving the edit; None = all
        span: bool = True,  # project the direction into the anchors' span first
        principal_samples: int = 10000,  # mapped z for the principal directions (direction given as an index)
        tol: float = 1e-4,  # distance to P_beta counted as inside
        **kwargs,  # ProjectingTask arguments (preset, steps, lr, plus, beta, patience, ...)
    ) -> None:
        super().__init__(**kwargs)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        strengths = [float(s) for s in (strengths if isinstance(strengths, Sequence) else [strengths])]
        if not strengths:
            raise ValueError("strengths is empty: give at least one strength")
        keys = [strength_key(s) for s in strengths]
        if len(set(keys)) != len(keys):
            raise ValueError(f"strengths has duplicates: {strengths}")
        if isinstance(direction, str) and direction.lstrip("-").isdigit():
            direction = int(direction)
        if isinstance(direction, (str, os.PathLike)) and not Path(direction).is_file():
            raise FileNotFoundError(f"direction file not found: {direction}")
        self.direction, self.strengths, self.policy = direction, strengths, policy
        self.layers, self.span, self.principal_samples, self.tol = layers, span, principal_samples, tol

    def check(self, prior) -> None:
        w_dim, num_ws = prior.generator.w_dim, prior.generator.num_ws
        if isinstance(self.direction, int):
            if not 0 <= self.direction < w_dim:
                raise ValueError(
                    f"direction: principal direction index must be in [0, w_dim={w_dim}), got {self.direction}"
                )
        elif isinstance(self.direction, (str, os.PathLike)):
            load_direction(self.direction, w_dim=w_dim)  # a wrong size is an error naming the file
        for layer in self.layers or []:
            if not 0 <= int(layer) < num_ws:
                raise ValueError(f"layers: layer {layer} out of range for this generator (num_ws={num_ws})")

    def _bind(self, prior, lpips, **kwargs) -> None:
        super()._bind(prior, lpips, **kwargs)
        self._resolved: dict = {}  # the configured direction, resolved once (file read, PCA, span projection)

    def resolve_direction(self, direction) -> torch.Tensor:
        """:meth:`direction_of` the argument, the configured one (``None``) resolved once."""
        if direction is not None:
            return self.direction_of(direction)
        if "d" not in self._resolved:
            self._resolved["d"] = self.direction_of(self.direction)
        return self._resolved["d"]

    def direction_of(self, direction) -> torch.Tensor:
        """A direction ``[w_dim]`` from a tensor/array, a ``.pt``/``.npy`` path, or an int (principal
        direction index), projected into the anchors' span when ``span``."""
        w_dim = self.generator.w_dim
        if isinstance(direction, (str, os.PathLike)):
            d = load_direction(direction, w_dim=w_dim)
        elif isinstance(direction, int) and not isinstance(direction, bool):
            if not 0 <= direction < w_dim:
                raise ValueError(f"principal direction index must be in [0, w_dim={w_dim}), got {direction}")
            d = principal_directions(self.generator, k=direction + 1, num_samples=self.principal_samples)[direction]
        else:
            d = _as_direction(direction, w_dim, "direction")
        d = d.to(self.device)
        if self.span:
            d = self.space.project_direction(d)
            if d.norm() == 0:
                raise ValueError("direction is orthogonal to the anchors' span: the edit would do nothing")
        return d

    def _layer_mask(self) -> torch.Tensor:
        num_ws = self.generator.num_ws
        m = torch.zeros(num_ws, 1, device=self.device)
        if self.layers is None:
            m[:] = 1
        else:
            for layer in self.layers:
                if not 0 <= int(layer) < num_ws:
                    raise ValueError(f"layer {layer} out of range for num_ws={num_ws}")
                m[int(layer)] = 1
        return m

    def _inside(self, ws: torch.Tensor) -> torch.Tensor:
        return self.space.contains(ws, tol=self.tol).all(dim=-1)  # [B]: every layer inside

    def _coefficients(self, ws: torch.Tensor) -> torch.Tensor:
        """Least-squares coefficients (sum 1) of ``ws [..., w_dim]`` over the anchors ``[..., N]``."""
        a = self.space.anchors.double()
        mean = a.mean(dim=0)
        c = torch.linalg.lstsq((a - mean).T, (ws.double() - mean).reshape(-1, a.shape[1]).T).solution.T
        c = c - c.mean(dim=1, keepdim=True) + 1.0 / a.shape[0]
        return c.reshape(*ws.shape[:-1], a.shape[0]).to(ws.dtype)

    def __call__(
        self,
        images: torch.Tensor,  # [B, 3, R, R] in [-1, 1]
        direction=None,  # tensor/array [1, w_dim] or [w_dim], .pt/.npy path, or principal direction index; None = the task's
        strengths: Sequence[float] | None = None,  # edit strengths (multiples of the direction); None = the task's
        projection: ProjectionResult | None = None,  # a projection of images to reuse (skips projecting)
        policy: str | None = None,  # overrides the edge policy
    ) -> EditResult:
        self._require_bound()
        check_images(images, "images", self.resolution)
        policy = self.policy if policy is None else policy
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        strengths = self.strengths if strengths is None else strengths
        strengths = [float(s) for s in (strengths if isinstance(strengths, Sequence) else [strengths])]
        if not strengths:
            raise ValueError("strengths is empty: give at least one strength")
        d = self.resolve_direction(direction)
        if projection is None:
            projection = self.projector.project(images.to(self.device))
        elif projection.feature_traces is not None:
            warnings.warn(
                "this projection was refined by a feature offset (feature_steps > 0, the inversion's default): it holds "
                "the photo's layout at the feature resolution, so edits of the coarse layers barely show; project for "
                "the edit itself (Edit(...)(images, ...) without projection=, pivotal tuning) or pass feature_steps=0",
                stacklevel=2,
            )
        pivot = projection.ws.detach()  # [B, num_ws, w_dim]
        # A W+ pivot (the quick preset's projection) lies outside P_beta by its residual: the photo's own
        # detail. The edge policies act on the pivot's nearest point in P_beta and the residual rides along,
        # so strength 0 is the projection itself and an edit moves this photo, not the album's nearest face.
        # (A P+ pivot lies inside: its residual is 0 and the policies act on it as in the paper.)
        base, _ = self.space.nearest(pivot)
        base = base.to(pivot.dtype)
        residual = pivot - base
        step = self._layer_mask() * d  # [num_ws, w_dim]
        out_ws, applied, inside = [], [], []
        for s in strengths:
            ws = base + s * step
            ins = self._inside(ws)
            amount = torch.full((base.shape[0],), s, device=base.device)
            if policy == "stop" and not ins.all():
                lo = torch.zeros_like(amount)  # largest known-inside fraction of s, per image
                hi = torch.ones_like(amount)
                for _ in range(12):
                    mid = (lo + hi) / 2
                    ok = self._inside(base + (mid * s)[:, None, None] * step)
                    lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
                amount = torch.where(ins, amount, lo * s)
                ws = base + amount[:, None, None] * step
            elif policy == "project" and not ins.all():
                nearest, _ = self.space.nearest(ws)
                ws = torch.where(ins[:, None, None], ws, nearest)
            out_ws.append(ws + residual)
            applied.append(amount)
            inside.append(ins)
        ws = torch.stack(out_ws, dim=1)  # [B, S, num_ws, w_dim]
        b, n_s = ws.shape[:2]
        noise_mode = self.projector.settings.noise_mode
        with torch.no_grad():
            if projection.generators is None:
                imgs = self.generator.synthesis(ws.reshape(b * n_s, *ws.shape[2:]), noise_mode=noise_mode)
            else:  # pivotal tuning or a feature offset: each photo's edits by its own generator, so they keep its details
                imgs = torch.cat([g.synthesis(ws[i], noise_mode=noise_mode) for i, g in enumerate(projection.generators)])
        return EditResult(
            images=imgs.reshape(b, n_s, *imgs.shape[1:]),
            ws=ws,
            coefficients=self._coefficients(ws),
            strengths=strengths,
            applied=torch.stack(applied, dim=1),
            inside=torch.stack(inside, dim=1),
            direction=d,
            policy=policy,
            projection=projection,
        )

    def outputs(self, batch: Batch) -> list[Output]:
        result = self(batch.images)
        proj = result.projection
        # PSNR (dB) of the projection (strength 0) against the input crop: how much of the photo it keeps
        consistency = consistency_psnr(proj.images, batch.images, None)
        keys = [strength_key(s) for s in result.strengths]
        out = []
        for i in range(batch.images.shape[0]):
            images = {"crop": proj.images[i], **{k: result.images[i, j] for j, k in enumerate(keys)}}
            out.append(
                Output(
                    images=images,
                    paste={"photo": "crop", **{f"photo_{k}": k for k in keys}},
                    strip=keys,
                    latents={
                        "ws": result.ws[i],  # [S, num_ws, w_dim] the edited codes
                        "coefficients": result.coefficients[i],  # [S, num_ws, N]
                        "projection_ws": proj.ws[i],  # [num_ws, w_dim]
                        "projection_coefficients": proj.coefficients[i],
                        "direction": result.direction,  # [w_dim] after the span projection
                        "strengths": torch.tensor(result.strengths),
                        "applied": result.applied[i],
                    },
                    record={
                        "steps_used": int(proj.steps_used),
                        "precision": proj.precision,
                        "final_loss": float(proj.final_loss[i]),
                        **refinement_steps(proj, i),
                        "consistency": round(float(consistency[i]), 2),
                        "strengths": list(result.strengths),
                        "applied": [float(a) for a in result.applied[i]],
                        "inside": [bool(b) for b in result.inside[i]],
                        "policy": result.policy,
                    },
                )
            )
        return out
