"""Label an image on its way out: IPTC XMP + a signed C2PA manifest around the encoded file.

The watermark goes into the pixels before (:func:`~mystyle_pl.provenance.watermark.mark_crop`,
on the aligned result, so that paste-back carries it); this module encodes the pixels, adds the
XMP, signs, and writes atomically. Images are ``uint8 [H, W, 3]`` RGB.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ..data.io import write_bytes_atomic
from .keys import SigningKey
from .manifest import Label, sign
from .xmp import PNG_KEY, xmp_packet


def encode_with_xmp(image: np.ndarray, fmt: str, source_type: str, quality: int = 95, compress_level: int = 6) -> bytes:
    """``uint8 [H, W, 3]`` -> PNG or JPEG bytes carrying the XMP ``DigitalSourceType``."""
    fmt = fmt.lower()
    xmp = xmp_packet(source_type)
    buffer = io.BytesIO()
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PNG_KEY, xmp)
        pil.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    elif fmt in ("jpg", "jpeg"):
        pil.save(buffer, format="JPEG", quality=quality, xmp=xmp.encode())
    else:
        raise ValueError(f"labelled images are PNG or JPEG, not {fmt!r}")
    return buffer.getvalue()


def labelled_bytes(image: np.ndarray, fmt: str, label: Label, key: SigningKey, title: str,
                   ingredient: bytes | None = None, compress_level: int = 6, ingredient_format: str = "png") -> bytes:  # fmt: skip
    """The encoded image with XMP and a signed manifest (see :func:`~mystyle_pl.provenance.manifest.sign`)."""
    data = encode_with_xmp(image, fmt, label.source_type, compress_level=compress_level)
    return sign(data, fmt, label, key, title, ingredient=ingredient, ingredient_format=ingredient_format)


def write_labelled(path: str | os.PathLike, image: np.ndarray, label: Label, key: SigningKey,
                   ingredient: bytes | None = None, compress_level: int = 6, ingredient_format: str = "png") -> Path:  # fmt: skip
    """Write ``image`` to ``path`` (PNG or JPEG by suffix) labelled, atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    data = labelled_bytes(image, fmt, label, key, path.name, ingredient, compress_level, ingredient_format)
    return write_bytes_atomic(path, data)


def ingredient_bytes(source: str | os.PathLike | None, fallback: np.ndarray | None) -> tuple[bytes | None, str]:
    """The user's original file (``source``) when it can be read, else ``fallback`` pixels as PNG
    (an in-memory input): ``(bytes or None, format)``."""
    if source is not None:
        try:
            p = Path(source)
            if p.is_file():
                return p.read_bytes(), (p.suffix.lstrip(".").lower() or "png")
        except OSError:
            pass
    if fallback is None:
        return None, "png"
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(fallback, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue(), "png"


__all__ = ["encode_with_xmp", "ingredient_bytes", "labelled_bytes", "write_labelled"]
