"""Inpainting: ``D`` = masking. The hole is filled by the projection of the known pixels into the
person's space, then the result is blended into the input with a seam feathered *inside* the hole
(pixels outside the hole are the input's, exactly).

Masks follow the project convention: ``[B, 1, H, W]``, **1 = known pixel, 0 = hole**. On disk (or
as a PIL image / uint8 array) a mask is an image where **white = hole** (black = known), read by
the project's one mask reader, :func:`mystyle_pl.data.io.read_mask` (transparency and colour
masks: see its rules), see :func:`mask_from_png`; on the command line holes are boxes
``x0,y0,x1,y1`` in pixels (``x1, y1`` exclusive), see :func:`mask_from_boxes`; :func:`as_mask`
takes any of these. A mask that leaves less than a quarter of the face known (:func:`face_known_fraction`)
is used, with an :class:`~mystyle_pl.data.io.InputWarning`: the usual cause is a mask of the
wrong polarity.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.align import face_mask
from ..data.io import InputWarning, read_mask
from .base import Batch, Output, ProjectingTask, check_images
from .consistency import consistency_psnr
from .projection import ProjectionResult


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def mask_from_png(
    path: str | os.PathLike | Any, size: int | Sequence[int], resize: bool = False, name: str | None = None
) -> torch.Tensor:
    """Read a mask image (**white = hole**, black = known; grey >= 128 counts as white; transparency
    and colour masks as :func:`~mystyle_pl.data.io.read_mask` says) as a known-mask ``[1, 1, H, W]``
    float (**1 = known pixel, 0 = hole**).

    ``path``: a file, a PIL image or a uint8 array; ``size``: the image's ``H`` (square) or
    ``(H, W)``. A mask of another size is an error naming the file, unless ``resize``
    (nearest-neighbour). Raises :class:`~mystyle_pl.data.io.ImageReadError` (a ``ValueError``)
    naming the mask for an unreadable or ambiguous mask.
    """
    h, w = _size_hw(size)
    label = name or (f"mask {path}" if isinstance(path, (str, os.PathLike)) else "mask")
    known = read_mask(path, name=label)
    mh, mw = known.shape[-2:]
    if (mh, mw) != (h, w):
        if not resize:
            raise ValueError(f"{label} is {mw}x{mh} (WxH), the image is {w}x{h}: mask size mismatch")
        known = F.interpolate(known, size=(h, w), mode="nearest")
    return known


def as_mask(mask: Any, size: int | Sequence[int], name: str = "mask") -> torch.Tensor:
    """Any mask a user may give -> known-mask ``[B or 1, 1, H, W]`` (**1 = known pixel, 0 = hole**).

    ``mask``: a tensor ``[B or 1, 1, H, W]`` / ``[H, W]`` with 1 = known pixel, 0 = hole (returned
    as it is, checked later by :func:`check_mask`); an image file, PIL image or uint8 array with
    **white = hole** (:func:`mask_from_png`); or boxes ``[(x0, y0, x1, y1), ...]`` marking holes
    (:func:`mask_from_boxes`). ``size``: the images' ``H`` or ``(H, W)``.
    """
    if isinstance(mask, torch.Tensor):
        return mask
    if isinstance(mask, (list, tuple)):
        return mask_from_boxes(mask, size)
    if isinstance(mask, (str, os.PathLike, np.ndarray, Image.Image)):
        return mask_from_png(mask, size, name=None if isinstance(mask, (str, os.PathLike)) else name)
    raise ValueError(
        f"{name}: expected an image file, PIL image or uint8 array (white = hole), boxes [(x0, y0, x1, y1), ...] "
        f"(holes) or a tensor [B, 1, H, W] (1 = known pixel, 0 = hole), got {type(mask).__name__}"
    )


def mask_from_boxes(boxes: Sequence[Sequence[int] | str], size: int | Sequence[int]) -> torch.Tensor:
    """Holes from boxes ``(x0, y0, x1, y1)`` in pixels (``x1, y1`` exclusive; strings ``"x0,y0,x1,y1"``
    accepted) -> known-mask ``[1, 1, H, W]`` float (**1 = known pixel, 0 = hole**)."""
    h, w = _size_hw(size)
    mask = torch.ones(1, 1, h, w)
    if len(boxes) == 0:
        raise ValueError("boxes: no box given (nothing to inpaint)")
    for box in boxes:
        if isinstance(box, str):
            try:
                box = [int(v) for v in box.replace(" ", "").split(",")]
            except ValueError as e:
                raise ValueError(f"box {box!r} must be 'x0,y0,x1,y1' integers") from e
        if len(box) != 4:
            raise ValueError(f"box {box!r} must have 4 values x0, y0, x1, y1")
        x0, y0, x1, y1 = (int(v) for v in box)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"box {(x0, y0, x1, y1)} must satisfy 0 <= x0 < x1 <= W={w} and 0 <= y0 < y1 <= H={h}")
        mask[..., y0:y1, x0:x1] = 0
    return mask


def feathered_hole(mask: torch.Tensor, feather: int) -> torch.Tensor:
    """Blend weight of the generated image ``[B, 1, H, W]`` from a known-mask (**1 = known, 0 = hole**).

    ``d / feather`` clamped to 1, ``d`` = distance (in erosion steps, 1 on the hole's rim) from the
    known region: exactly 0 outside the hole, > 0 everywhere inside it, 1 deeper than ``feather``
    pixels. ``feather = 0``: a hard paste. The image border does not count as known.
    """
    hole = 1.0 - mask.float()
    if feather <= 0:
        return hole
    depth = torch.zeros_like(hole)
    eroded = hole
    for _ in range(int(feather)):
        depth = depth + eroded
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)  # erosion (pads act as hole)
    return (depth / feather).clamp(0, 1) * hole


# A mask leaving less than this fraction of the face known gets an InputWarning (wrong polarity?).
MIN_KNOWN_FACE = 0.25


def face_known_fraction(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of the face that a known-mask ``[B, 1, H, W]`` (**1 = known pixel, 0 = hole**) leaves
    known -> ``[B]`` in ``[0, 1]``. The face is the ellipse of an FFHQ-aligned crop
    (:func:`~mystyle_pl.data.align.face_mask`), scaled to ``H x W``.

    >>> m = torch.ones(1, 1, 64, 64); m[..., 32:, :] = 0
    >>> 0.3 < float(face_known_fraction(m)) < 0.5
    True
    """
    h, w = mask.shape[-2:]
    face = face_mask(max(h, w), feather=0.0, device=mask.device)
    if (h, w) != face.shape[-2:]:
        face = F.interpolate(face, size=(h, w), mode="nearest")
    face = face[0, 0] > 0.5
    return (mask.float()[:, 0] > 0.5)[:, face].float().mean(dim=1)


def check_mask(
    mask: torch.Tensor, images: torch.Tensor, name: str = "mask", labels: Sequence[str] | None = None
) -> torch.Tensor:
    """Validate a known-mask (**1 = known pixel, 0 = hole**) against ``images [B, 3, H, W]``; binarised.

    Raises ``ValueError`` for a wrong shape or size, an empty mask (no hole) or a full one (no
    known pixel); warns (:class:`~mystyle_pl.data.io.InputWarning`) when a mask leaves less than
    :data:`MIN_KNOWN_FACE` of the face known. ``labels``: one name per image for the messages
    (e.g. the input files); default ``"<name> (image i)"``.
    """
    b, _, h, w = images.shape
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [B, 1, H, W] (1 = known pixel, 0 = hole), got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None] if mask.shape[0] != 1 or b == 1 else mask[None]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, b):
        raise ValueError(
            f"{name} must have shape [B={b} or 1, 1, H, W] (1 = known pixel, 0 = hole), got {tuple(mask.shape)}"
        )
    if tuple(mask.shape[2:]) != (h, w):
        raise ValueError(f"{name} is {mask.shape[2]}x{mask.shape[3]} (HxW), the image is {h}x{w}: mask size mismatch")
    mask = (mask.float() > 0.5).float().to(images.device)
    known = mask.expand(b, 1, h, w).flatten(1).sum(dim=1)
    what = [f"{name} ({labels[i]})" if labels is not None and i < len(labels) else f"{name} (image {i})" for i in range(b)]
    for i, k in enumerate(known.tolist()):
        if k == h * w:
            raise ValueError(f"{what[i]} is empty: it marks no hole pixel, nothing to inpaint")
        if k == 0:
            raise ValueError(f"{what[i]} is full: every pixel is a hole, no known pixel to project")
    face_known = face_known_fraction(mask.expand(b, 1, h, w))
    for i, f in enumerate(face_known.tolist()):
        if f < MIN_KNOWN_FACE:
            warnings.warn(
                f"{what[i]} leaves only {f:.0%} of the face known ({1 - f:.0%} of it is hole): is its polarity "
                "inverted? Mask images mark the hole in white (black = known); mask tensors hold 1 = known "
                "pixel, 0 = hole. If you drew the part to keep, invert the mask",
                InputWarning, stacklevel=3,
            )  # fmt: skip
    return mask


def paste_region(mask: torch.Tensor, grow: int | None = None) -> torch.Tensor:
    """Where an inpainted crop goes back into the photo: the hole of ``mask [1, S, S]`` (1 = known,
    0 = hole), grown by ``grow`` px and softened over as many (the blended crop equals the input
    crop around the hole, so the seam falls on unchanged pixels); the photo keeps the rest."""
    grow = max(2, mask.shape[-1] // 64) if grow is None else grow
    hole = 1.0 - mask.float()[None]
    grown = F.max_pool2d(hole, 2 * grow + 1, stride=1, padding=grow)
    return F.avg_pool2d(grown, 2 * grow + 1, stride=1, padding=grow, count_include_pad=False)[0].clamp(0, 1)


def hole_image(mask: torch.Tensor) -> torch.Tensor:
    """A known-mask ``[1, H, W]`` (1 = known, 0 = hole) as an image ``[3, H, W]``: white = hole."""
    return (1.0 - 2.0 * mask.float()).expand(3, *mask.shape[-2:])


@dataclass
class InpaintResult(ProjectionResult):
    """``images`` is G(ws), the projection undegraded; ``blended`` is what to show."""

    blended: torch.Tensor | None = None  # [B, 3, R, R] input outside the hole, G(ws) inside, feathered seam
    mask: torch.Tensor | None = None  # [B or 1, 1, R, R] the known-mask used (1 = known pixel, 0 = hole)
    alpha: torch.Tensor | None = None  # [B or 1, 1, R, R] blend weight of G(ws) (0 outside the hole)
    consistency: torch.Tensor | None = None  # [B] PSNR (dB) of G(ws) against the input on the known pixels (before blending)


class Inpaint(ProjectingTask):
    """Fill holes of face crops ``[B, 3, R, R]`` (in ``[-1, 1]``) given a mask ``[B or 1, 1, R, R]``
    (**1 = known pixel, 0 = hole**).

    ``Inpaint(feather=4).run(prior, images, mask)`` -> :class:`InpaintResult`; raises ``ValueError``
    for a mask of the wrong shape, an empty or a full one (see :func:`check_mask`)."""

    name = "inpaint"
    needs_mask = True

    def __init__(
        self,
        feather: int | None = None,  # seam width in pixels inside the hole; None = max(1, R // 64); 0 = hard paste
        **kwargs,  # ProjectingTask arguments (preset, steps, lr, plus, beta, patience, ...)
    ) -> None:
        super().__init__(**kwargs)
        self.feather = feather

    def python_inputs(self, prior, img, mask, *rest, **kwargs):
        """Python: any image form and any mask form (:func:`as_mask`: a file or PIL image with white =
        hole, boxes, or a tensor with 1 = known)."""
        images = prior.as_images(img)
        return (images, as_mask(mask, tuple(images.shape[2:])), *rest), kwargs

    def __call__(self, images: torch.Tensor, mask: torch.Tensor, labels: Sequence[str] | None = None) -> InpaintResult:
        """``images [B, 3, R, R]`` in ``[-1, 1]``; ``mask [B or 1, 1, R, R]``, 1 = known pixel, 0 = hole;
        ``labels``: a name per image for error and warning messages (e.g. the input files)."""
        self._require_bound()
        check_images(images, "images", self.resolution)
        images = images.to(self.device)
        mask = check_mask(mask, images, labels=labels)
        result = self.projector.project(images * mask, degrade=lambda img: img * mask, mask=mask)
        feather = self.feather if self.feather is not None else max(1, self.resolution // 64)
        alpha = feathered_hole(mask, feather)
        blended = alpha * result.images + (1 - alpha) * images
        consistency = consistency_psnr(result.images, images, None, mask=mask)
        return InpaintResult.extend(result, blended=blended, mask=mask, alpha=alpha, consistency=consistency)

    def outputs(self, batch: Batch) -> list[Output]:
        masks = batch.masks  # [B, 1, S, S], 1 = known, 0 = hole
        result = self(batch.images, masks, labels=batch.labels or None)
        out = []
        for i in range(batch.images.shape[0]):
            pred = self.projected(
                result, i, crop=result.blended[i], generated=result.images[i], mask=hole_image(masks[i])
            )
            pred.record["hole_fraction"] = float((masks[i] == 0).float().mean())
            pred.paste_mask = paste_region(masks[i])
            out.append(pred)
        return out
