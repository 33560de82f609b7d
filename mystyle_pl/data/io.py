"""Image files in and out: the one reader of every image a user hands us, atomic writing, and the
conversions at the edge.

Inside the project an image is a float tensor ``[B, 3, H, W]`` in ``[-1, 1]`` (RGB) and a mask a
float tensor ``[B, 1, H, W]`` with **1 = known pixel, 0 = hole**. Every photo and every mask that
enters the program (a file path, a PIL image or a numpy array; through the CLI or the Python API)
is read here, by :func:`read_image` (-> ``uint8`` RGB ``[H, W, 3]``, then :func:`to_tensor`) or
:func:`read_mask` (-> the known-mask tensor); :func:`to_uint8` goes back. Nothing else in the
package converts pixel ranges.

**Photos** (:func:`read_image`): whatever a phone, camera or scanner produces and PIL can decode
(JPEG, PNG, WebP, BMP, TIFF, GIF's first frame, and HEIC/HEIF when the optional ``pillow-heif``
package is installed). The EXIF orientation is applied (files and PIL images); transparency is
flattened onto white; grayscale, palette, CMYK (through its ICC profile), YCbCr and 16/32-bit
images become 8-bit RGB (16-bit values are scaled by 255 / 65535, never clipped). Numpy arrays:
``uint8`` / ``uint16`` ``[H, W]``, ``[H, W, 1|2|3|4]`` (grey, grey + alpha, RGB, RGBA), ``bool``,
or floats in ``[0, 1]``; channel-first arrays and floats outside ``[0, 1]`` are refused.
Decompression bombs are refused *before* decoding.

**Masks** (:func:`read_mask`, in :mod:`mystyle_pl.data.masks`), **white = hole** to fill, black = known;
transparency and colour as that module says.

Every failure is an :class:`ImageReadError` (a ``ValueError``) that names the file (or the
argument) and says what is wrong and how to fix it. Inputs that are read but probably not as
meant raise an :class:`InputWarning` (a ``UserWarning``) elsewhere (a mask that leaves little of
the face known, a square photo that is not an aligned crop).

:func:`write_image` writes a PNG atomically (temporary file in the same folder, then rename).

>>> import numpy as np
>>> rgb = np.zeros((4, 6, 3), dtype=np.uint8); rgb[..., 0] = 255
>>> x = to_tensor(rgb)
>>> tuple(x.shape), x[0, :, 0, 0].tolist()
((1, 3, 4, 6), [1.0, -1.0, -1.0])
>>> bool((to_uint8(x)[0] == rgb).all())
True
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..generators.fileutil import write_bytes_atomic
from .decode import (  # re-exported: the reader's names live here for callers
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageSource,
    array_channels_last,
    array_to_pil,
    decode_pil,
    from_pil,
    heif_support,
    open_file,
    to_rgb8,
)
from .masks import MASK_HOWTO, mask_hole, read_mask  # re-exported: callers import the mask reader from here

__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "MASK_HOWTO",
    "ImageReadError",
    "ImageSource",
    "InputWarning",
    "decode_image",
    "heif_support",
    "mask_hole",
    "read_image",
    "read_image_size",
    "read_mask",
    "to_tensor",
    "to_uint8",
    "write_bytes_atomic",
    "write_folder_atomic",
    "write_image",
]


class InputWarning(UserWarning):
    """An input was usable but probably not what the user meant (the message says why and what to do)."""


# ----------------------------------------------------------------------------------------
# reading: photos


def read_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Read a photo as ``uint8`` RGB ``[H, W, 3]``, upright (EXIF orientation applied).

    ``source``: a file path, a PIL image or a numpy array (see the module docstring for the modes
    and dtypes accepted); ``max_pixels``: refuse files whose header declares more pixels (None = no
    limit); ``name``: what error messages call the source (default: the path, or ``"image"``).
    Raises :class:`ImageReadError` (naming the file) for a missing, empty, truncated, corrupt,
    unsupported or oversized file, or an array of an unusable shape or dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        img, label = open_file(source, max_pixels)
    elif isinstance(source, Image.Image):
        img, label = from_pil(source, name or "image"), name or "image"
    elif isinstance(source, np.ndarray):
        label = name or "image"
        arr = array_channels_last(source, label)
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
            return arr.copy()
        img = array_to_pil(arr, label)
    elif isinstance(source, (bytes, bytearray)):
        return decode_image(bytes(source), name=name or "<bytes>", max_pixels=max_pixels)
    else:
        raise TypeError(
            f"{name or 'image'}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}"
        )
    try:
        return to_rgb8(img)
    except Exception as e:
        raise ImageReadError(label, f"cannot convert mode {img.mode!r} to RGB ({type(e).__name__}: {e})") from None


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` is used in error messages)."""
    img = decode_pil(data, name, max_pixels)
    try:
        return to_rgb8(img)
    except Exception as e:
        raise ImageReadError(name, f"cannot convert mode {img.mode!r} to RGB ({type(e).__name__}: {e})") from None


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`read_image` returns it (EXIF orientation
    applied), from its header when PIL can open it (a full read otherwise).
    Raises :class:`ImageReadError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                try:
                    turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
                except Exception:
                    turned = False
                return (h, w) if turned else (w, h)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        h, w = read_image(path).shape[:2]
        return w, h


# ----------------------------------------------------------------------------------------
# writing


def write_folder_atomic(folder: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Build a folder with ``fill(tmp)`` in a temp folder beside ``folder``, then rename it into place.

    An existing ``folder`` is replaced whole (moved aside, the new one renamed in, the old one
    deleted), so readers never see a half-written folder or stale files from an earlier run.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        fill(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor, compress_level: int = 6) -> Path:
    """Write an image atomically as PNG (or the format of ``path``'s suffix).

    ``image``: ``uint8 [H, W, 3]`` (or ``[H, W]``), or a tensor ``[1, 3, H, W]`` / ``[3, H, W]``
    in ``[-1, 1]``.
    """
    path = Path(path)
    if isinstance(image, torch.Tensor):
        image = to_uint8(image if image.ndim == 4 else image[None])[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"write_image takes uint8 arrays or [-1, 1] tensors, got an array of {image.dtype}")
    buffer = io.BytesIO()
    fmt = "PNG" if path.suffix.lower() in ("", ".png") else None
    kwargs = {"compress_level": compress_level} if fmt == "PNG" else {}
    Image.fromarray(image).save(buffer, format=fmt or Image.registered_extensions()[path.suffix.lower()], **kwargs)
    return write_bytes_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------
# conversions at the edge


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str | None = None) -> torch.Tensor:
    """``uint8 [H, W, 3]`` or ``[B, H, W, 3]`` (or a list of same-size arrays) -> ``[B, 3, H, W]`` in ``[-1, 1]``."""
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i) for i in images])
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [H, W, 3] or [B, H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    x = torch.from_numpy(arr).to(device=device).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in ``[-1, 1]`` -> ``uint8 [B, H, W, 3]`` (clamped, rounded)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a tensor [B, 3, H, W] in [-1, 1], got {shape}")
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
