"""Mask reading: an inpainting mask image (a file, a PIL image or a numpy array) -> the known-mask
tensor ``[1, 1, H, W]``, **1 = known pixel, 0 = hole** (re-exported by :mod:`mystyle_pl.data.io`).

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

Every failure is an :class:`ImageReadError` (a ``ValueError``) that names the mask and says how
to export one.

>>> import numpy as np
>>> hole = np.zeros((4, 4), np.uint8); hole[1:3, 1:3] = 255   # white = hole
>>> read_mask(hole, name="m")[0, 0].int().tolist()
[[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image

from .decode import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageSource,
    array_channels_last,
    array_to_pil,
    from_pil,
    has_alpha,
    open_file,
    rgba8,
    to_rgb8,
)

log = logging.getLogger(__name__)

# How to export a mask that cannot be read unambiguously (ends every mask refusal).
MASK_HOWTO = (
    "save the mask as a black-and-white PNG without transparency, white = hole to fill, black = known "
    "(GIMP: Image > Flatten Image, then Colors > Threshold; Photoshop: Layer > Flatten Image; "
    "numpy: Image.fromarray(hole.astype('uint8') * 255))"
)


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
        img, label = open_file(source, max_pixels)
        label = name or label
    elif isinstance(source, Image.Image):
        label = name or "mask"
        img = from_pil(source, label)
    elif isinstance(source, np.ndarray):
        label = name or "mask"
        if source.dtype == np.bool_ or np.issubdtype(source.dtype, np.floating):
            raise ImageReadError(
                label, f"a {source.dtype} array is ambiguous as a mask (an image means white = hole, a tensor "
                "1 = known): pass torch.from_numpy(known)[None, None] as a tensor [1, 1, H, W] with 1 = known "
                "pixel, 0 = hole, or a uint8 image with 255 = hole",
            )  # fmt: skip
        img = array_to_pil(array_channels_last(source, label), label)
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
        if has_alpha(img):
            rgba = np.asarray(rgba8(img), dtype=np.uint8)
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
            rgb8 = to_rgb8(img)
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
