"""Inpainting: ``D`` = masking. The hole is filled by the projection of the known pixels into the
person's space, then the result is blended into the input with a seam feathered *inside* the hole
(pixels outside the hole are the input's, exactly).

Masks follow the project convention: ``[B, 1, H, W]``, **1 = known pixel, 0 = hole**. On disk a
mask is a PNG where **white = hole** (black = known), see :func:`mask_from_png`; on the command
line holes are boxes ``x0,y0,x1,y1`` in pixels (``x1, y1`` exclusive), see :func:`mask_from_boxes`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .invert import ProjectedResult, _ProjectingTask, check_images


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def mask_from_png(path: str | os.PathLike, size: int | Sequence[int], resize: bool = False) -> torch.Tensor:
    """Read a mask PNG (**white = hole**, black = known; grey >= 128 counts as white) as a known-mask
    ``[1, 1, H, W]`` float (**1 = known pixel, 0 = hole**).

    ``size``: the image's ``H`` (square) or ``(H, W)``. A PNG of another size is an error naming the
    file, unless ``resize`` (nearest-neighbour).
    """
    from PIL import Image

    h, w = _size_hw(size)
    try:
        with Image.open(path) as img:
            img.load()
            grey = img.convert("L")
    except (OSError, ValueError) as e:
        raise ValueError(f"mask {path}: cannot read it as an image ({e})") from e
    if grey.size != (w, h):
        if not resize:
            raise ValueError(
                f"mask {path} is {grey.size[0]}x{grey.size[1]} (WxH), the image is {w}x{h}: mask size mismatch"
            )
        grey = grey.resize((w, h), Image.NEAREST)
    hole = np.asarray(grey) >= 128
    return torch.from_numpy(~hole).float()[None, None]


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


def check_mask(mask: torch.Tensor, images: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Validate a known-mask (**1 = known pixel, 0 = hole**) against ``images [B, 3, H, W]``; binarised."""
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
    for i, k in enumerate(known.tolist()):
        if k == h * w:
            raise ValueError(f"{name} (image {i}) is empty: it marks no hole pixel, nothing to inpaint")
        if k == 0:
            raise ValueError(f"{name} (image {i}) is full: every pixel is a hole, no known pixel to project")
    return mask


@dataclass
class InpaintResult(ProjectedResult):
    """``images`` is G(ws), the projection undegraded; ``blended`` is what to show."""

    blended: torch.Tensor  # [B, 3, R, R] input outside the hole, G(ws) inside, feathered seam
    mask: torch.Tensor  # [B or 1, 1, R, R] the known-mask used (1 = known pixel, 0 = hole)
    alpha: torch.Tensor  # [B or 1, 1, R, R] blend weight of G(ws) (0 outside the hole)


class Inpaint(_ProjectingTask):
    """Fill holes of face crops ``[B, 3, R, R]`` (in ``[-1, 1]``) given a mask ``[B or 1, 1, R, R]``
    (**1 = known pixel, 0 = hole**)."""

    def __init__(self, prior, *args, feather: int | None = None, **kwargs) -> None:
        # feather: seam width in pixels inside the hole; None = max(1, R // 64); 0 = hard paste
        super().__init__(prior, *args, **kwargs)
        self.feather = feather

    def __call__(self, images: torch.Tensor, mask: torch.Tensor) -> InpaintResult:
        return self.run(images, mask)

    def run(self, images: torch.Tensor, mask: torch.Tensor) -> InpaintResult:
        """``images [B, 3, R, R]`` in ``[-1, 1]``; ``mask [B or 1, 1, R, R]``, 1 = known pixel, 0 = hole."""
        check_images(images, "images", self.resolution)
        images = images.to(self.device)
        mask = check_mask(mask, images)
        result = self.projector.project(images * mask, degrade=lambda img: img * mask, mask=mask)
        feather = self.feather if self.feather is not None else max(1, self.resolution // 64)
        alpha = feathered_hole(mask, feather)
        blended = alpha * result.images + (1 - alpha) * images
        return InpaintResult.from_projection(result, blended=blended, mask=mask, alpha=alpha)
