"""Evaluate a personal prior on held-out photos of the person: ``mystyle-pl evaluate``.

Every held-out photo (an FFHQ-aligned crop, or a raw photo aligned on the fly) is degraded
synthetically, and each degraded input is restored side by side by

* ``personal``: the personal prior, projection into ``P+`` (the MyStyle tasks);
* ``generic``: the untuned generator the prior was tuned from, free ``W+`` projection from
  ``w_avg`` with the same loss and step budget (:func:`~mystyle_pl.tasks.generic.generic_task`);
* ``baseline``: no prior at all: bicubic up-sampling (super-resolution, blind restoration),
  OpenCV Telea inpainting when ``cv2`` imports, else the known pixels' mean colour.

Conditions (``tasks``; a group name selects all its conditions):

==================  =====================================================================
superres-x8/-x16    area down-sampling by 8 / 16 relative to the evaluation resolution
blind               blur + down-sampling + noise + JPEG (seeded per photo), resized back;
                    restored by blind super-resolution from a ``blind_factor`` down-sampled copy
inpaint-eyes        a box over both eyes (FFHQ-aligned coordinates)
inpaint-mouth       a box over the mouth
inpaint-irregular   seeded brush strokes over the face (the same mask for every photo)
real                real degraded photos with a ground truth (``pairs``), restored like blind
==================  =====================================================================

Results are measured against the ground truth at the evaluation resolution ``E`` (default 256):
identity (dlib descriptors, see :mod:`mystyle_pl.metrics.identity`), LPIPS, PSNR and SSIM, each
with mean and spread. A beta sweep repeats one condition with the personal prior at several
dilations ``beta`` of its space (the paper's identity-vs-LPIPS trade-off). The output folder gets
``report.md`` (tables, image strips), ``metrics.json`` (every number and the settings), the strips
and the sweep plot as PNG, and optionally a W&B run.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from .data.io import to_tensor, to_uint8, write_bytes_atomic, write_image
from .metrics.identity import IMAGE_SUFFIXES, IdentityScore, IdentityScorer, album_centre, summarize
from .metrics.identity import _stats as stats
from .metrics.image import lpips_distance, psnr, ssim
from .space import DEFAULT_BETA
from .tasks.base import ProjectionSettings
from .tasks.superres import area_downsample, gaussian_blur

log = logging.getLogger(__name__)

FORMAT = "mystyle_pl.evaluation"
VERSION = 1

TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "superres": ("superres-x8", "superres-x16"),
    "inpaint": ("inpaint-eyes", "inpaint-mouth", "inpaint-irregular"),
    "blind": ("blind",),
}
CONDITIONS: dict[str, str] = {
    "superres-x8": "super-resolution x8: area down-sampling by 8",
    "superres-x16": "super-resolution x16: area down-sampling by 16",
    "blind": "blind restoration: blur + down-sampling + noise + JPEG (seeded), resized back",
    "inpaint-eyes": "inpainting: a box over both eyes",
    "inpaint-mouth": "inpainting: a box over the mouth",
    "inpaint-irregular": "inpainting: seeded irregular brush strokes over the face",
    "real": "real degraded photos with a ground truth (pairs), restored by blind super-resolution",
}
METHODS = ("personal", "generic", "baseline")
DEFAULT_TASKS = ("superres", "inpaint", "blind")
DEFAULT_BETAS = (0.0, 0.03, 0.1, 0.3)

# Holes in FFHQ-aligned coordinates, fractions of the side (x0, y0, x1, y1). The 68 dlib landmarks of
# the shared albums' aligned photos put the eyes within x 0.31..0.68, y 0.44..0.49 and the mouth
# within x 0.35..0.65, y 0.69..0.82 (5th..95th percentiles); the boxes add a margin.
EYES_BOX = (0.27, 0.40, 0.73, 0.54)
MOUTH_BOX = (0.32, 0.64, 0.68, 0.85)


# ----------------------------------------------------------------------------------------
# degradations


@dataclass(frozen=True)
class BlindDegradation:
    """Synthetic real-world degradation, drawn per photo from its seed (ranges are uniform).

    blur (Gaussian) -> area down-sampling by ``scale`` -> Gaussian noise -> JPEG -> bicubic back to
    the input size. Blur sigma is in pixels at 256 and scales with the image size.
    """

    blur_sigma: tuple[float, float] = (1.5, 4.0)  # Gaussian blur std range, px at a 256 px image
    scale: int = 4  # down-sampling factor before noise and JPEG
    noise_std: tuple[float, float] = (0.03, 0.10)  # Gaussian noise std range ([-1, 1] units, at the small size)
    jpeg_quality: tuple[int, int] = (20, 60)  # JPEG quality range (PIL), inclusive

    def params(self, seed: int, key: str) -> dict:
        """The parameters drawn for one photo (``key``: its name) under ``seed``."""
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        return {
            "blur_sigma": float(rng.uniform(*self.blur_sigma)),
            "noise_std": float(rng.uniform(*self.noise_std)),
            "jpeg_quality": int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)),
            "noise_seed": int(rng.integers(0, 2**31 - 1)),
        }

    def __call__(self, image: torch.Tensor, seed: int, key: str) -> tuple[torch.Tensor, dict]:
        """``image [1, 3, S, S]`` in ``[-1, 1]`` -> (degraded ``[1, 3, S, S]``, the parameters used)."""
        p = self.params(seed, key)
        size = image.shape[-1]
        x = gaussian_blur(image.float().cpu(), p["blur_sigma"] * size / 256)
        small = max(1, size // self.scale)
        x = area_downsample(x, small)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(p["noise_seed"]))
        x = (x + p["noise_std"] * noise).clamp(-1, 1)
        buffer = io.BytesIO()
        Image.fromarray(to_uint8(x)[0]).save(buffer, format="JPEG", quality=p["jpeg_quality"])
        x = to_tensor(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
        return x, p


def _box_pixels(box: Sequence[float], size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    px = (math.floor(x0 * size), math.floor(y0 * size), math.ceil(x1 * size), math.ceil(y1 * size))
    return px[0], px[1], max(px[2], px[0] + 1), max(px[3], px[1] + 1)


def box_mask(box: Sequence[float], size: int) -> torch.Tensor:
    """A hole over ``box`` (fractions of the side ``x0, y0, x1, y1``) -> ``[1, 1, S, S]``, **1 = known, 0 = hole**.

    >>> m = box_mask((0.25, 0.5, 0.75, 1.0), 4)
    >>> m[0, 0].tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]]
    """
    from .tasks.inpaint import mask_from_boxes

    return mask_from_boxes([_box_pixels(box, size)], size)


def irregular_mask(size: int, seed: int = 0, coverage: float = 0.2) -> torch.Tensor:
    """Seeded free-form brush strokes over the face region -> ``[1, 1, S, S]``, **1 = known, 0 = hole**.

    Strokes (random walks drawn with a round brush, widths 3..7 % of the side) start inside the
    central face area; strokes are added until ``coverage`` of the image is a hole. The same
    ``(size, seed, coverage)`` gives the same mask; other sizes give the same shapes rescaled.
    """
    if not 0 < coverage < 0.9:
        raise ValueError(f"coverage must be in (0, 0.9), got {coverage}")
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(200):
        x, y = rng.uniform(0.3, 0.7, size=2)
        width = rng.uniform(0.03, 0.07)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(3, 8))):
            angle += rng.uniform(-1.2, 1.2)
            step = rng.uniform(0.05, 0.14)
            x = float(np.clip(x + step * math.cos(angle), 0.12, 0.88))
            y = float(np.clip(y + step * math.sin(angle), 0.12, 0.92))
            points.append((x, y))
        px = [(u * size, v * size) for u, v in points]
        radius = max(0.5, width * size / 2)
        draw.line(px, fill=255, width=max(1, round(width * size)))
        for u, v in px:
            draw.ellipse((u - radius, v - radius, u + radius, v + radius), fill=255)
        if (np.asarray(canvas) >= 128).mean() >= coverage:
            break
    hole = np.asarray(canvas) >= 128
    return torch.from_numpy(~hole).float()[None, None]


def bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize of ``[B, 3, h, h]`` to ``size`` (clamped to ``[-1, 1]``)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _nearest(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    if size % images.shape[-1] == 0:
        return F.interpolate(images, scale_factor=size // images.shape[-1], mode="nearest")
    return F.interpolate(images, size=(size, size), mode="nearest")


def fill_holes(images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The no-prior inpainting baseline: OpenCV Telea when ``cv2`` imports, else each channel's mean
    over the known pixels. ``mask [B or 1, 1, H, W]``: 1 = known, 0 = hole. -> (filled images, method name)."""
    mask = mask.to(images).expand(images.shape[0], 1, *images.shape[2:])
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        cv2 = None
    if cv2 is not None:
        out = []
        for img, m in zip(to_uint8(images), mask):
            hole = ((m[0] < 0.5).cpu().numpy() * 255).astype(np.uint8)
            radius = max(3, images.shape[-1] // 64)
            out.append(cv2.inpaint(np.ascontiguousarray(img), hole, radius, cv2.INPAINT_TELEA))
        return to_tensor(out, device=images.device), "OpenCV Telea"
    known = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (images * mask).sum(dim=(2, 3), keepdim=True) / known
    return images * mask + mean * (1 - mask), "mean fill"


# ----------------------------------------------------------------------------------------
# inputs


@dataclass
class Photo:
    name: str  # unique name (file stem)
    path: Path | None
    image: torch.Tensor  # [3, S, S] in [-1, 1], S = max(generator resolution, evaluation resolution)
    degraded: torch.Tensor | None = None  # pairs: the real degraded photo [3, S, S]


@dataclass
class Condition:
    """One degradation applied to every photo: what each method sees and what it is scored against."""

    name: str
    kind: str  # "superres" | "blind" | "inpaint"
    photos: list[str]
    gt: torch.Tensor  # [N, 3, E, E] ground truth at the evaluation resolution
    observed: torch.Tensor  # what the methods restore: [N, 3, h, h] (superres/blind) or [N, 3, R, R] (inpaint)
    shown: torch.Tensor  # [N, 3, E, E] the degraded input as shown in the strips
    full: torch.Tensor | None = None  # inpaint: the photos at the generator's resolution [N, 3, R, R]
    mask: torch.Tensor | None = None  # inpaint: [1, 1, R, R], 1 = known pixel, 0 = hole
    factor: int | None = None  # superres/blind: E / h
    extra: dict = field(default_factory=dict)  # per-condition facts for the report (e.g. blind parameters)


def list_photos(photos) -> list[Path]:
    """Image files of a folder (sorted, not recursive) or the given files."""
    if photos is None:
        return []
    if isinstance(photos, (str, os.PathLike)):
        path = Path(photos)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
            return files
        if path.is_file():
            return [path]
        raise FileNotFoundError(f"held-out photos: {path} is neither a folder nor a file")
    return [p for item in photos for p in list_photos(item)]


def parse_pair(spec) -> tuple[Path, Path]:
    """``"DEGRADED:GT"``, a ``(degraded, gt)`` tuple, or a folder holding ``degraded.png`` and ``gt.png``."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f"a pair is (degraded, gt), got {spec!r}")
        degraded, gt = Path(spec[0]), Path(spec[1])
    elif Path(spec).is_dir():
        degraded, gt = Path(spec) / "degraded.png", Path(spec) / "gt.png"
    elif ":" in str(spec):
        a, b = str(spec).rsplit(":", 1)
        degraded, gt = Path(a), Path(b)
    else:
        raise ValueError(f"--pairs {spec!r}: expected DEGRADED:GT or a folder with degraded.png and gt.png")
    for p in (degraded, gt):
        if not p.is_file():
            raise FileNotFoundError(f"pair {spec}: {p} not found")
    return degraded, gt


def expand_tasks(tasks) -> list[str]:
    """Task groups / condition names (list or comma-separated string) -> condition names, in order."""
    if isinstance(tasks, str):
        tasks = [t for t in tasks.replace(" ", "").split(",") if t]
    out: list[str] = []
    for t in tasks:
        names = TASK_GROUPS.get(t, (t,))
        for name in names:
            if name not in CONDITIONS or name == "real":
                choices = ", ".join([*TASK_GROUPS, *[c for c in CONDITIONS if c != "real"]])
                raise ValueError(f"unknown task {t!r}; choose from {choices} (real pairs come from --pairs)")
            if name not in out:
                out.append(name)
    return out


def parse_betas(betas) -> list[float | None]:
    """``"0,0.03,0.1,0.3"`` or a list -> betas; ``none`` = the affine hull (no dilation limit)."""
    if betas is None:
        return []
    if isinstance(betas, str):
        betas = [b for b in betas.replace(" ", "").split(",") if b]
    out = []
    for b in betas:
        if b is None or (isinstance(b, str) and b.lower() in ("none", "affine")):
            out.append(None)
        else:
            value = float(b)
            if value < 0:
                raise ValueError(f"beta must be >= 0 (or 'none'), got {value}")
            out.append(value)
    return out


# ----------------------------------------------------------------------------------------
# the evaluation


@dataclass
class EvaluationResult:
    out: Path  # the output folder
    report: Path  # report.md
    metrics_path: Path  # metrics.json
    metrics: dict  # the content of metrics.json
    strips: list[Path]  # every strip written


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


class _Evaluation:
    """State of one run (kept internal: :func:`evaluate` is the interface)."""

    def __init__(
        self,
        prior,  # the PersonalPrior (on its device)
        generic,  # the untuned generator, or None (no generic column)
        out: Path,  # output folder
        resolution: int,  # E
        settings: ProjectionSettings,  # the projection budget of both priors
        lpips,  # LPIPS of the projection loss (None: lpips_weight is 0)
        metric_lpips,  # LPIPS of the metric
        lpips_net: str,  # its name, for the functional fallback
        identity: IdentityScorer,  # descriptors + scores
        batch_size: int,  # images projected at once
        seed: int,  # degradations, irregular mask, blind operator noise
        blind: BlindDegradation,  # the synthetic blind degradation
        blind_factor: int,  # blind/real observation down-sampling
        generic_lr: float | None,  # generic W+ learning rate (None: generic_task's default)
    ) -> None:
        self.prior, self.generic, self.out, self.E, self.settings = prior, generic, out, resolution, settings
        self.lpips, self.metric_lpips, self.lpips_net, self.identity = lpips, metric_lpips, lpips_net, identity
        self.batch_size, self.seed, self.blind, self.blind_factor = batch_size, seed, blind, blind_factor
        self.generic_lr = generic_lr
        self.R = int(prior.generator.img_resolution)
        self.device = prior.generator.w_avg.device
        self.baseline_names: dict[str, str] = {}
        self.gt_descriptors: dict[tuple[str, str], np.ndarray | None] = {}
        # what the run accumulates
        self.built: dict[str, Condition] = {}
        self.cond_info: dict[str, dict] = {}
        self.records: list[dict] = []
        self.aggregates: dict[str, dict] = {}
        self.timing: dict[str, dict[str, float]] = {}
        self.strips: dict[str, list[tuple[str, Path]]] = {}
        self.personal: dict[str, tuple[float | None, list[dict]]] = {}  # condition -> (beta, records)

    # ---------------------------------------------------------------- conditions

    def _at_eval(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.E:
            return images
        if images.shape[-1] > self.E:
            return area_downsample(images, self.E)
        return bicubic(images, self.E)

    def _at_gen(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.R:
            return images
        if images.shape[-1] > self.R:
            return area_downsample(images, self.R)
        return bicubic(images, self.R)

    def build(self, name: str, photos: list[Photo]) -> Condition:
        names = [p.name for p in photos]
        full = torch.stack([p.image for p in photos])
        gt = self._at_eval(full)
        if name.startswith("superres-x"):
            factor = int(name.split("x")[-1])
            observed = area_downsample(gt, self.E // factor)
            return Condition(name, "superres", names, gt, observed, _nearest(observed, self.E), factor=factor)
        if name == "blind":
            degraded, params = [], {}
            for p, g in zip(photos, gt):
                d, params[p.name] = self.blind(g[None], self.seed, p.name)
                degraded.append(d)
            degraded = torch.cat(degraded)
            observed = area_downsample(degraded, self.E // self.blind_factor)
            return Condition(
                name, "blind", names, gt, observed, degraded, factor=self.blind_factor, extra={"degradation": params}
            )
        if name == "real":
            degraded = self._at_eval(torch.stack([p.degraded for p in photos]))
            observed = area_downsample(degraded, self.E // self.blind_factor)
            return Condition(name, "blind", names, gt, observed, degraded, factor=self.blind_factor)
        if name.startswith("inpaint-"):
            which = name.split("-", 1)[1]
            if which == "eyes":
                mask = box_mask(EYES_BOX, self.R)
            elif which == "mouth":
                mask = box_mask(MOUTH_BOX, self.R)
            else:
                mask = irregular_mask(self.R, seed=self.seed)
            full_r = self._at_gen(full)
            shown = self._at_eval(full_r * mask)
            hole = float(1 - mask.mean())
            return Condition(
                name,
                "inpaint",
                names,
                gt,
                full_r * mask,
                shown,
                full=full_r,
                mask=mask,
                extra={"hole_fraction": round(hole, 4)},
            )
        raise ValueError(f"unknown condition {name!r}")

    # ---------------------------------------------------------------- methods

    def _task(self, method: str, cond: Condition, beta: float | None):
        from .tasks.inpaint import Inpaint
        from .tasks.superres import SuperResolve

        cls = Inpaint if cond.kind == "inpaint" else SuperResolve
        kwargs: dict[str, Any] = {}
        if cls is SuperResolve:
            kwargs = {"blind": cond.kind == "blind", "seed": self.seed}
            if self.E != self.R:
                kwargs["output_resolution"] = self.E
        if method == "personal":
            return cls(self.prior, settings=self.settings, lpips=self.lpips, beta=beta, **kwargs)
        from .tasks.generic import generic_task

        if self.generic_lr is not None:
            kwargs["w_lr"] = self.generic_lr
        return generic_task(cls, self.generic, settings=self.settings, lpips=self.lpips, **kwargs)

    def restore(self, method: str, cond: Condition, beta: float | None = None, bar=None) -> torch.Tensor:
        """The restored images ``[N, 3, E, E]`` (CPU) of ``method`` on ``cond``."""
        if method == "baseline":
            if cond.kind == "inpaint":
                filled, self.baseline_names["inpaint"] = fill_holes(cond.full, cond.mask)
                out = self._at_eval(filled)
            else:
                self.baseline_names[cond.kind] = "bicubic"
                out = bicubic(cond.observed, self.E)
            if bar is not None:
                bar.update(len(cond.photos))
            return out.cpu()
        task = self._task(method, cond, beta)
        outs = []
        for i in range(0, len(cond.photos), self.batch_size):
            batch = cond.observed[i : i + self.batch_size].to(self.device)
            if cond.kind == "inpaint":
                full = cond.full[i : i + self.batch_size].to(self.device)
                result = task(full, cond.mask.to(self.device))
                images = getattr(result, "blended", result.images)
            else:
                result = task(batch)
                images = result.images
            outs.append(self._at_eval(images.detach()).cpu())
            if bar is not None:
                bar.update(batch.shape[0])
        return torch.cat(outs)

    # ---------------------------------------------------------------- metrics

    def gt_descriptor(self, cond: Condition, index: int):
        key = ("pairs" if cond.name == "real" else "photos", cond.photos[index])
        if key not in self.gt_descriptors:
            self.gt_descriptors[key] = self.identity.describe(to_uint8(cond.gt[index : index + 1])[0])
        return self.gt_descriptors[key]

    def measure(self, cond: Condition, images: torch.Tensor) -> list[dict]:
        """One record per image: LPIPS, PSNR, SSIM and the identity scores."""
        gt = cond.gt.to(images)
        lp = []
        for i in range(0, images.shape[0], self.batch_size):
            x, y = images[i : i + self.batch_size].to(self.device), gt[i : i + self.batch_size].to(self.device)
            lp.append(lpips_distance(x, y, self.metric_lpips, self.lpips_net).cpu())
        lp = torch.cat(lp)
        ps, ss = psnr(images, gt), ssim(images, gt)
        records = []
        for i, name in enumerate(cond.photos):
            score = self.identity.score(to_uint8(images[i : i + 1])[0], self.gt_descriptor(cond, i))
            records.append(
                {
                    "condition": cond.name,
                    "method": None,
                    "photo": name,
                    "lpips": float(lp[i]),
                    "psnr": float(ps[i]),
                    "ssim": float(ss[i]),
                    **{f"id_{k}": v for k, v in score.to_dict().items() if k != "threshold"},
                    "_score": score,
                }
            )
        return records

    # ---------------------------------------------------------------- the run

    def condition(self, name: str, photos: list[Photo]) -> Condition:
        """The condition ``name`` over ``photos``, built once."""
        if name not in self.built:
            cond = self.build(name, photos)
            self.built[name] = cond
            self.cond_info[name] = {
                "kind": cond.kind,
                "description": CONDITIONS[name],
                "photos": cond.photos,
                "factor": cond.factor,
                **cond.extra,
            }
        return self.built[name]

    def run_condition(self, name: str, photos: list[Photo], methods: list[str], beta: float | None, bar) -> None:
        """Restore ``name`` with every method, measure, aggregate, write the strips."""
        cond = self.condition(name, photos)
        results: dict[str, torch.Tensor] = {}
        self.aggregates[name], self.timing[name] = {}, {}
        for method in methods:
            bar.set_description(f"{name} · {method}")
            t0 = time.time()
            images = self.restore(method, cond, beta=beta, bar=bar)
            self.timing[name][method] = round(time.time() - t0, 2)
            t0 = time.time()
            records = self.measure(cond, images)
            self.timing[name][f"{method}_metrics"] = round(time.time() - t0, 2)
            for r in records:
                r["method"] = method
            results[method] = images
            self.records.extend(records)
            a = self.aggregates[name][method] = aggregate(records)
            if method == "personal":
                self.personal[name] = (beta, records)
            log.info(
                "%s · %-8s  ID dist %s  same %s  faces %d/%d  LPIPS %s  PSNR %s  SSIM %s  (%.1fs + %.1fs metrics)",
                name,
                method,
                _pm(a["identity"]["dist_gt"]),
                _share(a["identity"]["same_person_gt"]),
                a["identity"]["faces_found"],
                a["n"],
                _pm(a["lpips"]),
                _pm(a["psnr"], 2),
                _pm(a["ssim"]),
                self.timing[name][method],
                self.timing[name][f"{method}_metrics"],
            )
        first = {"superres": f"input x{cond.factor}", "blind": "degraded", "inpaint": "masked"}[cond.kind]
        labels = [first, *[_method_label(m, self.baseline_names, cond.kind) for m in methods], "ground truth"]
        self.strips[name] = []
        for i, photo in enumerate(cond.photos):
            tiles = [cond.shown[i : i + 1], *[results[m][i : i + 1] for m in methods], cond.gt[i : i + 1]]
            path = write_image(self.out / "strips" / name / f"{photo}.png", make_strip(tiles, labels))
            self.strips[name].append((photo, path))

    def sweep(self, name: str, photos: list[Photo], betas: list, beta: float | None, progress: bool) -> dict:
        """The personal prior on condition ``name`` at each beta; the plot and its points."""
        cond = self.condition(name, photos)
        points = []
        for b in tqdm(betas, desc=f"beta sweep ({name})", disable=not progress):
            cached = self.personal.get(name)
            if cached is not None and cached[0] == b:
                records = cached[1]
            else:
                records = self.measure(cond, self.restore("personal", cond, beta=b))
                for r in records:
                    r["method"] = "personal"
            a = aggregate(records)
            points.append(
                {
                    "beta": b,
                    "lpips": a["lpips"]["mean"],
                    "id_cos_gt": a["identity"]["cos_gt"]["mean"],
                    "id_dist_gt": a["identity"]["dist_gt"]["mean"],
                    "aggregate": a,
                    "records": [{**_public(r), "beta": b} for r in records],
                }
            )
            log.info("beta %s: ID cos %s  LPIPS %s", _beta_text(b), _pm(a["identity"]["cos_gt"]), _pm(a["lpips"]))
        reference = None
        generic = self.aggregates.get(name, {}).get("generic")
        if generic is not None:
            reference = {
                "lpips": generic["lpips"]["mean"],
                "id_cos_gt": generic["identity"]["cos_gt"]["mean"],
                "label": "generic (W+)",
            }
        plot = plot_tradeoff(points, self.out / "beta_sweep.png", reference)
        return {
            "condition": name,
            "points": points,
            "plot": plot.relative_to(self.out).as_posix(),
            "generic": reference,
        }

    def ground_truth_identity(self) -> dict[str, dict]:
        """Each ground truth's identity against the album centre (held-out photos, then pairs)."""
        out = {}
        held = next((c for n, c in self.built.items() if n != "real"), None)
        for cond, suffix in ((held, ""), (self.built.get("real"), " (pair)")):
            if cond is not None:
                for i, name in enumerate(cond.photos):
                    out[name + suffix] = self.identity.score_descriptor(self.gt_descriptor(cond, i)).to_dict()
        return out


def aggregate(records: list[dict]) -> dict:
    """Mean/std/min/max/n of LPIPS, PSNR, SSIM and the identity summary over a method's records
    (records as :meth:`_Evaluation.measure` makes them, or as ``metrics.json`` stores them)."""
    return {
        "n": len(records),
        "lpips": stats([r["lpips"] for r in records]),
        "psnr": stats([r["psnr"] for r in records]),
        "ssim": stats([r["ssim"] for r in records]),
        "identity": summarize([r["_score"] if "_score" in r else _score_of(r) for r in records]),
    }


def _score_of(r: dict) -> IdentityScore:
    def value(key: str) -> float:
        return math.nan if r.get(key) is None else float(r[key])

    return IdentityScore(
        found=bool(r["id_found"]),
        cos_gt=value("id_cos_gt"),
        dist_gt=value("id_dist_gt"),
        cos_centre=value("id_cos_centre"),
        dist_centre=value("id_dist_centre"),
    )


# ----------------------------------------------------------------------------------------
# images


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def make_strip(tiles: list[torch.Tensor], labels: list[str], min_tile: int = 128) -> np.ndarray:
    """Tiles ``[1, 3, S, S]`` side by side under a label band -> uint8 ``[H, W, 3]`` (tiles below
    ``min_tile`` px are enlarged with nearest-neighbour)."""
    size = tiles[0].shape[-1]
    scale = max(1, -(-min_tile // size))
    side = size * scale
    band, pad = max(14, side // 12), 2
    canvas = Image.new("RGB", (len(tiles) * (side + pad) + pad, side + band + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, band - 4))
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        img = Image.fromarray(to_uint8(tile)[0])
        if scale > 1:
            img = img.resize((side, side), Image.Resampling.NEAREST)
        x = pad + k * (side + pad)
        canvas.paste(img, (x, band + pad))
        draw.text((x + 2, 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def plot_tradeoff(points: list[dict], path: Path, reference: dict | None = None) -> Path:
    """The beta sweep: identity (cosine similarity to the ground truth, up = better) against LPIPS
    (left = better), one point per beta in order. matplotlib when it imports, else a PIL drawing."""
    xs = [p["lpips"] for p in points]
    ys = [p["id_cos_gt"] for p in points]
    labels = [f"beta={_beta_text(p['beta'])}" for p in points]
    ref = None
    if reference is not None and reference.get("lpips") is not None and reference.get("id_cos_gt") is not None:
        ref = (reference["lpips"], reference["id_cos_gt"], reference.get("label", "generic"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
        ok = [(x, y, lab) for x, y, lab in zip(xs, ys, labels) if x is not None and y is not None]
        ax.plot([p[0] for p in ok], [p[1] for p in ok], "o-", color="tab:blue", label="personal prior")
        for x, y, lab in ok:
            ax.annotate(lab, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if ref is not None:
            ax.plot([ref[0]], [ref[1]], "s", color="tab:red", label=ref[2])
        ax.set_xlabel("LPIPS to ground truth (lower is better)")
        ax.set_ylabel("identity: cosine similarity to ground truth")
        ax.set_title("beta sweep: identity vs. LPIPS")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return write_bytes_atomic(path, buffer.getvalue())
    return write_image(path, _pil_plot(xs, ys, labels, ref))


def _pil_plot(xs, ys, labels, ref, width: int = 680, height: int = 500) -> np.ndarray:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    left, right, top, bottom = 95, 110, 45, 60
    pts = [(x, y, lab) for x, y, lab in zip(xs, ys, labels) if x is not None and y is not None]
    allx = [p[0] for p in pts] + ([ref[0]] if ref else [])
    ally = [p[1] for p in pts] + ([ref[1]] if ref else [])
    draw.text((left, 12), "beta sweep: identity vs. LPIPS", fill=(0, 0, 0), font=font)
    draw.rectangle((left, top, width - right, height - bottom), outline=(0, 0, 0))
    ylabel = "identity: cosine similarity to ground truth (higher is better)"
    text = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4, 16), (255, 255, 255))
    ImageDraw.Draw(text).text((2, 1), ylabel, fill=(0, 0, 0), font=small)
    text = text.rotate(90, expand=True)
    img.paste(text, (4, max(0, top + (height - top - bottom - text.height) // 2)))
    draw.text((left + 60, height - 24), "LPIPS to ground truth (lower is better)", fill=(0, 0, 0), font=small)
    if not allx:
        draw.text((left + 10, top + 10), "no data (no face found)", fill=(200, 0, 0), font=font)
        return np.asarray(img)

    def span(values):
        lo, hi = min(values), max(values)
        margin = (hi - lo) * 0.1 or max(abs(hi) * 0.01, 1e-3)
        return lo - margin, hi + margin

    def digits(lo, hi):
        return max(2, math.ceil(-math.log10((hi - lo) / 4)) + 1)

    (x0, x1), (y0, y1) = span(allx), span(ally)
    dx, dy = digits(x0, x1), digits(y0, y1)

    def to_px(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (width - left - right),
            height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom),
        )

    for k in range(5):  # ticks
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, _ = to_px(xv, y0)
        _, py = to_px(x0, yv)
        draw.line((px, height - bottom, px, height - bottom + 5), fill=(0, 0, 0))
        draw.text((px - 18, height - bottom + 8), f"{xv:.{dx}f}", fill=(0, 0, 0), font=small)
        draw.line((left - 5, py, left, py), fill=(0, 0, 0))
        label = f"{yv:.{dy}f}"
        draw.text((left - 8 - draw.textlength(label, font=small), py - 7), label, fill=(0, 0, 0), font=small)
    line = [to_px(x, y) for x, y, _ in pts]
    if len(line) > 1:
        draw.line(line, fill=(31, 119, 180), width=2)
    placed: list[tuple[float, float]] = []
    for (px, py), (_, _, lab) in zip(line, pts):
        draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=(31, 119, 180))
        ty = py - 16
        while any(abs(px - qx) < 60 and abs(ty - qy) < 14 for qx, qy in placed):  # coinciding points: stack labels
            ty += 14
        placed.append((px, ty))
        draw.text((px + 6, ty), lab, fill=(0, 0, 0), font=small)
    if ref is not None:
        px, py = to_px(ref[0], ref[1])
        draw.rectangle((px - 4, py - 4, px + 4, py + 4), fill=(214, 39, 40))
        draw.text((px + 6, py + 2), ref[2], fill=(214, 39, 40), font=small)
    return np.asarray(img)


def _beta_text(beta) -> str:
    return "none (affine)" if beta is None else f"{beta:g}"


# ----------------------------------------------------------------------------------------
# report


def _pm(s: dict, digits: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "–"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _share(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def _method_label(method: str, baseline_names: dict, kind: str) -> str:
    if method == "personal":
        return "personal (P+)"
    if method == "generic":
        return "generic (W+)"
    return f"baseline ({baseline_names.get(kind, 'bicubic' if kind != 'inpaint' else 'fill')})"


def _condition_table(agg: dict, methods: list[str], baseline_names: dict, kind: str, has_centre: bool) -> list[str]:
    head = ["method", "ID cos ↑ (gt)", "ID dist ↓ (gt)", "same person (gt)"]
    if has_centre:
        head += ["ID dist ↓ (centre)", "same person (centre)"]
    head += ["LPIPS ↓", "PSNR ↑ (dB)", "SSIM ↑", "faces found", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        a = agg.get(m)
        if a is None:
            continue
        i = a["identity"]
        row = [_method_label(m, baseline_names, kind), _pm(i["cos_gt"]), _pm(i["dist_gt"]), _share(i["same_person_gt"])]
        if has_centre:
            row += [_pm(i["dist_centre"]), _share(i["same_person_centre"])]
        row += [_pm(a["lpips"]), _pm(a["psnr"], 2), _pm(a["ssim"]), f"{i['faces_found']}/{i['n']}", str(a["n"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_report(out: Path, metrics: dict, strips: dict[str, list[tuple[str, Path]]], max_strips: int) -> Path:
    s = metrics["settings"]
    methods = metrics["methods"]
    has_centre = metrics["identity"]["centre"] is not None
    baseline_names = metrics.get("baselines", {})
    lines = [
        "# MyStyle evaluation",
        "",
        f"Prior: `{s['prior']}` · generic prior: {metrics['generic_note']} · {s['photos']} held-out photo(s)"
        + (f", {s['pairs']} real pair(s)" if s["pairs"] else ""),
        "",
        f"Evaluation resolution {s['resolution']} px · projection: {s['steps']} steps"
        + (f" (patience {s['patience']})" if s["patience"] else "")
        + f", lr {s['lr']:g}, loss at {s['loss_resolution'] or 'input'} px · personal beta {_beta_text(s['beta'])}"
        + f" · metric LPIPS: {s['lpips_net']} · seed {s['seed']} · device {s['device']}",
        "",
        (
            f"Identity: {metrics['identity']['scorer']}; same person = distance < {metrics['identity']['threshold']}; "
            "a result without a detected face is a failure (counted as not the same person). "
            f"Centre: {metrics['identity']['centre_note']}."
        ),
        "",
        (
            "Values are mean ± std (sample) over the photos; identity similarities/distances are over the results "
            "with a face (see 'faces found')."
        ),
        "",
    ]
    if metrics.get("skipped_photos"):
        lines += ["Skipped inputs: " + "; ".join(f"`{k}` ({v})" for k, v in metrics["skipped_photos"].items()), ""]
    for note in metrics.get("notes", []):
        lines += [f"> {note}", ""]
    # summary
    conds = list(metrics["aggregates"])
    if conds:
        lines += ["## Summary: identity distance to the ground truth ↓ · LPIPS ↓", ""]
        lines += [
            "| condition | " + " | ".join(_method_label(m, baseline_names, "").split(" (")[0] for m in methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        for c in conds:
            cells = []
            for m in methods:
                a = metrics["aggregates"][c].get(m)
                cells.append("–" if a is None else f"{_pm(a['identity']['dist_gt'])} · {_pm(a['lpips'])}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
    for c in conds:
        kind = metrics["conditions"][c]["kind"]
        lines += [f"## {c}", "", metrics["conditions"][c]["description"] + ".", ""]
        lines += _condition_table(metrics["aggregates"][c], methods, baseline_names, kind, has_centre)
        lines.append("")
        shown = strips.get(c, [])[:max_strips]
        if shown:
            order = ["degraded", *[_method_label(m, baseline_names, kind) for m in methods], "ground truth"]
            lines += [f"Strips: {' | '.join(order)}", ""]
            for name, path in shown:
                lines += [f"![{c} {name}]({path.relative_to(out).as_posix()})", ""]
            if len(strips.get(c, [])) > max_strips:
                lines += [f"({len(strips[c]) - max_strips} more in `strips/{c}/`)", ""]
    gts = metrics.get("ground_truth_identity")
    if gts and has_centre:
        lines += [
            "## Held-out ground truths against the album centre",
            "",
            "How far the person's own unseen photos lie from the centre (a reference for the 'centre' columns).",
            "",
            "| photo | face found | ID dist (centre) | same person |",
            "|---|---|---|---|",
        ]
        for name, g in gts.items():
            d = g.get("dist_centre")
            lines.append(
                f"| {name} | {'yes' if g['found'] else 'no'} | {'–' if d is None else f'{d:.3f}'} | "
                f"{'yes' if g.get('same_centre') else 'no'} |"
            )
        lines.append("")
    sweep = metrics.get("beta_sweep")
    if sweep and sweep.get("points"):
        lines += [
            f"## Beta sweep ({sweep['condition']}, personal prior)",
            "",
            "A larger beta dilates the person's space: closer to the input (LPIPS) at the cost of identity.",
            "",
            "| beta | ID cos ↑ (gt) | ID dist ↓ (gt) | same person (gt) | LPIPS ↓ | PSNR ↑ | SSIM ↑ | faces found |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in sweep["points"]:
            a = p["aggregate"]
            i = a["identity"]
            lines.append(
                f"| {_beta_text(p['beta'])} | {_pm(i['cos_gt'])} | {_pm(i['dist_gt'])} | {_share(i['same_person_gt'])} | "
                f"{_pm(a['lpips'])} | {_pm(a['psnr'], 2)} | {_pm(a['ssim'])} | {i['faces_found']}/{i['n']} |"
            )
        lines.append("")
        if sweep.get("plot"):
            lines += [f"![beta sweep]({sweep['plot']})", ""]
    lines += ["Every per-image number and the settings are in `metrics.json`.", ""]
    return write_bytes_atomic(out / "report.md", "\n".join(lines).encode())


# ----------------------------------------------------------------------------------------
# W&B


def make_wandb_logger(out: Path, name: str, project: str = "mystyle-pl"):
    """An :class:`~mystyle_pl.tuning.loggers.AutoWandbLogger` writing under ``out`` (offline unless a key is set)."""
    from .tuning.loggers import AutoWandbLogger

    return AutoWandbLogger(project=project, name=name, save_dir=str(out), job_type="evaluate")


def log_to_wandb(logger, metrics: dict, strips: dict[str, list[tuple[str, Path]]], out: Path, max_strips: int) -> None:
    """The per-condition tables, the sweep and the strips as W&B tables and images."""
    columns = [
        "condition",
        "method",
        "n",
        "faces_found",
        "id_cos_gt",
        "id_dist_gt",
        "same_person_gt",
        "id_dist_centre",
        "same_person_centre",
        "lpips",
        "psnr",
        "ssim",
    ]
    rows = []
    for c, per in metrics["aggregates"].items():
        for m, a in per.items():
            i = a["identity"]
            rows.append(
                [
                    c,
                    m,
                    a["n"],
                    i["faces_found"],
                    i["cos_gt"]["mean"],
                    i["dist_gt"]["mean"],
                    i["same_person_gt"],
                    i["dist_centre"]["mean"],
                    i["same_person_centre"],
                    a["lpips"]["mean"],
                    a["psnr"]["mean"],
                    a["ssim"]["mean"],
                ]
            )
    logger.log_table("evaluate/summary", columns=columns, data=_finite(rows))
    record_cols = [
        "condition",
        "method",
        "photo",
        "lpips",
        "psnr",
        "ssim",
        "id_found",
        "id_cos_gt",
        "id_dist_gt",
        "id_cos_centre",
        "id_dist_centre",
    ]
    logger.log_table(
        "evaluate/records",
        columns=record_cols,
        data=_finite([[r.get(k) for k in record_cols] for r in metrics["records"]]),
    )
    sweep = metrics.get("beta_sweep")
    if sweep and sweep.get("points"):
        logger.log_table(
            "evaluate/beta_sweep",
            columns=["beta", "id_cos_gt", "id_dist_gt", "lpips"],
            data=_finite([[p["beta"], p["id_cos_gt"], p["id_dist_gt"], p["lpips"]] for p in sweep["points"]]),
        )
        if sweep.get("plot"):
            logger.log_image(
                "evaluate/beta_sweep_plot", images=[np.asarray(Image.open(out / sweep["plot"]).convert("RGB"))]
            )
    for c, items in strips.items():
        items = items[:max_strips]
        if items:
            logger.log_image(
                f"evaluate/strips/{c}",
                images=[np.asarray(Image.open(p).convert("RGB")) for _, p in items],
                caption=[n for n, _ in items],
            )


# ----------------------------------------------------------------------------------------
# entry point


def _load_photos(files: list[Path], size: int, align: str, skipped: dict) -> list[Photo]:
    from .tasks.pasteback import NoFaceError, load_task_photo

    stems = [f.stem for f in files]
    photos, used = [], set()
    for f in tqdm(files, desc="loading photos", leave=False, disable=len(files) < 4):
        try:
            tp = load_task_photo(f, size, align=align)
        except (NoFaceError, ValueError, OSError) as e:
            log.warning("skipping %s: %s", f, e)
            skipped[str(f)] = str(e).splitlines()[0]
            continue
        # files of the same name in different folders (e.g. */gt.png) are told apart by their folder
        base = f"{f.parent.name}_{f.stem}" if stems.count(f.stem) > 1 else f.stem
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        photos.append(Photo(name=name, path=f, image=tp.image.float().cpu()))
    return photos


def _load_pairs(pairs, size: int, skipped: dict) -> list[Photo]:
    from .tasks.pasteback import NoFaceError, load_task_photo

    out, used = [], set()
    for spec in pairs:
        degraded_path, gt_path = parse_pair(spec)
        try:  # both must be aligned crops of the same framing (face detection on the degraded one is unreliable)
            gt = load_task_photo(gt_path, size, align="never")
            degraded = load_task_photo(degraded_path, size, align="never")
        except (NoFaceError, ValueError, OSError) as e:
            log.warning("skipping pair %s: %s", spec, e)
            skipped[str(spec)] = str(e).splitlines()[0]
            continue
        name = gt_path.parent.name if gt_path.stem == "gt" else gt_path.stem
        k, base = 2, name
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out.append(Photo(name=name, path=gt_path, image=gt.image.float().cpu(), degraded=degraded.image.float().cpu()))
    return out


def _resolve_generic(prior, generic, device):
    """(generator or None, a note for the report)."""
    from .generators import Generator

    if isinstance(generic, Generator):
        return _compatible(generic.to(device).eval(), prior, "the given generator")
    source = generic if generic is not None else prior.info.get("generator_source")
    if not source:
        return None, "none (the prior names no generator_source; pass --generic GENERATOR)"
    from . import load_generator

    try:
        g = load_generator(source).to(device).eval()
    except Exception as e:  # noqa: BLE001 - any failure leaves the column out, with the reason in the report
        log.warning("generic prior %s unavailable: %s", source, e)
        return None, f"none ({source} could not be loaded: {str(e).splitlines()[0]})"
    return _compatible(g, prior, f"`{source}` (untuned)")


def _compatible(g, prior, note: str):
    p = prior.generator
    if (g.num_ws, g.w_dim, int(g.img_resolution)) != (p.num_ws, p.w_dim, int(p.img_resolution)):
        return None, (
            f"none (the generic generator is {g.img_resolution} px, num_ws={g.num_ws}, w_dim={g.w_dim}; "
            f"the prior's is {p.img_resolution} px, num_ws={p.num_ws}, w_dim={p.w_dim})"
        )
    return g, note


def evaluate(
    prior,  # a PersonalPrior or the path of a prior folder
    photos=None,  # held-out photos: a folder, a file, or a list of them (aligned crops or raw photos)
    tasks=DEFAULT_TASKS,  # conditions or groups (superres, inpaint, blind), list or "a,b"
    out: str | os.PathLike = "evaluation",  # output folder (report.md, metrics.json, strips/, beta_sweep.png)
    pairs: Sequence = (),  # real degraded photos with a ground truth: "DEGRADED:GT", (degraded, gt) or a folder
    methods: Sequence[str] | str = METHODS,  # any of personal, generic, baseline (list or "a,b")
    generic=None,  # the untuned generator (Generator, asset name or path); None = prior.info["generator_source"]
    resolution: int | None = None,  # evaluation resolution E (px): ground truth, metrics, SR factors; must divide
    # the generator's resolution R; None = min(256, R)
    steps: int = 200,  # projection steps (both priors)
    patience: int | None = None,  # early stopping patience in steps (both priors); None = the full budget
    lr: float | None = None,  # personal projection learning rate; None = ProjectionSettings' default (official 5e-3)
    generic_lr: float | None = None,  # generic W+ learning rate; None = generic_task's default
    lr_rampdown: float = 0.0,  # cosine lr decay over this final fraction of the steps (both priors); 0 = constant (official)
    loss_resolution: int | None = None,  # projection loss resolution (px); None = E; 0 = the observation's
    beta: float | None = DEFAULT_BETA,  # the personal space's dilation for the main comparison
    betas=DEFAULT_BETAS,  # beta sweep values (None/empty = no sweep)
    sweep_task: str = "superres-x16",  # the condition the sweep runs on
    seed: int = 0,  # seeds the blind degradations, the irregular mask and the blind operator's noise
    blind: BlindDegradation | None = None,  # the synthetic blind degradation; None = BlindDegradation()
    blind_factor: int = 8,  # blind/real inputs are restored from a copy area-down-sampled by this factor
    batch_size: int = 4,  # images projected at once
    max_photos: int | None = None,  # use at most this many held-out photos (sorted by name)
    album_refs=None,  # reference photos for the identity centre when the prior's album manifest is unreachable
    identity: IdentityScorer | None = None,  # face descriptor + scoring; None = dlib through FaceAnalyzer
    lpips=None,  # LPIPS module of the projection loss; None = LPIPS("alex") (official)
    metric_lpips=None,  # LPIPS module of the metric; None = the pretrained lpips_net
    lpips_net: str = "vgg",  # the metric's LPIPS trunk when metric_lpips is None (the loss uses AlexNet)
    align: str = "auto",  # held-out photos: "auto" (square = aligned crop), "always", "never"
    settings: ProjectionSettings | None = None,  # base projection settings (steps/patience/lr above override)
    device: str | torch.device | None = None,  # None = CUDA when available, else CPU
    logger=None,  # W&B-like logger (log_table, log_image); "wandb" = an offline-unless-key AutoWandbLogger
    progress: bool = True,  # progress bars
    max_strips: int = 6,  # strips shown per condition in report.md (all are written)
) -> EvaluationResult:
    """Run the evaluation and write ``report.md``, ``metrics.json``, ``strips/`` and the sweep plot into ``out``."""
    from .prior import PersonalPrior

    t_start = time.time()
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    prior_dir = None
    if not isinstance(prior, PersonalPrior):
        prior_dir = Path(prior)
        prior = PersonalPrior.load(prior_dir, device=device)
    else:
        prior.to(device)
    R = int(prior.generator.img_resolution)
    E = int(resolution) if resolution else min(256, R)
    methods, conditions, betas = _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor)
    out = Path(out)
    files, pair_specs = list_photos(photos), list(pairs or [])
    if not files and not pair_specs and prior_dir is not None:
        files = _held_out_from_prior(prior)
    _check_out(out, files, prior_dir)
    files = files[: int(max_photos)] if max_photos is not None else files

    overrides: dict[str, Any] = {
        "steps": int(steps),
        "patience": patience,
        "plus": True,
        "progress": False,
        "resolution": E if loss_resolution is None else int(loss_resolution),
        "lr_rampdown": float(lr_rampdown),
    }
    if lr is not None:
        overrides["lr"] = float(lr)
    settings = ProjectionSettings(**{**(settings or ProjectionSettings()).__dict__, **overrides})
    if lpips is None and settings.lpips_weight > 0 and ("personal" in methods or "generic" in methods):
        from .losses import LPIPS

        lpips = LPIPS("alex")
    lpips = lpips.to(device) if lpips is not None else None
    if metric_lpips is None:
        from .losses import LPIPS

        metric_lpips = LPIPS(lpips_net)
    metric_lpips = metric_lpips.to(device)
    min_size = int(getattr(metric_lpips, "min_input_size", 1))
    if min_size > E:
        raise ValueError(f"resolution {E} is below the LPIPS metric's smallest input ({min_size} px)")
    identity = identity if identity is not None else IdentityScorer()
    notes: list[str] = []
    centre_note = "given"
    if identity.centre is None:
        identity.centre, centre_note = album_centre(prior, refs=album_refs, scorer=identity, prior_dir=prior_dir)
    log.info("identity centre: %s", centre_note)

    generic_g, generic_note = None, "not evaluated"
    if "generic" in methods:
        generic_g, generic_note = _resolve_generic(prior, generic, device)
        if generic_g is None:
            methods = [m for m in methods if m != "generic"]
            notes.append(f"The generic prior is left out: {generic_note}.")

    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    held = _load_photos(files, max(R, E), align, skipped)
    pair_photos = _load_pairs(pair_specs, max(R, E), skipped)
    if not held and not pair_photos:
        raise ValueError("nothing to evaluate: no usable held-out photo (--photos) and no pair (--pairs)")
    trained = {Path(n).stem for n in prior.names}
    overlap = [p.name for p in held if p.name in trained]
    if overlap:
        notes.append(
            f"{len(overlap)} 'held-out' photo(s) share a name with the prior's training photos "
            f"({', '.join(overlap[:5])}): they may not be held out."
        )
        log.warning(notes[-1])
    if not held:
        conditions, betas = [], []

    run = _Evaluation(
        prior=prior,
        generic=generic_g,
        out=out,
        resolution=E,
        settings=settings,
        lpips=lpips,
        metric_lpips=metric_lpips,
        lpips_net=lpips_net,
        identity=identity,
        batch_size=max(1, int(batch_size)),
        seed=int(seed),
        blind=blind if blind is not None else BlindDegradation(),
        blind_factor=int(blind_factor),
        generic_lr=generic_lr,
    )
    plan = [(c, held) for c in conditions] + ([("real", pair_photos)] if pair_photos else [])
    log.info(
        "evaluating %d photo(s)%s on %s with %s (E=%d px, %d steps, device %s)",
        len(held),
        f" + {len(pair_photos)} pair(s)" if pair_photos else "",
        ", ".join(c for c, _ in plan),
        ", ".join(methods),
        E,
        settings.steps,
        device,
    )
    bar = tqdm(total=sum(len(ph) for _, ph in plan) * len(methods), desc="evaluating", unit="img", disable=not progress)
    for name, ph in plan:
        run.run_condition(name, ph, methods, beta, bar)
    bar.close()
    sweep = run.sweep(sweep_task, held, betas, beta, progress) if betas and held else None

    gt_identity = run.ground_truth_identity()
    missing_gt = [n for n, g in gt_identity.items() if not g["found"]]
    if missing_gt:
        notes.append(
            f"No face found in the ground truth of {', '.join(missing_gt)}: identity to the ground truth "
            "is unavailable there and counts as a failure for every method."
        )
    metrics = {
        "format": FORMAT,
        "version": VERSION,
        "settings": {
            "prior": str(prior_dir) if prior_dir is not None else "(in memory)",
            "photos": len(held),
            "pairs": len(pair_photos),
            "resolution": E,
            "generator_resolution": R,
            "steps": settings.steps,
            "patience": settings.patience,
            "lr_rampdown": settings.lr_rampdown,
            "lr": settings.lr,
            "generic_lr": generic_lr,
            "loss_resolution": settings.resolution,
            "beta": beta,
            "betas": betas,
            "sweep_task": sweep_task if betas else None,
            "seed": int(seed),
            "blind": run.blind.__dict__,
            "blind_factor": int(blind_factor),
            "batch_size": int(batch_size),
            "lpips_net": getattr(metric_lpips, "net", lpips_net),
            "device": str(device),
            "align": align,
            "conditions": [c for c, _ in plan],
            "methods": methods,
            "eye_box": EYES_BOX,
            "mouth_box": MOUTH_BOX,
        },
        "methods": methods,
        "generic_note": generic_note,
        "baselines": dict(run.baseline_names),
        "identity": {
            "scorer": identity.name,
            "threshold": identity.threshold,
            "centre": None if identity.centre is None else [round(float(v), 6) for v in identity.centre],
            "centre_note": centre_note,
        },
        "conditions": run.cond_info,
        "aggregates": run.aggregates,
        "records": [_public(r) for r in run.records],
        "ground_truth_identity": gt_identity,
        "beta_sweep": sweep,
        "skipped_photos": skipped,
        "notes": notes,
        "timing_s": {**run.timing, "total": round(time.time() - t_start, 2)},
    }
    metrics = _finite(metrics)
    metrics_path = write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=1) + "\n").encode())
    report = write_report(out, metrics, run.strips, max_strips)
    if logger is not None:
        own = isinstance(logger, str)
        if own:
            if logger != "wandb":
                raise ValueError(f"logger must be a logger object or 'wandb', got {logger!r}")
            logger = make_wandb_logger(out, name=f"evaluate-{prior_dir.name if prior_dir else 'prior'}")
        log_to_wandb(logger, metrics, run.strips, out, max_strips)
        if own:
            logger.experiment.finish()
    log.info("report: %s (%.0fs)", report, time.time() - t_start)
    strips = [p for items in run.strips.values() for _, p in items]
    return EvaluationResult(out=out, report=report, metrics_path=metrics_path, metrics=metrics, strips=strips)


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor):
    """Validated ``(methods, conditions, betas)``; a ``ValueError`` naming the option otherwise."""
    if E > R or R % E != 0:
        raise ValueError(f"resolution {E} must divide the generator's resolution {R} (e.g. {min(256, R)})")
    requested = [m for m in methods.replace(" ", "").split(",") if m] if isinstance(methods, str) else list(methods)
    bad = [m for m in requested if m not in METHODS]
    if bad or not requested:
        raise ValueError(f"unknown method(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METHODS)}")
    conditions = expand_tasks(tasks)
    betas = parse_betas(betas)
    if betas and (sweep_task not in CONDITIONS or sweep_task == "real"):
        raise ValueError(f"sweep_task must be one of {', '.join(c for c in CONDITIONS if c != 'real')}")
    for name in [*conditions, sweep_task if betas else ""]:
        if name.startswith("superres-x") and E % int(name.split("x")[-1]):
            raise ValueError(f"{name}: the evaluation resolution {E} is not divisible by {name.split('x')[-1]}")
    if blind_factor < 2 or E % blind_factor:
        raise ValueError(f"blind_factor {blind_factor} must be >= 2 and divide the evaluation resolution {E}")
    return [m for m in METHODS if m in requested], conditions, betas


def _check_out(out: Path, files: list[Path], prior_dir: Path | None) -> None:
    """The output folder must lie outside the photos' folders and the prior (never write into inputs)."""
    target = out.resolve()
    for folder in sorted({f.parent.resolve() for f in files}):
        if target == folder or folder in target.parents:
            raise ValueError(f"--out {out} is inside the photos' folder {folder}; choose another output folder")
    if prior_dir is not None and (target == prior_dir.resolve() or prior_dir.resolve() in target.parents):
        raise ValueError(f"--out {out} is inside the prior folder {prior_dir}; choose another output folder")


def _held_out_from_prior(prior) -> list[Path]:
    """The prior's held-out album photos (``info["held_out"]`` under ``info["album"]/images``), if reachable."""
    album, names = prior.info.get("album"), prior.info.get("held_out") or []
    if not album or not names:
        return []
    folder = Path(album) / "images"
    files = [folder / n for n in names if (folder / n).is_file()]
    if files:
        log.info("no --photos given: using the prior's %d held-out album photo(s) from %s", len(files), folder)
    return files
