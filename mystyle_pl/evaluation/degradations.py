"""Degrade and baseline: the synthetic degradations of the evaluation and the no-prior restorations.

* :class:`BlindDegradation`: blur + down-sampling + noise + JPEG, drawn per photo from a seed;
* :func:`box_mask` (over :data:`EYES_BOX` / :data:`MOUTH_BOX`) and :func:`irregular_mask`: the
  inpainting holes (1 = known pixel, 0 = hole);
* :func:`bicubic` (the super-resolution / blind baseline) and :func:`fill_holes` (the inpainting
  baseline: OpenCV Telea, else the known pixels' mean colour); ``_nearest`` enlarges inputs for display.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data.io import to_tensor, to_uint8
from ..imaging import area_downsample
from ..imaging import bicubic as bicubic_resize
from ..tasks.inpaint import mask_from_boxes
from ..tasks.superres import gaussian_blur

# Holes in FFHQ-aligned coordinates, fractions of the side (x0, y0, x1, y1). The 68 dlib landmarks of
# the shared albums' aligned photos put the eyes within x 0.31..0.68, y 0.44..0.49 and the mouth
# within x 0.35..0.65, y 0.69..0.82 (5th..95th percentiles); the boxes add a margin.
EYES_BOX = (0.27, 0.40, 0.73, 0.54)
MOUTH_BOX = (0.32, 0.64, 0.68, 0.85)


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
        return bicubic_resize(x, size), p


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
    """The bicubic baseline: :func:`mystyle_pl.imaging.bicubic` of ``[B, 3, h, h]`` to ``size`` (clamped to
    ``[-1, 1]``); the input itself (not clamped) when it is already ``size`` px."""
    if images.shape[-1] == size:
        return images
    return bicubic_resize(images, size)


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
