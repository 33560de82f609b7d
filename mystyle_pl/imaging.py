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


def effective_factor(images: torch.Tensor, threshold_db: float = 40.0, max_factor: int = 8) -> int:
    """How much smaller ``images [B, 3, S, S]`` (in ``[-1, 1]``) could be without losing content: the
    largest power of two ``e <= max_factor`` (and ``<= S / 8``) such that area-downsampling by ``e`` and
    bicubic-upsampling back keeps every image within ``threshold_db`` PSNR of itself; 1 for a sharp image.

    A blurred face holds no more than its effective resolution, whatever its pixel count: blind
    restoration that observes it at its pixel size keeps the blur (back-projection reproduces it).
    40 dB was read off the shared albums (faces at 1024 px): the real ``degraded.png`` photos lose
    40.4-43.3 dB at 16x, their sharp held-out ``gt.png`` (512 px sources) 45-50 dB at 2x and 31-35 dB
    at 4x, so the rule gives 16 and 2, the resolutions they hold.

    >>> noise = torch.rand(1, 3, 64, 64) * 2 - 1
    >>> ramp = torch.linspace(-1, 1, 64).expand(1, 3, 64, 64)  # smooth; at 8x bicubic's error at the borders passes 40 dB
    >>> effective_factor(noise), effective_factor(ramp)
    (1, 4)
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be [B, 3, S, S], got {tuple(images.shape)}")
    size, factor = images.shape[-1], 1
    while factor * 2 <= max_factor and size // (factor * 2) >= 8 and size % (factor * 2) == 0:
        small = area_downsample(images, size // (factor * 2))
        mse = (bicubic(small, size) - images.clamp(-1, 1)).square().mean(dim=(1, 2, 3)).clamp_min(1e-12)
        if (10 * torch.log10(4.0 / mse)).min().item() < threshold_db:  # peak-to-peak 2 in [-1, 1]
            break
        factor *= 2
    return factor


__all__ = [
    "HEIF_SUFFIXES",
    "IMAGE_SUFFIXES",
    "area_downsample",
    "bicubic",
    "downsample_to",
    "effective_factor",
    "image_files",
    "is_image_file",
    "resize_square",
]
