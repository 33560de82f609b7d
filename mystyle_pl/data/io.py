"""Image files in and out: robust reading, atomic writing, and the conversions at the edge.

Inside the project an image is a float tensor ``[B, 3, H, W]`` in ``[-1, 1]`` (RGB). Files are
read into ``uint8`` RGB arrays ``[H, W, 3]`` here and converted with :func:`to_tensor`;
:func:`to_uint8` goes back. Nothing else in the package converts pixel ranges.

:func:`read_image` accepts whatever a phone, camera or scanner produces and PIL can decode
(JPEG, PNG, WebP, BMP, TIFF, GIF's first frame, and HEIC/HEIF when the optional
``pillow-heif`` package is installed). It applies the EXIF orientation, flattens alpha onto
white, converts grayscale, palette, CMYK, YCbCr and 16/32-bit images to 8-bit RGB, and refuses
decompression bombs *before* decoding them. Every failure is an :class:`ImageReadError` that
names the file and says what is wrong with it.

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

from collections.abc import Callable

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# Photos whose header claims more pixels than this are refused before decoding (a "decompression
# bomb": a small file that would expand to gigabytes). 2^28 pixels (268 MP, ~800 MB as RGB)
# is above every camera sold today.
DEFAULT_MAX_PIXELS = 1 << 28

# Formats are recognised by content, not by name; HEIF suffixes only tell us to load pillow-heif.
HEIF_SUFFIXES = (".heic", ".heif", ".avif")

# Background that transparent pixels are flattened onto (white, like most image viewers).
ALPHA_BACKGROUND = (255, 255, 255)


class ImageReadError(ValueError):
    """A file could not be read as a photo; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


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


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a photo as ``uint8`` RGB ``[H, W, 3]``, upright (EXIF orientation applied).

    ``max_pixels``: refuse images whose header declares more pixels (None = no limit).
    Raises :class:`ImageReadError` (naming the file) for a missing, empty, truncated, corrupt,
    unsupported or oversized file.
    """
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
    return decode_image(data, name=path, max_pixels=max_pixels)


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` is used in error messages)."""
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
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block must not lose the photo: keep it as stored
            pass
        try:
            return _to_rgb8(img)
        except Exception as e:
            raise ImageReadError(name, f"cannot convert mode {img.mode!r} to RGB ({type(e).__name__}: {e})") from None


def _looks_like_heif(name: str | os.PathLike, data: bytes) -> bool:
    brands = (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1", b"ftypavif")
    return Path(str(name)).suffix.lower() in HEIF_SUFFIXES or data[4:12] in brands


def _unidentified_reason(name: str | os.PathLike, data: bytes) -> str:
    if _looks_like_heif(name, data):
        if not heif_support():
            return "HEIC/HEIF/AVIF photo, but the optional package pillow-heif is not installed (pip install pillow-heif)"
    return f"not a recognised image format (starts with {data[:8]!r})"


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB ``[H, W, 3]``."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit / 32-bit grayscale: scale by the type's full range (16-bit data stored as
        # "I" has values up to 65535; float data is assumed to be in [0, 1] when it fits).
        arr = np.asarray(img).astype(np.float64)
        if mode == "F":
            top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
        elif mode == "I" and arr.size and arr.max() <= 255:
            top = 255.0
        else:
            top = 65535.0
        gray = np.clip(np.rint(np.nan_to_num(arr) * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(img), dtype=np.uint8).copy()
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()  # L, 1, P, YCbCr, LAB, HSV, ...


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
# writing


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_folder_atomic(folder: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Build a folder with ``fill(tmp)`` in a temp folder beside ``folder``, then rename it into place.

    An existing ``folder`` is replaced whole (moved aside, the new one renamed in, the old one
    deleted), so readers never see a half-written folder or stale files from an earlier run.
    """
    import shutil
    import tempfile
    import uuid

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
