"""Decoding at the lowest level: any image a user hands us (a file, bytes, a PIL image, a numpy
array) -> a loaded, upright PIL image, and PIL's modes -> 8-bit RGB / RGBA.

The public readers are built on these: :func:`mystyle_pl.data.io.read_image` (photos) and
:func:`mystyle_pl.data.masks.read_mask` (masks); the rules they follow are in
:mod:`mystyle_pl.data.io`'s docstring. Every failure is an :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..imaging import HEIF_SUFFIXES

# Photos whose header claims more pixels than this are refused before decoding (a "decompression
# bomb": a small file that would expand to gigabytes). 2^28 pixels (268 MP, ~800 MB as RGB)
# is above every camera sold today.
DEFAULT_MAX_PIXELS = 1 << 28


# Background that transparent pixels are flattened onto (white, like most image viewers).
ALPHA_BACKGROUND = (255, 255, 255)

# What a user may hand us as an image: a file, a PIL image or a numpy array (see read_image).
ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]

class ImageReadError(ValueError):
    """A file (or an in-memory image) could not be read; the message names it and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")



_heif_state: dict[str, bool | str] = {}


def heif_support() -> bool:
    """Register the optional ``pillow-heif`` opener once; True when HEIC/HEIF can be read."""
    if "ok" not in _heif_state:
        try:
            import pillow_heif  # type: ignore[import-not-found]  # lazy: optional dependency (HEIC/HEIF)

            pillow_heif.register_heif_opener()
            _heif_state["ok"] = True
        except Exception as e:  # ImportError, or a broken native library
            _heif_state["ok"] = False
            _heif_state["why"] = f"{type(e).__name__}: {e}"
    return bool(_heif_state["ok"])


def open_file(path: str | os.PathLike, max_pixels: int | None) -> tuple[Image.Image, str]:
    """The decoded, upright PIL image of a file, and its label for messages."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot access the file ({e.strerror or e})") from None
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(path, f"cannot read the file ({e.strerror or e})") from None
    return decode_pil(data, path, max_pixels), str(path)


def decode_pil(data: bytes, name: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    """Bytes -> a loaded, upright PIL image (any mode); every failure an :class:`ImageReadError`."""
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    if _looks_like_heif(name, data):
        heif_support()  # registers pillow-heif's opener when it is installed
    with warnings.catch_warnings():
        # We apply our own limit below; PIL's (a warning above 89 MP) would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageReadError(name, f"refused as a decompression bomb ({e})") from None
        except UnidentifiedImageError:
            raise ImageReadError(name, _unidentified_reason(name, data)) from None
        except Exception as e:  # PIL raises a zoo of errors on corrupt headers
            raise ImageReadError(name, f"corrupt or unsupported image header ({type(e).__name__}: {e})") from None
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageReadError(name, f"image has no pixels ({width}x{height})")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(
                name, f"{width}x{height} = {width * height:,} pixels is above the limit of {max_pixels:,} "
                "(refused as a possible decompression bomb; raise max_pixels if the photo is genuine)",
            )  # fmt: skip
        try:
            img.seek(0)  # first frame of animations / multi-page TIFFs
            img.load()
        except Exception as e:  # truncated or corrupt data: OSError, SyntaxError, ValueError, ...
            raise ImageReadError(name, f"cannot decode the image data ({type(e).__name__}: {e})") from None
        return _upright(img)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a broken EXIF block must not lose the image: keep it as stored)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def from_pil(img: Image.Image, label: str) -> Image.Image:
    """A PIL image handed to us (perhaps lazily opened): loaded and upright."""
    try:
        img.load()
    except Exception as e:
        raise ImageReadError(label, f"cannot decode the image data ({type(e).__name__}: {e})") from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise ImageReadError(label, f"image has no pixels ({img.size[0]}x{img.size[1]})")
    return _upright(img)


def array_channels_last(arr: np.ndarray, label: str) -> np.ndarray:
    """Check an array's shape: ``[H, W]`` or ``[H, W, C]`` with ``C`` in 1..4 (channel-first refused)."""
    if arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
        raise ImageReadError(
            label, f"array of shape {arr.shape} looks channel-first [C, H, W]; pass [H, W, C] (arr.transpose(1, 2, 0))"
        )
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ImageReadError(label, f"expected an image array [H, W] or [H, W, 1|2|3|4], got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(label, f"image has no pixels (shape {arr.shape})")
    return arr


def array_to_pil(arr: np.ndarray, label: str) -> Image.Image:
    """A channels-last array of any supported dtype -> an 8-bit PIL image (L, LA, RGB or RGBA)."""
    dt = arr.dtype
    if dt == np.bool_:
        arr8 = arr.astype(np.uint8) * 255
    elif dt == np.uint8:
        arr8 = arr
    elif dt == np.uint16:
        arr8 = np.rint(arr.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255, scaled not clipped
    elif np.issubdtype(dt, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageReadError(
                label, f"an array of {dt} with values {lo}..{hi}: integer images must be uint8 (0..255) or uint16 (0..65535)"
            )
        arr8 = arr.astype(np.uint8)
    elif np.issubdtype(dt, np.floating):
        if not np.isfinite(arr).all():
            raise ImageReadError(label, f"an array of {dt} holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(
                label, f"an array of {dt} with values {lo:g}..{hi:g}: float images must be in [0, 1] "
                "(pass uint8 for 0..255, or a tensor in [-1, 1] where the API takes tensors)",
            )  # fmt: skip
        arr8 = np.rint(arr * 255.0).astype(np.uint8)
    else:
        raise ImageReadError(label, f"unsupported array dtype {dt} (use uint8, uint16, bool or float in [0, 1])")
    if arr8.ndim == 3 and arr8.shape[2] == 1:
        arr8 = arr8[..., 0]
    return Image.fromarray(np.ascontiguousarray(arr8))


def _looks_like_heif(name: str | os.PathLike, data: bytes) -> bool:
    brands = (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1", b"ftypavif")
    return Path(str(name)).suffix.lower() in HEIF_SUFFIXES or data[4:12] in brands


def _unidentified_reason(name: str | os.PathLike, data: bytes) -> str:
    if _looks_like_heif(name, data):
        if not heif_support():
            return "HEIC/HEIF/AVIF photo, but the optional package pillow-heif is not installed (pip install pillow-heif)"
    return f"not a recognised image format (starts with {data[:8]!r})"


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB", "1", "I;16", "I") and "transparency" in img.info)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB ``[H, W, 3]`` (alpha flattened onto white)."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F") and "transparency" not in img.info:
        gray = _gray8(img)
        return np.repeat(gray[..., None], 3, axis=2)
    if has_alpha(img):
        rgba = rgba8(img)
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(img), dtype=np.uint8).copy()
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()  # L, 1, P, YCbCr, LAB, HSV, ...


def _gray8(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit grayscale -> uint8 ``[H, W]``, scaled by the type's full range (16-bit data
    stored as "I" has values up to 65535; float data is assumed to be in [0, 1] when it fits)."""
    mode = img.mode
    arr = np.asarray(img).astype(np.float64)
    if mode == "F":
        top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
    elif mode == "I" and arr.size and arr.max() <= 255:
        top = 255.0
    else:
        top = 65535.0
    return np.clip(np.rint(np.nan_to_num(arr) * (255.0 / top)), 0, 255).astype(np.uint8)


def rgba8(img: Image.Image) -> Image.Image:
    """Any mode with transparency -> 8-bit RGBA (16-bit grey scaled first, premultiplied modes undone)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        t = img.info.get("transparency")
        gray = _gray8(img)
        alpha = np.where(np.asarray(img) == t, 0, 255).astype(np.uint8) if t is not None else np.full_like(gray, 255)
        return Image.fromarray(np.dstack([gray, gray, gray, alpha]))
    if img.mode == "La":
        img = img.convert("LA")
    return img.convert("RGBA")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one (PIL's naive formula otherwise)."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:
            pass
    return img.convert("RGB")
