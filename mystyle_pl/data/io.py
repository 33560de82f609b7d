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

**Masks** (:func:`read_mask`), **white = hole** to fill, black = known:

- no transparency: a grey image, grey level >= 128 = hole (16-bit masks are scaled first);
- a *colour* image: one colour on black (e.g. red strokes) = hole where the colour is; any other
  colour image (a photo, strokes on white) is refused;
- with transparent pixels (alpha < 128; RGBA, LA, palette with transparency), two conventions of
  inpainting tools, told apart by what the opaque pixels show:

  * one flat colour (a drawing on a transparent layer: Gradio's sketch / ImageMask layers, a
    brush layer exported from GIMP or Photoshop) -> the **opaque strokes are the hole**;
  * a photo (the photo with the hole erased: Photoshop / GIMP eraser, the DALL-E edit convention)
    -> the **transparent pixels are the hole**;
  * anything else (e.g. black *and* white pixels with transparency) is ambiguous and refused with
    a message saying how to export a plain mask; a fully transparent mask is refused;
  * an alpha channel that is opaque everywhere is ignored.

``bool`` and float arrays are refused as masks (an image would mean white = hole, a tensor
1 = known): pass a tensor ``[B, 1, H, W]`` (1 = known) or a ``uint8`` image (255 = hole).

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
>>> hole = np.zeros((4, 4), np.uint8); hole[1:3, 1:3] = 255   # white = hole
>>> read_mask(hole, name="m")[0, 0].int().tolist()
[[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..generators.fileutil import write_bytes_atomic
from ..imaging import HEIF_SUFFIXES

log = logging.getLogger(__name__)

# Photos whose header claims more pixels than this are refused before decoding (a "decompression
# bomb": a small file that would expand to gigabytes). 2^28 pixels (268 MP, ~800 MB as RGB)
# is above every camera sold today.
DEFAULT_MAX_PIXELS = 1 << 28


# Background that transparent pixels are flattened onto (white, like most image viewers).
ALPHA_BACKGROUND = (255, 255, 255)

# What a user may hand us as an image: a file, a PIL image or a numpy array (see read_image).
ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]

# How to export a mask that cannot be read unambiguously (ends every mask refusal).
MASK_HOWTO = (
    "save the mask as a black-and-white PNG without transparency, white = hole to fill, black = known "
    "(GIMP: Image > Flatten Image, then Colors > Threshold; Photoshop: Layer > Flatten Image; "
    "numpy: Image.fromarray(hole.astype('uint8') * 255))"
)


class ImageReadError(ValueError):
    """A file (or an in-memory image) could not be read; the message names it and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class InputWarning(UserWarning):
    """An input was usable but probably not what the user meant (the message says why and what to do)."""


_heif_state: dict[str, bool | str] = {}


def heif_support() -> bool:
    """Register the optional ``pillow-heif`` opener once; True when HEIC/HEIF can be read."""
    if "ok" not in _heif_state:
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _heif_state["ok"] = True
        except Exception as e:  # ImportError, or a broken native library
            _heif_state["ok"] = False
            _heif_state["why"] = f"{type(e).__name__}: {e}"
    return bool(_heif_state["ok"])


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
        img, label = _open_file(source, max_pixels)
    elif isinstance(source, Image.Image):
        img, label = _from_pil(source, name or "image"), name or "image"
    elif isinstance(source, np.ndarray):
        label = name or "image"
        arr = _array_channels_last(source, label)
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
            return arr.copy()
        img = _array_to_pil(arr, label)
    elif isinstance(source, (bytes, bytearray)):
        return decode_image(bytes(source), name=name or "<bytes>", max_pixels=max_pixels)
    else:
        raise TypeError(
            f"{name or 'image'}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}"
        )
    try:
        return _to_rgb8(img)
    except Exception as e:
        raise ImageReadError(label, f"cannot convert mode {img.mode!r} to RGB ({type(e).__name__}: {e})") from None


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` is used in error messages)."""
    img = _decode(data, name, max_pixels)
    try:
        return _to_rgb8(img)
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


def _open_file(path: str | os.PathLike, max_pixels: int | None) -> tuple[Image.Image, str]:
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
    return _decode(data, path, max_pixels), str(path)


def _decode(data: bytes, name: str | os.PathLike, max_pixels: int | None) -> Image.Image:
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


def _from_pil(img: Image.Image, label: str) -> Image.Image:
    """A PIL image handed to us (perhaps lazily opened): loaded and upright."""
    try:
        img.load()
    except Exception as e:
        raise ImageReadError(label, f"cannot decode the image data ({type(e).__name__}: {e})") from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise ImageReadError(label, f"image has no pixels ({img.size[0]}x{img.size[1]})")
    return _upright(img)


def _array_channels_last(arr: np.ndarray, label: str) -> np.ndarray:
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


def _array_to_pil(arr: np.ndarray, label: str) -> Image.Image:
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


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB", "1", "I;16", "I") and "transparency" in img.info)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB ``[H, W, 3]`` (alpha flattened onto white)."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F") and "transparency" not in img.info:
        gray = _gray8(img)
        return np.repeat(gray[..., None], 3, axis=2)
    if _has_alpha(img):
        rgba = _rgba8(img)
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


def _rgba8(img: Image.Image) -> Image.Image:
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
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:
            pass
    return img.convert("RGB")


# ----------------------------------------------------------------------------------------
# reading: masks

# Thresholds of the mask rules (see the module docstring).
_GREY_SPREAD = 32  # max - min channel above this makes a pixel "coloured"
_GREY_FRACTION = 0.01  # a mask with at most this fraction of coloured pixels is grey
_DARK = 48  # a pixel whose brightest channel is below this is black
_FLAT_TOLERANCE = 24  # per channel, around the median colour: a flat drawing
_FLAT_FRACTION = 0.98  # of the opaque pixels within the tolerance: a flat drawing
_PHOTO_COLOURS = 12  # distinct colours (8 levels per channel, each >= 0.2 % of the pixels) of a photo


def read_mask(source: ImageSource, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an inpainting mask image (**white = hole**; transparency and colour as in the module
    docstring) -> known-mask ``[1, 1, H, W]`` float32, **1 = known pixel, 0 = hole**.

    ``source``: a file path, a PIL image or a ``uint8`` / ``uint16`` numpy array ``[H, W]`` or
    ``[H, W, 1|2|3|4]``; ``name``: what messages call it (default: the path, or ``"mask"``).
    Raises :class:`ImageReadError`, naming the mask and saying how to export one, for an
    unreadable file, a colour image that is not one colour on black, an ambiguous or fully
    transparent alpha channel, or a ``bool`` / float array (ambiguous polarity).
    """
    if isinstance(source, (str, os.PathLike)):
        img, label = _open_file(source, max_pixels)
        label = name or label
    elif isinstance(source, Image.Image):
        label = name or "mask"
        img = _from_pil(source, label)
    elif isinstance(source, np.ndarray):
        label = name or "mask"
        if source.dtype == np.bool_ or np.issubdtype(source.dtype, np.floating):
            raise ImageReadError(
                label, f"a {source.dtype} array is ambiguous as a mask (an image means white = hole, a tensor "
                "1 = known): pass torch.from_numpy(known)[None, None] as a tensor [1, 1, H, W] with 1 = known "
                "pixel, 0 = hole, or a uint8 image with 255 = hole",
            )  # fmt: skip
        img = _array_to_pil(_array_channels_last(source, label), label)
    else:
        raise TypeError(f"{name or 'mask'}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}")
    hole, rule = mask_hole(img, label)
    log.info("%s: read as a mask (%s): %.1f%% hole", label, rule, 100.0 * hole.mean())
    return torch.from_numpy(~hole).float()[None, None]


def mask_hole(img: Image.Image, name: str = "mask") -> tuple[np.ndarray, str]:
    """The hole of a mask image: ``(bool [H, W], True = hole; the rule that decided it, in words)``.

    ``img``: a loaded, upright PIL image of any mode (see the module docstring for the rules).
    Raises :class:`ImageReadError` naming ``name`` where no rule applies.
    """
    try:
        if _has_alpha(img):
            rgba = np.asarray(_rgba8(img), dtype=np.uint8)
            rgb, alpha = rgba[..., :3], rgba[..., 3]
            transparent = alpha < 128
            if transparent.all():
                raise ImageReadError(name, f"the mask is fully transparent: nothing is drawn on it; {MASK_HOWTO}")
            if transparent.any():
                kind = _opaque_kind(rgb[~transparent])
                if kind == "flat":
                    return ~transparent, "opaque strokes on a transparent layer = hole"
                if kind == "photo":
                    return transparent, "transparent pixels of an erased photo = hole"
                raise ImageReadError(
                    name, "the mask has transparent pixels, and its opaque pixels are neither one flat colour "
                    "(a drawing on a transparent layer: strokes = hole) nor a photo (an erased photo: "
                    f"transparent = hole), so which part is the hole is ambiguous; {MASK_HOWTO}",
                )  # fmt: skip
            rgb8 = rgb  # an alpha channel opaque everywhere says nothing
        else:
            rgb8 = _to_rgb8(img)
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(name, f"cannot read mode {img.mode!r} as a mask ({type(e).__name__}: {e})") from None
    return _hole_from_rgb(rgb8, name)


def _hole_from_rgb(rgb: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """Opaque mask ``uint8 [H, W, 3]`` -> ``(hole, rule)``: grey (white = hole) or one colour on black."""
    rgb16 = rgb.astype(np.int16)
    peak = rgb16.max(axis=2)
    spread = peak - rgb16.min(axis=2)
    if (spread > _GREY_SPREAD).mean() <= _GREY_FRACTION:
        grey = rgb16 @ np.array([299, 587, 114]) / 1000.0  # ITU-R 601 luma, as PIL's "L"
        return grey >= 128, "white = hole"
    dark = peak < _DARK
    lit = ~dark
    if dark.any() and lit.any():
        colours = rgb16[lit] / peak[lit][:, None].astype(np.float64)  # the colour's direction, any brightness
        ref = np.median(colours, axis=0)
        if (np.abs(colours - ref).max(axis=1) <= 0.2).mean() >= _FLAT_FRACTION:
            stroke = float(np.percentile(peak[lit], 90))
            colour = tuple(int(round(v * stroke)) for v in ref)
            return peak >= stroke / 2, f"colour {colour} on black = hole"
    raise ImageReadError(
        name, f"a colour image, not a mask ({100 * (spread > _GREY_SPREAD).mean():.0f}% of its pixels are coloured, "
        f"and they are not one colour on black); {MASK_HOWTO}",
    )  # fmt: skip


def _opaque_kind(colours: np.ndarray) -> str:
    """What the opaque pixels ``[N, 3]`` of a mask with transparency show: "flat" (one colour, a
    drawing), "photo" (many colours) or "ambiguous"."""
    c = colours.astype(np.int16)
    ref = np.median(c, axis=0)
    if (np.abs(c - ref).max(axis=1) <= _FLAT_TOLERANCE).mean() >= _FLAT_FRACTION:
        return "flat"
    q = c // 32
    counts = np.bincount((q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2]).ravel(), minlength=512)
    n = len(c)
    distinct = int((counts >= max(1, 0.002 * n)).sum())
    top2 = np.sort(counts)[-2:].sum() / n
    return "photo" if distinct >= _PHOTO_COLOURS and top2 < 0.9 else "ambiguous"


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
