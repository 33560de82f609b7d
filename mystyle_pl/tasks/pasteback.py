"""Real photos in, real photos out: align a face for a task, paste the result back.

Every task works on an FFHQ-aligned face crop. A user's photo is usually not one, so
:func:`load_task_photo` finds the face (dlib, through :class:`~mystyle_pl.data.faces.FaceAnalyzer`),
aligns it the FFHQ way to the size the task needs and keeps the
:class:`~mystyle_pl.data.align.AlignTransform`; :func:`paste_into_photo` warps the task's result
back into the full photo through that transform, blended with a feathered face mask.

``align`` decides what counts as already aligned:

- ``"auto"`` (default): a square image is taken as an aligned crop (resized to ``size`` when it
  differs), anything else is detected and aligned;
- ``"always"``: detect and align even square images (an unaligned square photo);
- ``"never"``: the image must be a square aligned crop.

>>> import numpy as np
>>> photo = load_task_photo(np.zeros((64, 64, 3), np.uint8), size=32, name="flat")
>>> tuple(photo.image.shape), photo.transform is None
((3, 32, 32), True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.align import AlignTransform, align_face, paste_back
from ..data.io import read_image, to_tensor, to_uint8

ALIGN_MODES = ("auto", "always", "never")


class NoFaceError(ValueError):
    """No face was found in a photo that had to be aligned; the message names the file."""


@dataclass
class TaskPhoto:
    """One input of a task: the aligned crop it runs on, and what paste-back needs."""

    name: str  # output stem (the file stem, or the name given)
    path: Path | None  # the source file (None for in-memory input)
    image: torch.Tensor  # [3, S, S] in [-1, 1]: the aligned face crop the task runs on
    photo: np.ndarray | None  # [H, W, 3] uint8 full photo when it was aligned here; None when already a crop
    transform: AlignTransform | None  # crop <-> photo geometry (None when already a crop)

    @property
    def aligned_here(self) -> bool:
        return self.transform is not None


def _resize_square(image: np.ndarray, size: int) -> torch.Tensor:
    """``uint8 [S', S', 3]`` -> ``[3, size, size]`` in [-1, 1] (area when shrinking, bicubic when growing)."""
    x = to_tensor(image)
    if x.shape[-1] == size:
        return x[0]
    if x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    else:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    return x[0]


def load_task_photo(
    source: str | os.PathLike | np.ndarray,  # an image file, or a uint8 [H, W, 3] array
    size: int,  # side of the aligned crop the task runs on (px)
    align: str = "auto",  # "auto" | "always" | "never" (see the module docstring)
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one (built on first use)
    name: str | None = None,  # output stem; None = the file stem
) -> TaskPhoto:
    """Read ``source`` and return the aligned crop of its most confident face as a :class:`TaskPhoto`.

    Raises :class:`~mystyle_pl.data.io.ImageReadError` for an unreadable file and
    :class:`NoFaceError` when alignment is needed and no face is found; both name the file.
    """
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    path = None if isinstance(source, np.ndarray) else Path(source)
    label = str(path) if path is not None else (name or "<array>")
    image = read_image(path) if path is not None else np.asarray(source)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{label}: expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    stem = name or (path.stem if path is not None else "image")
    height, width = image.shape[:2]
    square = height == width
    if align == "never" and not square:
        raise ValueError(
            f"{label}: {width}x{height} is not a square aligned face crop; "
            "use align='auto' (or --data.align auto) to detect and align the face"
        )
    if align == "never" or (align == "auto" and square):
        return TaskPhoto(name=stem, path=path, image=_resize_square(image, size), photo=None, transform=None)

    if analyzer is None:
        from ..data.faces import FaceAnalyzer

        analyzer = _default_analyzer(FaceAnalyzer)
    faces = analyzer.analyze(image, describe=False)
    if not faces:
        raise NoFaceError(
            f"{label}: no face found ({width}x{height} px); the face must be at least ~40 px wide "
            "and roughly frontal. If it is already an aligned crop, pass align='never'"
        )
    aligned, transform = align_face(image, faces[0].landmarks, size, source_file=str(path) if path else None)
    return TaskPhoto(name=stem, path=path, image=to_tensor(aligned)[0], photo=image, transform=transform)


_ANALYZER: dict = {}


def _default_analyzer(cls):
    """One dlib analyser per process (loading the models takes a second)."""
    if "default" not in _ANALYZER:
        _ANALYZER["default"] = cls()
    return _ANALYZER["default"]


def paste_into_photo(
    task_photo: TaskPhoto,  # the input as load_task_photo returned it (must have been aligned here)
    crop: torch.Tensor,  # [3, R, R] or [1, 3, R, R] the task's result in [-1, 1], any R
    upscale: int = 1,  # the full photo is first up-sampled this many times (super-resolution)
    feather: float = 0.06,  # width of the seam, as a fraction of the crop
    mask: torch.Tensor | None = None,  # [1, R', R'] or [1, 1, R', R'] in crop coordinates, 1 = take the result; None = the face ellipse
) -> np.ndarray:
    """The full photo with ``crop`` warped back over the face: ``uint8 [H * upscale, W * upscale, 3]``.

    With ``upscale > 1`` (super-resolution of a low-resolution photo) the photo is up-sampled
    (bicubic) and the transform scaled with it, so the restored face keeps its detail.
    ``mask`` limits the change to a region of the crop (inpainting: the hole, so the photo keeps
    its own pixels everywhere else); by default the whole face ellipse is replaced.
    """
    if task_photo.transform is None or task_photo.photo is None:
        raise ValueError(f"{task_photo.name}: the input was already an aligned crop; there is no photo to paste into")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    crop = crop[None] if crop.ndim == 3 else crop
    if crop.ndim != 4 or crop.shape[:2] != (1, 3) or crop.shape[2] != crop.shape[3]:
        raise ValueError(f"crop must be [3, R, R] or [1, 3, R, R], got {tuple(crop.shape)}")
    photo = to_tensor(task_photo.photo)
    transform = task_photo.transform
    if upscale > 1:
        h, w = photo.shape[2:]
        photo = F.interpolate(photo, size=(h * upscale, w * upscale), mode="bicubic", align_corners=False).clamp(-1, 1)
        # Pixel centres: x_up + 0.5 = upscale * (x + 0.5).
        quad = (np.asarray(transform.quad) + 0.5) * upscale - 0.5
        transform = AlignTransform(
            quad=quad, source_size=(w * upscale, h * upscale), resolution=transform.resolution,
            source_file=transform.source_file,
        )  # fmt: skip
    if mask is not None:
        mask = mask[None] if mask.ndim == 3 else mask
        if mask.ndim != 4 or mask.shape[:2] != (1, 1):
            raise ValueError(f"mask must be [1, R, R] or [1, 1, R, R] (1 = take the result), got {tuple(mask.shape)}")
        mask = mask.detach().float().cpu()
    out, _ = paste_back(photo, crop.detach().float().cpu(), transform, feather=feather, mask=mask)
    return to_uint8(out)[0]
