"""Real photos in, real photos out: align a face for a task, paste the result back.

Every task works on an FFHQ-aligned face crop. A user's photo is usually not one, so
:func:`load_task_photo` finds the face (dlib, through :class:`~mystyle_pl.data.faces.FaceAnalyzer`),
aligns it the FFHQ way to the size the task needs and keeps the
:class:`~mystyle_pl.data.align.AlignTransform`; :func:`paste_into_photo` warps the task's result
back into the full photo through that transform, blended with a feathered face mask.

**Which face** (a photo with several people): :func:`choose_face` decides. Given the prior's
identity centre (a dlib descriptor, see :meth:`~mystyle_pl.prior.PersonalPrior.identity_centre`)
it takes the face closest to it, as ``prepare`` does, warns with every face found and its
distance, and refuses the photo (:class:`NotThePersonError`) when no face is within
``identity_threshold`` of it; without a centre it takes the most confident face and warns when
there were several. ``face=N`` picks the N-th face from the left instead.

**Memory** is bounded by the face, not the photo: :func:`paste_into_photo` enlarges the photo
as ``uint8`` (PIL) and pastes in floating point only the face's bounding box, and the enlarged
photo is capped at ``max_pixels`` (:data:`DEFAULT_MAX_PHOTO_PIXELS`, 64 MP): a larger one is
written smaller, at the largest scale that fits (never below the photo's own size), see
:func:`pasted_size`.

``align`` decides what counts as already aligned:

- ``"auto"`` (default): a square image is taken as an aligned crop (resized to ``size`` when it
  differs), anything else is detected and aligned. A square image of at least 128 px is checked
  first (:func:`~mystyle_pl.data.faces.check_aligned_crop`): when faces are found but none where
  an FFHQ-aligned crop has it, it is a square *photo*: it is aligned here, with a warning that
  says so; smaller squares cannot be checked;
- ``"always"``: detect and align even square images (an unaligned square photo);
- ``"never"``: the image must be a square aligned crop.

>>> import numpy as np
>>> photo = load_task_photo(np.zeros((64, 64, 3), np.uint8), size=32, name="flat")
>>> tuple(photo.image.shape), photo.transform is None
((3, 32, 32), True)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.align import AlignTransform, align_face, paste_back
from ..data.faces import ALIGNED_CHECK_MIN_SIDE, FaceModelsUnavailable, check_aligned_crop, default_analyzer
from ..data.io import read_image, to_tensor, to_uint8
from ..imaging import resize_square

log = logging.getLogger(__name__)

ALIGN_MODES = ("auto", "always", "never")
# Largest photo.png written by paste-back, in pixels (64 MP, e.g. 9240 x 6930: ~190 MB as uint8 RGB).
DEFAULT_MAX_PHOTO_PIXELS = 64_000_000
# Largest descriptor distance to the prior's identity centre that counts as the person: the
# curation rule of ``prepare`` (CurationSettings.identity_threshold; other people are >= 0.63 away).
DEFAULT_IDENTITY_THRESHOLD = 0.58


class NoFaceError(ValueError):
    """No face was found in a photo that had to be aligned; the message names the file."""


class NotThePersonError(ValueError):
    """Faces were found, but none is the prior's person; the message names the file, lists the faces
    with their distances to the prior's identity and says how to pick one anyway."""


@dataclass
class FoundFace:
    """One face of a photo, as reported to the user (``index``: position from the left)."""

    index: int  # 0 = the leftmost face (what face=N counts)
    box: list[float]  # [left, top, right, bottom] in the photo's pixels
    score: float  # the detector's confidence
    distance: float | None = None  # descriptor distance to the prior's identity centre; None = unknown
    source: int = 0  # position in the analyser's list (0 = the most confident)

    def describe(self) -> str:
        l, t, r, b = (int(round(v)) for v in self.box)
        d = "" if self.distance is None else f", distance {self.distance:.2f}"
        return f"face {self.index} at x {l}-{r}, y {t}-{b}{d}"

    def to_dict(self) -> dict:
        return {"index": self.index, "box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 3),
                "distance": None if self.distance is None else round(float(self.distance), 4)}  # fmt: skip


@dataclass
class FaceChoice:
    """Which face of a photo a task runs on, and why."""

    index: int  # into ``faces`` (left to right)
    faces: list[FoundFace]  # every face found, left to right
    reason: str  # "only face", "closest to the prior's identity", "chosen (face=N)", "most confident"
    warning: str | None = None  # what the user must hear about it (several faces, a far face), or None


def _face_list(faces: Sequence[str]) -> str:
    return "; ".join(faces)


def faces_from_left(faces: Sequence[Any], centre: Any | None = None) -> list[tuple[int, Any, list[float], float, float | None]]:
    """Detected faces (objects with ``box``, optionally ``descriptor``) numbered from the left:
    ``(index in faces, face, box [left, top, right, bottom], detector score, distance of the
    descriptor to centre or None)``, in order of the box centres' x (ties: detection order).

    >>> from types import SimpleNamespace as F
    >>> from mystyle_pl.data.faces import FaceBox
    >>> [(i, d) for i, _, _, _, d in faces_from_left([F(box=FaceBox(9, 0, 12, 3)), F(box=FaceBox(0, 0, 3, 3))])]
    [(1, None), (0, None)]
    """
    c = None if centre is None else np.asarray(centre, dtype=np.float64).reshape(-1)
    order = sorted(range(len(faces)), key=lambda i: ((faces[i].box.left + faces[i].box.right) / 2, i))
    out = []
    for i in order:
        f, b = faces[i], faces[i].box
        desc = getattr(f, "descriptor", None)
        dist = None if c is None or desc is None else float(np.linalg.norm(np.asarray(desc, dtype=np.float64).reshape(-1) - c))
        out.append((i, f, [float(b.left), float(b.top), float(b.right), float(b.bottom)], float(getattr(b, "score", 0.0)), dist))
    return out


def choose_face(
    faces: Sequence,  # Face objects (box, landmarks, descriptor) as FaceAnalyzer.analyze returns them, most confident first
    label: str,  # the file, for messages
    centre: np.ndarray | Sequence[float] | None = None,  # the prior's identity centre [D]; None = unknown
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # a face closer than this to the centre is the person
    face: int | str = "auto",  # "auto" (closest to the centre, else the most confident) or N: the N-th face from the left
) -> FaceChoice:
    """Pick the face a task runs on (see the module docstring).

    Raises :class:`NotThePersonError` when ``face="auto"``, a centre is known and no face is within
    ``threshold`` of it, and ``ValueError`` for a ``face`` index beyond the faces found; both name
    the file and list the faces.

    >>> from types import SimpleNamespace as F
    >>> from mystyle_pl.data.faces import FaceBox
    >>> a = F(box=FaceBox(300, 0, 400, 100, 2.0), descriptor=np.ones(2))   # confident stranger, right
    >>> b = F(box=FaceBox(0, 0, 100, 100, 1.0), descriptor=np.zeros(2))    # the person, left
    >>> c = choose_face([a, b], "group.jpg", centre=[0.1, 0.0])
    >>> c.index, c.reason, [round(f.distance, 2) for f in c.faces]
    (0, "closest to the prior's identity", [0.1, 1.35])
    >>> c = choose_face([a, b], "group.jpg")   # identity unknown: the analyser's first (most confident) face
    >>> c.index, c.reason
    (1, 'most confident')
    """
    if not faces:
        raise NoFaceError(f"{label}: no face found")
    found = [FoundFace(pos, box, score, dist, i) for pos, (i, _, box, score, dist) in enumerate(faces_from_left(faces, centre))]
    listing = _face_list([f.describe() for f in found])
    n = len(found)
    if not (face == "auto" or (isinstance(face, int) and not isinstance(face, bool))):
        raise ValueError(f"face must be 'auto' or a face index 0, 1, ... (from the left), got {face!r}")
    if isinstance(face, int):
        if not 0 <= face < n:
            raise ValueError(f"{label}: face {face} was asked for, but {n} face(s) were found ({listing}); "
                             f"faces are numbered from the left, 0..{n - 1}")  # fmt: skip
        chosen = found[face]
        warning = None
        if chosen.distance is not None and chosen.distance >= threshold:
            warning = (f"{label}: face {face} (as asked) is {chosen.distance:.2f} from the prior's identity "
                       f"(the same person is < {threshold:.2f}): it may be someone else")  # fmt: skip
        elif n > 1:
            warning = f"{label}: {n} faces found ({listing}); using face {face} as asked"
        return FaceChoice(face, found, f"chosen (face={face})", warning)
    known = [f for f in found if f.distance is not None]
    if known:
        best = min(known, key=lambda f: (f.distance, f.index))
        if best.distance >= threshold:
            raise NotThePersonError(
                f"{label}: none of the {n} face(s) found is the prior's person ({listing}; the same person is "
                f"< {threshold:.2f} from the prior's identity): refused, so as not to paste the person over someone "
                "else. If one of them is the person, pick it with --data.face N (N from the left) or raise "
                "--data.identity_threshold"
            )
        warning = None
        if n > 1:
            warning = (f"{label}: {n} faces found ({listing}); using face {best.index}, the closest to the prior's "
                       "identity (pick another with --data.face N)")  # fmt: skip
        return FaceChoice(best.index, found, "closest to the prior's identity" if n > 1 else "only face", warning)
    best = next(f for f in found if f.source == 0)  # the analyser's first face: the most confident
    warning = None
    if n > 1:
        warning = (f"{label}: {n} faces found ({listing}) and the prior's identity is unknown; using face "
                   f"{best.index}, the most confident (pick another with --data.face N)")  # fmt: skip
    return FaceChoice(best.index, found, "most confident" if n > 1 else "only face", warning)


@dataclass
class TaskPhoto:
    """One input of a task: the aligned crop it runs on, and what paste-back needs."""

    name: str  # output stem (the file stem, or the name given)
    path: Path | None  # the source file (None for in-memory input)
    image: torch.Tensor  # [3, S, S] in [-1, 1]: the aligned face crop the task runs on
    photo: np.ndarray | None  # [H, W, 3] uint8 full photo when it was aligned here; None when already a crop
    transform: AlignTransform | None  # crop <-> photo geometry (None when already a crop)
    choice: FaceChoice | None = None  # which face of the photo was aligned, and why (None when already a crop)
    warnings: list[str] = field(default_factory=list)  # what the user was warned about (e.g. several faces)

    @property
    def aligned_here(self) -> bool:
        return self.transform is not None


def crop_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """A square crop ``uint8 [S', S', 3]`` -> ``[3, size, size]`` in [-1, 1] (area when shrinking,
    bicubic when growing: :func:`mystyle_pl.imaging.resize_square`)."""
    return resize_square(to_tensor(image), size)[0]


def load_task_photo(
    source: str | os.PathLike | np.ndarray | Any,  # an image file, a PIL image or a numpy array (see data.io.read_image)
    size: int,  # side of the aligned crop the task runs on (px)
    align: str = "auto",  # "auto" | "always" | "never" (see the module docstring)
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one (built on first use)
    name: str | None = None,  # output stem; None = the file stem
    identity: np.ndarray | Sequence[float] | None = None,  # the prior's identity centre [D] (dlib descriptor); None = unknown
    face: int | str = "auto",  # "auto" = the face closest to `identity` (else the most confident); N = N-th from the left
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # max distance to `identity` that is the person
) -> TaskPhoto:
    """Read ``source`` and return the aligned crop of its face (chosen by :func:`choose_face`) as a
    :class:`TaskPhoto`; a warning about the choice is logged and kept in ``TaskPhoto.warnings``.

    Every source goes through the project's one reader, :func:`~mystyle_pl.data.io.read_image`
    (EXIF orientation, alpha, 16-bit, palette, CMYK). A square image that ``align="auto"`` finds is
    not an aligned crop is aligned here, with a warning (logged and kept in ``TaskPhoto.warnings``).

    Raises :class:`~mystyle_pl.data.io.ImageReadError` for an unreadable file, :class:`NoFaceError`
    when alignment is needed and no face is found and :class:`NotThePersonError` when no face is
    the prior's person; each names the file.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    src = read_task_source(source, align=align, analyzer=analyzer, name=name)
    image, path, label, stem, unaligned = src.image, src.path, src.label, src.stem, src.warning
    height, width = image.shape[:2]
    if not src.align_here:
        return TaskPhoto(name=stem, path=path, image=crop_tensor(image, size), photo=None, transform=None)

    if analyzer is None:
        analyzer = default_analyzer()
    faces = analyzer.analyze(image, describe=identity is not None)
    if not faces:
        raise NoFaceError(
            f"{label}: no face found ({width}x{height} px); the face must be at least ~40 px wide "
            "and roughly frontal. If it is already an aligned crop, pass align='never'"
        )
    choice = choose_face(faces, label, centre=identity, threshold=identity_threshold, face=face)
    picked = faces[choice.faces[choice.index].source]
    warnings = []
    if unaligned:
        log.warning("%s", unaligned)
        warnings.append(unaligned)
    if choice.warning:
        log.warning("%s", choice.warning)
        warnings.append(choice.warning)
    aligned, transform = align_face(image, picked.landmarks, size, source_file=str(path) if path else None)
    return TaskPhoto(name=stem, path=path, image=to_tensor(aligned)[0], photo=image, transform=transform,
                     choice=choice, warnings=warnings)  # fmt: skip


@dataclass
class TaskSource:
    """An input read for a task, and whether its face must be detected and aligned here."""

    image: np.ndarray  # uint8 [H, W, 3] as read_image returns it (EXIF orientation applied)
    path: Path | None  # the source file (None for in-memory input)
    label: str  # the input in messages (the file, or the name given)
    stem: str  # output stem (the name given, or the file stem)
    align_here: bool  # True: a photo whose face is detected and aligned here; False: an aligned crop
    warning: str | None = None  # a square image of align="auto" found not to be an aligned crop, or None


def read_task_source(
    source: str | os.PathLike | np.ndarray | Any,  # an image file, a PIL image or a numpy array (data.io.read_image)
    align: str = "auto",  # "auto" | "always" | "never" (see the module docstring)
    analyzer=None,  # a FaceAnalyzer for the aligned-crop check of square images; None = dlib's default one
    name: str | None = None,  # output stem; None = the file stem
) -> TaskSource:
    """Read ``source`` and decide, by ``align``'s rules, whether it is an aligned crop or a photo to
    align (the first half of :func:`load_task_photo`; :mod:`mystyle_pl.group` shares it).

    Raises :class:`~mystyle_pl.data.io.ImageReadError` for an unreadable file and ``ValueError`` for
    a non-square image under ``align="never"`` or an unknown ``align``; both name the file."""
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    label = str(path) if path is not None else (name or "image")
    image = read_image(source, name=label)
    stem = name or (path.stem if path is not None else "image")
    height, width = image.shape[:2]
    square = height == width
    if align == "never" and not square:
        raise ValueError(
            f"{label}: {width}x{height} is not a square aligned face crop; "
            "use align='auto' (or --data.align auto) to detect and align the face"
        )
    unaligned = _unaligned_square(image, analyzer, label) if align == "auto" and square else None
    crop = align == "never" or (align == "auto" and square and unaligned is None)
    return TaskSource(image=image, path=path, label=label, stem=stem, align_here=not crop, warning=unaligned)


def _unaligned_square(image: np.ndarray, analyzer, label: str) -> str | None:
    """The warning for a square image taken as an aligned crop that has faces, none where the
    FFHQ-aligned crop has it; None otherwise. Small images, images with no face found and machines
    without the face models say nothing (logged at debug level)."""
    side = image.shape[0]
    if side < ALIGNED_CHECK_MIN_SIDE:
        log.debug("%s: %d px square, too small to check that it is an aligned crop", label, side)
        return None
    try:
        if analyzer is None:
            analyzer = default_analyzer()
        detector = getattr(analyzer, "detector", None)
        if detector is None:
            return None
        check = check_aligned_crop(image, detector)
    except (FaceModelsUnavailable, ImportError) as e:
        log.debug("%s: cannot check that it is an aligned crop (%s)", label, e)
        return None
    if check.aligned is not False:
        log.debug("%s: aligned-crop check: %s", label, check.reason)
        return None
    return (
        f"{label}: a {side}x{side} square image, taken as an FFHQ-aligned face crop, is not one ({check.reason}); "
        "its face is detected and aligned here instead (pass align='never' / --data.align never to take it as it is)"
    )


def pasted_size(height: int, width: int, upscale: float = 1, max_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS) -> tuple[int, int]:
    """``(height, width)`` of the photo that paste-back writes for a ``height x width`` photo enlarged
    ``upscale`` times, capped at ``max_pixels`` pixels (``None`` = no cap): the largest size of the
    photo's aspect ratio that fits, but never smaller than the photo itself.

    >>> pasted_size(3024, 4032, 8)  # a phone photo through x8 super-resolution: 32256 x 24192 would be 780 MP
    (6928, 9237)
    >>> pasted_size(480, 640, 8), pasted_size(3024, 4032, 1, max_pixels=1000)
    ((3840, 5120), (3024, 4032))
    """
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
    h, w = round(height * upscale), round(width * upscale)
    if max_pixels is None or h * w <= max_pixels:
        return h, w
    scale = max(1.0, math.sqrt(max_pixels / (height * width)))
    h, w = max(height, math.floor(height * scale)), max(width, math.floor(width * scale))
    return h, w


def paste_inputs(
    crop: torch.Tensor, mask: torch.Tensor | None, name: str = "crop"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A result crop ``[3, R, R]`` / ``[1, 3, R, R]`` and its paste mask ``[1, R, R]`` / ``[1, 1, R, R]``
    (1 = take the result; None = the caller's default) as ``[1, 3, R, R]`` and a float CPU ``[1, 1, R, R]``.
    Raises ``ValueError`` (naming ``name``) for other shapes."""
    crop = crop[None] if crop.ndim == 3 else crop
    if crop.ndim != 4 or crop.shape[:2] != (1, 3) or crop.shape[2] != crop.shape[3]:
        raise ValueError(f"{name} must be [3, R, R] or [1, 3, R, R], got {tuple(crop.shape)}")
    if mask is not None:
        mask = mask[None] if mask.ndim == 3 else mask
        if mask.ndim != 4 or mask.shape[:2] != (1, 1):
            raise ValueError(f"mask must be [1, R, R] or [1, 1, R, R] (1 = take the result), got {tuple(mask.shape)}")
        mask = mask.detach().float().cpu()
    return crop, mask


def paste_into_photo(
    task_photo: TaskPhoto,  # the input as load_task_photo returned it (must have been aligned here)
    crop: torch.Tensor,  # [3, R, R] or [1, 3, R, R] the task's result in [-1, 1], any R
    upscale: float = 1,  # the full photo is first enlarged this many times (super-resolution)
    feather: float = 0.06,  # width of the seam, as a fraction of the crop
    mask: torch.Tensor | None = None,  # [1, R', R'] or [1, 1, R', R'] in crop coordinates, 1 = take the result; None = the face ellipse
    max_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS,  # cap on the written photo's pixels (see pasted_size); None = no cap
) -> np.ndarray:
    """The full photo with ``crop`` warped back over the face: ``uint8 [H', W', 3]`` with
    ``(H', W') = pasted_size(H, W, upscale, max_pixels)`` (``H * upscale, W * upscale`` unless capped).

    With ``upscale > 1`` (super-resolution of a low-resolution photo) the photo is enlarged
    (bicubic) and the transform scaled with it, so the restored face keeps its detail.
    ``mask`` limits the change to a region of the crop (inpainting: the hole, so the photo keeps
    its own pixels everywhere else); by default the whole face ellipse is replaced.

    Memory: the enlarged photo exists once, as ``uint8``; only the face's bounding box is
    converted to floating point and blended, so the working memory is ``3 H' W'`` bytes plus a
    few times the face region, whatever the photo's size.
    """
    if task_photo.transform is None or task_photo.photo is None:
        raise ValueError(f"{task_photo.name}: the input was already an aligned crop; there is no photo to paste into")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    crop, mask = paste_inputs(crop, mask, "crop")
    photo = np.asarray(task_photo.photo)
    transform = task_photo.transform
    height, width = photo.shape[:2]
    out_h, out_w = pasted_size(height, width, upscale, max_pixels)
    if (out_h, out_w) != (height, width):
        from PIL import Image

        out = np.array(Image.fromarray(photo).resize((out_w, out_h), Image.Resampling.BICUBIC))
    else:
        out = photo.copy()
    # Pixel centres: x_out + 0.5 = (out_w / width) * (x + 0.5).
    quad = (np.asarray(transform.quad, dtype=np.float64) + 0.5) * np.array([out_w / width, out_h / height]) - 0.5
    # Only the quad's bounding box (with a margin wider than paste_back's) is blended, in floats.
    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 4
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), out_w), min(int(y1), out_h)
    if x1 <= x0 or y1 <= y0:
        return out
    local = AlignTransform(
        quad=quad - np.array([x0, y0]), source_size=(x1 - x0, y1 - y0), resolution=transform.resolution,
        source_file=transform.source_file,
    )  # fmt: skip
    region = to_tensor(out[y0:y1, x0:x1])
    blended, _ = paste_back(region, crop.detach().float().cpu(), local, feather=feather, mask=mask)
    out[y0:y1, x0:x1] = to_uint8(blended)[0]
    return out
