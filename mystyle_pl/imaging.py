"""Image math and image-file names at the bottom of the package: resizing, and which files are images.

Imports nothing from the rest of ``mystyle_pl``, so every module can use it (the generators
included). Reading and writing image files is :mod:`mystyle_pl.data.io` (the one reader: EXIF,
alpha, bit depths, masks; atomic writes); PSNR / SSIM / LPIPS are :mod:`mystyle_pl.metrics.image`.

Images are float tensors ``[B, C, H, W]``, RGB in ``[-1, 1]`` for ``C = 3`` (masks ``[B, 1, H, W]``,
1 = known pixel, 0 = hole, resize the same way).

>>> x = torch.arange(16.0).view(1, 1, 4, 4)
>>> area_downsample(x, 2)[0, 0].tolist()
[[2.5, 4.5], [10.5, 12.5]]
>>> downsample_to(x, 8) is x  # never enlarges
True
>>> tuple(resize_square(torch.zeros(1, 3, 4, 4), 8).shape)
(1, 3, 8, 8)
>>> is_image_file("a/B.JPG"), is_image_file("notes.txt")
(True, False)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

# HEIF containers (iPhone photos, AVIF): readable when the optional pillow-heif package is installed.
HEIF_SUFFIXES = (".heic", ".heif", ".avif")
# What the project's reader (data.io.read_image) decodes: PIL's formats (GIF: its first frame), and HEIF.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", *HEIF_SUFFIXES)


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path``'s suffix (any case) is one of :data:`IMAGE_SUFFIXES` (the file is not read)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by suffix, not read; hidden files skipped), sorted by name.

    Raises ``NotADirectoryError`` / ``FileNotFoundError`` when ``folder`` is not a folder.
    """
    found = [p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.name)


def area_downsample(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Area (box-average) resampling of ``[B, C, H, W]`` to ``size`` (``h`` or ``(h, w)``) -> ``[B, C, h, w]``."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(images, size=size, mode="area")


def downsample_to(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-downsample square ``[B, C, H, W]`` to ``resolution`` px; unchanged when already there or
    smaller, or when ``resolution <= 0`` (never enlarges)."""
    if resolution <= 0 or images.shape[-1] <= resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="area")


def bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resampling of ``[B, C, H, W]`` to ``[B, C, size, size]``, clamped to ``[-1, 1]``."""
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square ``[B, C, S, S]`` to ``size`` px: area when shrinking, bicubic (clamped to ``[-1, 1]``)
    when growing, the same tensor at ``size``."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return area_downsample(images, size)
    return bicubic(images, size)


__all__ = [
    "HEIF_SUFFIXES",
    "IMAGE_SUFFIXES",
    "area_downsample",
    "bicubic",
    "downsample_to",
    "image_files",
    "is_image_file",
    "resize_square",
]
