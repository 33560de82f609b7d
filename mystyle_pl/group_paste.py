"""Aligning the chosen faces of a whole photo and pasting the results back (:mod:`mystyle_pl.group`).

:func:`align_selected` aligns the selected faces the FFHQ way; :func:`paste_faces` pastes one
result per face back into the photo (:func:`paste_face` per face), copying every pixel the paste
does not touch bit for bit, so outside the pasted regions the photo is the input's (at
``upscale=1``) or its bicubic enlargement.

Images: photos are ``uint8 [H, W, 3]`` RGB; results float ``[3, R, R]`` in ``[-1, 1]``; paste
masks ``[1, R, R]`` with 1 = take the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .data.align import AlignTransform, align_face, face_mask, paste_back
from .data.io import to_tensor, to_uint8
from .group_select import FaceSelection
from .tasks.pasteback import DEFAULT_MAX_PHOTO_PIXELS, paste_inputs, pasted_size


def _scaled(transform: AlignTransform, sx: float, sy: float, size: tuple[int, int]) -> AlignTransform:
    """``transform`` in a photo resized by ``(sx, sy)`` (pixel centres map to pixel centres)."""
    quad = (np.asarray(transform.quad, dtype=np.float64) + 0.5) * np.array([sx, sy]) - 0.5
    return AlignTransform(quad=quad, source_size=size, resolution=transform.resolution, source_file=transform.source_file)


def paste_face(
    photo: np.ndarray,  # uint8 [H, W, 3]: the photo pasted into (not modified)
    result: torch.Tensor,  # [3, R, R] or [1, 3, R, R] in [-1, 1]
    transform: AlignTransform,  # the crop's geometry in `photo` (its source_size = (W, H))
    mask: torch.Tensor | None = None,  # [1, R', R'] / [1, 1, R', R'] in crop coordinates, 1 = take the result; None = face ellipse
    feather: float = 0.06,  # seam width of the default face ellipse, as a fraction of the crop
) -> tuple[np.ndarray, np.ndarray]:
    """Paste one result into ``photo`` -> ``(new photo uint8 [H, W, 3], changed bool [H, W])``.

    Only the quad's bounding box is blended, and every pixel whose paste weight is 0 is copied
    from ``photo`` bit for bit (never through a float round trip), so the pixels outside
    ``changed`` are exactly the input's.
    """
    result, mask = paste_inputs(result, mask, "result")
    if mask is None:
        mask = face_mask(result.shape[-1], feather=feather)
    height, width = photo.shape[:2]
    out = photo.copy()
    changed = np.zeros((height, width), dtype=bool)
    quad = np.asarray(transform.quad, dtype=np.float64)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 4
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)
    if x1 <= x0 or y1 <= y0:
        return out, changed
    local = AlignTransform(quad=quad - np.array([x0, y0]), source_size=(x1 - x0, y1 - y0), resolution=transform.resolution)
    region = photo[y0:y1, x0:x1]
    blended, weight = paste_back(to_tensor(region), result.detach().float().cpu(), local, mask=mask)
    take = weight[0, 0].numpy() > 0
    out[y0:y1, x0:x1] = np.where(take[..., None], to_uint8(blended)[0], region)
    changed[y0:y1, x0:x1] = take
    return out, changed


def align_selected(
    photo: np.ndarray, selection: FaceSelection, size: int, label: str = "photo", source_file: str | None = None
) -> tuple[torch.Tensor, list[AlignTransform]]:
    """The selected faces of ``photo`` (uint8 [H, W, 3]) aligned the FFHQ way at ``size`` px ->
    ``(crops [K, 3, size, size] in [-1, 1], transforms)``; each face's ``transform`` is set too.
    Raises ``ValueError`` for a non-positive ``size`` or a selected face without landmarks."""
    if size < 1:
        raise ValueError(f"crop_size must be positive, got {size}")
    crops, transforms = [], []
    for f in selection.selected:
        if f.landmarks is None:
            raise ValueError(f"{label}: face {f.index} has no landmarks to align it")
        aligned, transform = align_face(photo, f.landmarks, size, source_file=source_file)
        f.transform = transform
        crops.append(aligned)
        transforms.append(transform)
    return to_tensor(crops), transforms


def paste_faces(
    photo: np.ndarray,  # uint8 [H, W, 3]: the input photo (not modified)
    results: Sequence[torch.Tensor],  # one [3, R, R] (or [1, 3, R, R]) result in [-1, 1] per face, any R
    transforms: Sequence[AlignTransform],  # each result's geometry in `photo`
    masks: Sequence[torch.Tensor | None] | None = None,  # per face [1, R', R'] (1 = take the result) or None = face ellipse
    upscale: int = 1,  # the photo is enlarged this many times first (super-resolution)
    max_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS,  # cap on the output's pixels (tasks.pasteback.pasted_size)
    feather: float = 0.06,  # seam of the default face-ellipse paste
) -> tuple[np.ndarray, np.ndarray, list[list[int] | None]]:
    """Paste every result into ``photo`` -> ``(photo uint8 [H', W', 3], changed bool [H', W'],
    regions)``, ``(H', W') = pasted_size(H, W, upscale, max_pixels)``, ``regions``: per face the
    ``[x0, y0, x1, y1)`` box of the pixels it changed (None: none). Outside ``changed`` every pixel is
    the input's (at ``upscale=1``) or its bicubic enlargement, byte for byte (:func:`paste_face`).
    Raises ``ValueError`` when the lists differ in length."""
    if len(results) != len(transforms) or (masks is not None and len(masks) != len(results)):
        raise ValueError(f"{len(results)} results, {len(transforms)} transforms and "
                         f"{'no' if masks is None else len(masks)} masks: one of each per face")  # fmt: skip
    height, width = photo.shape[:2]
    out_h, out_w = pasted_size(height, width, upscale, max_pixels)
    out = photo if (out_h, out_w) == (height, width) else np.asarray(
        Image.fromarray(photo).resize((out_w, out_h), Image.Resampling.BICUBIC))  # fmt: skip
    changed = np.zeros((out_h, out_w), dtype=bool)
    regions: list[list[int] | None] = []
    for k, (result, transform) in enumerate(zip(results, transforms)):
        t = transform if (out_h, out_w) == (height, width) else _scaled(transform, out_w / width, out_h / height, (out_w, out_h))
        mask = None if masks is None else masks[k]
        out, region = paste_face(out, result.detach().float().cpu(), t, mask=mask, feather=feather)
        changed |= region
        ys, xs = np.nonzero(region)
        regions.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else None)
    return np.ascontiguousarray(out), changed, regions
