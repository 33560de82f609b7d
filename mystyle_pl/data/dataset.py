"""A personal album as a map-style dataset of aligned face photos.

An *album* is the folder written by ``mystyle-pl prepare`` (``ALBUM/images/*.png`` and
``ALBUM/manifest.json``) or any folder of already-aligned square photos: when ``ALBUM/images/``
exists the photos are read from there, else from ``ALBUM/`` itself (not recursively). A photo's
*name* is its file name (``"0003.png"``); the album's photo list is sorted by name, and an
``index`` always means a position in that list.

Items are dicts: ``image [3, R, R]`` float32 in ``[-1, 1]``, ``index`` (int), ``name`` (str),
``flipped`` (bool) and, when anchors are attached, ``w [w_dim]``. The default collate turns them
into batches (``name`` becomes a list of str, ``index`` a long tensor).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..imaging import image_files
from .io import read_image

RESAMPLE = Image.Resampling.LANCZOS  # Antialiased when reducing (PIL widens the kernel); FFHQ's own filter.


class AlbumError(ValueError):
    """An album folder or one of its photos is unusable."""


@dataclass(frozen=True)
class Photo:
    """One photo of an album."""

    index: int  # Position in the album's sorted photo list.
    name: str  # File name relative to the image folder, e.g. "0003.png".
    path: Path  # Full path.
    size: int  # Side of the (square) stored image, in pixels.


def album_image_dir(album: str | os.PathLike) -> Path:
    """``ALBUM/images`` when it exists (a prepared album), else ``ALBUM`` itself."""
    album = Path(album)
    if not album.is_dir():
        raise AlbumError(f"album folder not found: {album}")
    images = album / "images"
    return images if images.is_dir() else album


def list_album_files(album: str | os.PathLike) -> list[Path]:
    """The album's image files (by suffix, not read), sorted by file name."""
    return image_files(album_image_dir(album))


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` into an RGB PIL image with the project's one reader (``io.read_image``: EXIF
    orientation, any mode, decompression-bomb guard); raises ``ImageReadError`` naming the file."""
    return Image.fromarray(read_image(path))


def pil_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> ``[3, H, W]`` float32 in ``[-1, 1]``."""
    array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def load_photo(path: str | os.PathLike, resolution: int) -> Tensor:
    """Read a square photo as ``[3, resolution, resolution]`` in ``[-1, 1]``, resampled with Lanczos if needed."""
    img = read_rgb(path)
    if img.width != img.height:
        raise AlbumError(f"{path}: photo is {img.width}x{img.height}, album photos must be square (aligned faces)")
    if img.width != resolution:
        img = img.resize((resolution, resolution), RESAMPLE)
    return pil_to_tensor(img)


def scan_album(album: str | os.PathLike) -> tuple[list[Photo], list[tuple[Path, str]]]:
    """Check every photo of ``album``: ``(photos, skipped)``.

    A photo that cannot be decoded goes to ``skipped`` as ``(path, reason)`` (the caller warns); a
    readable but non-square photo raises :class:`AlbumError` naming it (an unaligned photo in an
    album is a mistake to fix, not noise to skip). ``Photo.index`` counts readable photos only.
    """
    photos: list[Photo] = []
    skipped: list[tuple[Path, str]] = []
    for path in list_album_files(album):
        try:
            img = read_rgb(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
            skipped.append((path, f"{type(e).__name__}: {e}"))
            continue
        if img.width != img.height:
            raise AlbumError(
                f"{path}: photo is {img.width}x{img.height}, album photos must be square aligned faces "
                "(run `mystyle-pl prepare` on raw photos, or remove this file)"
            )
        photos.append(Photo(index=len(photos), name=path.name, path=path, size=img.width))
    return photos, skipped


class AlbumDataset(Dataset):
    """A subset of an album's photos, optionally paired with their anchors ``w``.

    ``hflip=True`` mirrors each photo with probability 1/2 (torch's RNG, so worker seeding applies);
    when anchors are given a mirrored photo is paired with its ``w_flip`` row, never with ``w``.
    """

    def __init__(
        self,
        photos: Sequence[Photo],  # The photos served, in this order.
        resolution: int,  # Output side R in pixels.
        w: Tensor | None = None,  # [len(photos), w_dim] anchors, row i = photos[i]; None = no anchors.
        w_flip: Tensor | None = None,  # [len(photos), w_dim] anchors of the mirrored photos; None = none.
        hflip: bool = False,  # Random horizontal flips (needs w_flip when w is given).
    ):
        self.photos = list(photos)
        self.resolution = int(resolution)
        if self.resolution < 1:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
        for label, t in (("w", w), ("w_flip", w_flip)):
            if t is not None and (t.ndim != 2 or t.shape[0] != len(self.photos)):
                raise ValueError(f"{label} must be [N={len(self.photos)}, w_dim], got {tuple(t.shape)}")
        if hflip and w is not None and w_flip is None:
            raise ValueError("hflip=True with anchors needs w_flip (the anchors of the mirrored photos)")
        self.w = w.float() if w is not None else None
        self.w_flip = w_flip.float() if w_flip is not None else None
        self.hflip = bool(hflip)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.photos]

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        photo = self.photos[i]
        image = load_photo(photo.path, self.resolution)
        flipped = bool(self.hflip and torch.rand(()) < 0.5)
        if flipped:
            image = image.flip(-1)
        item: dict[str, Any] = {"image": image, "index": photo.index, "name": photo.name, "flipped": flipped}
        if self.w is not None:
            item["w"] = (self.w_flip if flipped else self.w)[i]
        return item
