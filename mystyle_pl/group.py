"""Only the person's faces, in photos of several people.

A personal prior knows its person. :func:`process_photo` finds every face of a whole photo,
matches each against the prior's identity centre (dlib descriptor distance, the rule ``prepare``
curates albums with), runs a task on the person's face(s) only, and pastes each result back;
every other pixel of the photo (other people's faces, the background) stays byte-for-byte as it
was. A photo in which the person does not appear raises :class:`NoPersonError`
("no face of the person: closest 0.71, threshold 0.58") instead of being restored as if it
were them.

Which faces are processed (``faces=``):

* ``"person"``: every face within ``threshold`` of the prior's identity. When the identity is
  unknown (a bundle without one, e.g. a tiny test prior) the most confident face is taken and
  :attr:`GroupResult.note` says so.
* ``"all"``: every face found.
* ``"largest"``: the largest face.

The task is a callable on aligned crops (:class:`FaceWork` in, :class:`FaceOutput` out), so
every task (invert, blind restoration, super-resolution, inpainting, editing) goes through the
same selection and paste-back; :func:`task_runner` builds it for a :class:`PersonalPrior`.

Images: photos are ``uint8 [H, W, 3]`` RGB (the file edge); crops are float ``[K, 3, S, S]`` in
``[-1, 1]``; masks are ``[K, 1, S, S]`` with **1 = known pixel, 0 = hole**, paste masks with
1 = take the result.

The byte-for-byte guarantee holds at ``upscale=1``; with ``upscale > 1`` (super-resolution of the
whole photo) the rest of the photo is the bicubic enlargement of the input, and the person's
face(s) the task's result.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data.align import AlignTransform, align_face, face_mask, paste_back
from .data.io import read_image, to_tensor, to_uint8
from .tasks.pasteback import (
    DEFAULT_IDENTITY_THRESHOLD,
    DEFAULT_MAX_PHOTO_PIXELS,
    NoFaceError,
    NotThePersonError,
    TaskPhoto,
    crop_tensor,
    pasted_size,
    read_task_source,
)

log = logging.getLogger(__name__)

FACE_MODES = ("person", "all", "largest")


class NoPersonError(NotThePersonError):
    """Faces were found, none within the threshold of the prior's identity: the photo is skipped.
    The message reads ``"<label>: no face of the person: closest 0.71, threshold 0.58 (...)"``."""


@dataclass
class GroupFace:
    """One face of a photo and what was done to it (``index``: position from the left, 0 = leftmost)."""

    index: int  # 0 = the leftmost face
    box: list[float]  # [left, top, right, bottom] in the input photo's pixels
    score: float  # the detector's confidence
    distance: float | None  # descriptor distance to the prior's identity centre; None = unknown
    person: bool | None  # distance < threshold; None when the identity (or the descriptor) is unknown
    selected: bool = False  # the task runs on it
    action: str = ""  # "processed" or why it was kept as it was
    landmarks: np.ndarray | None = field(default=None, repr=False)  # [68, 2] input pixels
    transform: AlignTransform | None = None  # crop <-> input photo geometry (selected faces)
    region: list[int] | None = None  # [x0, y0, x1, y1) of the pixels the paste changed, in the output photo

    @property
    def size(self) -> float:
        """The box's larger side (px)."""
        l, t, r, b = self.box
        return max(r - l, b - t)

    def describe(self) -> str:
        l, t, r, b = (int(round(v)) for v in self.box)
        d = "" if self.distance is None else f", distance {self.distance:.2f}"
        return f"face {self.index} at x {l}-{r}, y {t}-{b}{d}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 3),
            "distance": None if self.distance is None else round(float(self.distance), 4), "person": self.person,
            "selected": self.selected, "action": self.action, "region": self.region,
            "transform": self.transform.to_dict() if self.transform is not None else None,
        }  # fmt: skip


@dataclass
class FaceSelection:
    """Every face of a photo (left to right) and which ones the task runs on."""

    faces: list[GroupFace]
    mode: str  # "person" | "all" | "largest"
    threshold: float
    note: str  # one sentence: how the faces were chosen

    @property
    def selected(self) -> list[GroupFace]:
        return [f for f in self.faces if f.selected]


def select_faces(
    faces: Sequence,  # Face objects (box, landmarks, descriptor), as FaceAnalyzer.analyze returns them (most confident first)
    label: str = "photo",  # the photo, for messages
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    mode: str = "person",  # "person" | "all" | "largest" (module docstring)
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
) -> FaceSelection:
    """Order ``faces`` left to right, measure each one's distance to ``identity`` and mark the ones
    to process.

    Raises :class:`~mystyle_pl.tasks.pasteback.NoFaceError` when ``faces`` is empty,
    :class:`NoPersonError` (``mode="person"``, identity known) when no face is within ``threshold``,
    ``ValueError`` for an unknown mode.

    >>> from types import SimpleNamespace as F
    >>> from mystyle_pl.data.faces import FaceBox
    >>> a = F(box=FaceBox(200, 0, 300, 100, 2.0), descriptor=np.ones(2), landmarks=None)   # someone else, right
    >>> b = F(box=FaceBox(0, 0, 100, 100, 1.0), descriptor=np.zeros(2), landmarks=None)    # the person, left
    >>> s = select_faces([a, b], "group.jpg", identity=[0.1, 0.0])
    >>> [(f.index, f.selected, round(f.distance, 2)) for f in s.faces]
    [(0, True, 0.1), (1, False, 1.35)]
    >>> select_faces([a], "solo.jpg", identity=[0.1, 0.0])
    Traceback (most recent call last):
    ...
    mystyle_pl.group.NoPersonError: solo.jpg: no face of the person: closest 1.35, threshold 0.58 (face 0 at x 200-300, y 0-100, distance 1.35)
    """
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}, got {mode!r}")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not faces:
        raise NoFaceError(f"{label}: no face found")
    centre = None if identity is None else np.asarray(identity, dtype=np.float64).reshape(-1)
    order = sorted(range(len(faces)), key=lambda i: ((faces[i].box.left + faces[i].box.right) / 2, i))
    found: list[GroupFace] = []
    for pos, i in enumerate(order):
        f = faces[i]
        desc = getattr(f, "descriptor", None)
        dist = None
        if centre is not None and desc is not None:
            dist = float(np.linalg.norm(np.asarray(desc, dtype=np.float64).reshape(-1) - centre))
        b = f.box
        found.append(GroupFace(
            index=pos, box=[float(b.left), float(b.top), float(b.right), float(b.bottom)],
            score=float(getattr(b, "score", 0.0)), distance=dist, person=None if dist is None else dist < threshold,
            landmarks=getattr(f, "landmarks", None),
        ))  # fmt: skip
    listing = "; ".join(f.describe() for f in found)
    if mode == "all":
        chosen, note = found, f"every face ({len(found)})"
    elif mode == "largest":
        chosen = [max(found, key=lambda f: (f.size, -f.index))]
        note = f"the largest face (face {chosen[0].index})"
    elif any(f.distance is not None for f in found):
        known = [f for f in found if f.distance is not None]
        chosen = [f for f in known if f.distance < threshold]
        if not chosen:
            closest = min(f.distance for f in known)
            raise NoPersonError(
                f"{label}: no face of the person: closest {closest:.2f}, threshold {threshold:.2f} ({listing})"
            )
        note = (f"the person's face{'s' if len(chosen) > 1 else ''} ({', '.join(str(f.index) for f in chosen)}; "
                f"distance < {threshold:.2f} to the prior's identity)")  # fmt: skip
    else:
        first = faces[0].box  # the analyser lists the most confident face first
        chosen = [next(f for f in found if f.box == [float(first.left), float(first.top), float(first.right), float(first.bottom)])]
        note = (f"the prior's identity is unknown: took the most confident face (face {chosen[0].index} of {len(found)})"
                if len(found) > 1 else "the prior's identity is unknown: took the only face")  # fmt: skip
    for f in found:
        if f in chosen:
            f.selected, f.action = True, "processed"
        elif mode == "person" and f.distance is not None:
            f.action = f"kept as it was: not the person (distance {f.distance:.2f} >= {threshold:.2f})"
        else:
            f.action = "kept as it was: not selected" + (f" (faces={mode})" if mode != "person" else "")
    return FaceSelection(found, mode, float(threshold), note)


# ----------------------------------------------------------------------------------------
# the task on the crops


@dataclass
class FaceWork:
    """What a task gets: the selected faces' aligned crops."""

    crops: torch.Tensor  # [K, 3, S, S] in [-1, 1]
    transforms: list[AlignTransform]  # crop (at S) <-> input photo geometry, one per crop
    photo: np.ndarray  # uint8 [H, W, 3]: the input photo (EXIF orientation applied)


@dataclass
class FaceOutput:
    """What a task returns: one result per crop, any side ``R``."""

    images: torch.Tensor  # [K, 3, R, R] in [-1, 1]
    paste_masks: torch.Tensor | None = None  # [K, 1, R', R'] where the result goes (1 = result); None = the face ellipse
    record: dict[str, Any] = field(default_factory=dict)  # the task's settings and metrics (JSON-serialisable)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # other images worth showing ([K, 3, *, *])


FaceTask = Callable[[FaceWork], FaceOutput]


@dataclass
class GroupResult:
    """A whole photo with the selected faces processed and pasted back."""

    photo: np.ndarray  # uint8 [H', W', 3]: the output ((H', W') = pasted_size(H, W, upscale))
    source: np.ndarray  # uint8 [H, W, 3]: the input photo
    selection: FaceSelection  # every face, what was done to it
    crops: torch.Tensor  # [K, 3, S, S] the selected faces' crops (the task's input)
    output: FaceOutput  # the task's results
    changed: np.ndarray  # bool [H', W']: the pixels the paste-back may have changed (outside: the input's)
    upscale: int = 1

    @property
    def faces(self) -> list[GroupFace]:
        return self.selection.faces

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable record: every face found, its distance to the person, what was done."""
        return {
            "faces_mode": self.selection.mode, "identity_threshold": self.selection.threshold,
            "selection": self.selection.note, "faces": [f.to_dict() for f in self.faces],
            "input_size": [int(self.source.shape[1]), int(self.source.shape[0])],
            "output_size": [int(self.photo.shape[1]), int(self.photo.shape[0])], "upscale": self.upscale,
            "changed_pixels": int(self.changed.sum()), **({"task": self.output.record} if self.output.record else {}),
        }  # fmt: skip


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
    result = result[None] if result.ndim == 3 else result
    if result.ndim != 4 or result.shape[:2] != (1, 3) or result.shape[2] != result.shape[3]:
        raise ValueError(f"result must be [3, R, R] or [1, 3, R, R], got {tuple(result.shape)}")
    if mask is not None:
        mask = mask[None] if mask.ndim == 3 else mask
        if mask.ndim != 4 or mask.shape[:2] != (1, 1):
            raise ValueError(f"mask must be [1, R, R] or [1, 1, R, R] (1 = take the result), got {tuple(mask.shape)}")
        mask = mask.detach().float().cpu()
    else:
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


def analyse(photo: np.ndarray, analyzer=None, describe: bool = True) -> list:
    """Every face of ``photo`` (uint8 [H, W, 3]) -> ``FaceAnalyzer.analyze``'s list (most confident
    first); ``analyzer=None``: dlib's default analyser, shared by the process. Raises
    :class:`~mystyle_pl.data.faces.FaceModelsUnavailable` without dlib or its models."""
    if analyzer is None:
        from .tasks.pasteback import _default_analyzer
        from .data.faces import FaceAnalyzer

        analyzer = _default_analyzer(FaceAnalyzer)
    return analyzer.analyze(photo, describe=describe)


def process_photo(
    source: Any,  # a file path, PIL image or uint8 array [H, W, 3] (data.io.read_image: EXIF orientation honoured)
    task: FaceTask,  # runs on the selected faces' crops (task_runner builds one for a prior)
    crop_size: int | Callable[[list[GroupFace]], int],  # side S of the crops the task takes, or a function of the selected faces
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    faces: str = "person",  # "person" | "all" | "largest"
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
    upscale: int = 1,  # the whole photo is enlarged this many times (super-resolution); 1 = same size
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one
    detected: Sequence | None = None,  # faces already found in this photo (FaceAnalyzer.analyze's list); None = analyse here
    label: str | None = None,  # the photo in messages; None = the file name or "photo"
    max_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS,  # cap on the output's pixels (tasks.pasteback.pasted_size)
    feather: float = 0.06,  # seam of the default face-ellipse paste
) -> GroupResult:
    """Run ``task`` on the selected face(s) of a whole photo and paste each result back; all other
    pixels are the input's, byte for byte (at ``upscale=1``).

    Raises :class:`~mystyle_pl.data.io.ImageReadError` (unreadable file), :class:`NoFaceError` (no
    face), :class:`NoPersonError` (``faces="person"`` and none is the person), ``ValueError`` for
    bad arguments.
    """
    if isinstance(upscale, bool) or int(upscale) != upscale or upscale < 1:
        raise ValueError(f"upscale must be an integer >= 1, got {upscale!r}")
    upscale = int(upscale)
    if label is None:
        label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "photo"
    photo = source if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 else read_image(source, name=label)
    selection = find_faces(photo, label, identity=identity, faces=faces, threshold=threshold, analyzer=analyzer,
                           detected=detected)  # fmt: skip
    chosen = selection.selected
    size = int(crop_size(chosen) if callable(crop_size) else crop_size)
    batch, transforms = align_selected(photo, selection, size, label)
    output = task(FaceWork(crops=batch, transforms=transforms, photo=photo))
    if output.images.ndim != 4 or output.images.shape[0] != len(chosen) or output.images.shape[1] != 3:
        raise ValueError(f"the task returned images {tuple(output.images.shape)}, expected [{len(chosen)}, 3, R, R]")
    masks = [None if output.paste_masks is None else output.paste_masks[k] for k in range(len(chosen))]
    out, changed, regions = paste_faces(photo, list(output.images), transforms, masks, upscale=upscale,
                                        max_pixels=max_pixels, feather=feather)  # fmt: skip
    for f, region in zip(chosen, regions):
        f.region = region
    return GroupResult(photo=out, source=photo, selection=selection, crops=batch, output=output,
                       changed=changed, upscale=upscale)  # fmt: skip


def find_faces(
    photo: np.ndarray,  # uint8 [H, W, 3]
    label: str,  # the photo, for messages
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    faces: str = "person",  # "person" | "all" | "largest"
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one
    detected: Sequence | None = None,  # faces already found (FaceAnalyzer.analyze's list); None = analyse here
) -> FaceSelection:
    """Every face of ``photo``, its distance to ``identity`` and which ones to process
    (:func:`select_faces`). Raises :class:`NoFaceError` (no face, the message says how large a
    face must be) and :class:`NoPersonError` (``faces="person"``, none is the person)."""
    found = list(detected) if detected is not None else analyse(photo, analyzer, describe=identity is not None)
    if not found:
        height, width = photo.shape[:2]
        raise NoFaceError(f"{label}: no face found ({width}x{height} px); a face must be at least ~40 px wide and roughly frontal")
    return select_faces(found, label, identity=identity, mode=faces, threshold=threshold)


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


# ----------------------------------------------------------------------------------------
# whole photos in predict


@dataclass
class GroupPhoto(TaskPhoto):
    """A photo for ``predict`` whose selected face(s) were aligned here (``data.faces``): a
    :class:`~mystyle_pl.tasks.pasteback.TaskPhoto` whose ``image`` / ``transform`` are the first
    selected face's, plus every selected face (``crops``, ``transforms``) and every face found
    (``selection``: distances, what is done to each)."""

    selection: FaceSelection | None = None  # every face found, left to right, and which ones are processed
    crops: torch.Tensor | None = None  # [K, 3, S, S] in [-1, 1]: the selected faces' aligned crops
    transforms: list[AlignTransform] = field(default_factory=list)  # one per crop
    masks: torch.Tensor | None = None  # [K, 1, S, S] known-masks (1 = known, 0 = hole) when the task needs one

    def keep(self, k: int, action: str) -> None:
        """Leave the ``k``-th selected face as it is (``action``: why, recorded), e.g. a mask without a
        hole on it. Raises ``ValueError`` when no selected face would be left."""
        chosen = self.selection.selected
        if len(chosen) == 1:
            raise ValueError(f"{self.name}: {action}")
        chosen[k].selected, chosen[k].action, chosen[k].transform = False, f"kept as it was: {action}", None
        keep = [i for i in range(len(chosen)) if i != k]
        self.crops = self.crops[keep]
        self.transforms = [self.transforms[i] for i in keep]
        if self.masks is not None:
            self.masks = self.masks[keep]
        self.image, self.transform = self.crops[0], self.transforms[0]


def load_photo_faces(
    source: str | os.PathLike | np.ndarray | Any,  # an image file, a PIL image or a numpy array (data.io.read_image)
    size: int,  # side of the aligned crops the task runs on (px)
    align: str = "auto",  # "auto" | "always" | "never": what is an aligned crop (tasks.pasteback module docstring)
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one
    name: str | None = None,  # output stem; None = the file stem
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    faces: str = "person",  # "person" | "all" | "largest" (module docstring)
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
) -> TaskPhoto:
    """The input of one ``predict`` photo: an aligned crop as a plain
    :class:`~mystyle_pl.tasks.pasteback.TaskPhoto` (one face, resized to ``size``), or a photo whose
    selected faces are aligned here as a :class:`GroupPhoto` (with a warning when it holds several
    faces, kept in ``warnings``).

    Raises :class:`~mystyle_pl.data.io.ImageReadError` (unreadable), :class:`NoFaceError` (no face)
    and :class:`NoPersonError` (``faces="person"`` and none is the person); each names the file."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    src = read_task_source(source, align=align, analyzer=analyzer, name=name)
    if not src.align_here:
        return TaskPhoto(name=src.stem, path=src.path, image=crop_tensor(src.image, size), photo=None, transform=None)
    selection = find_faces(src.image, src.label, identity=identity, faces=faces, threshold=threshold, analyzer=analyzer)
    crops, transforms = align_selected(src.image, selection, size, src.label,
                                       source_file=str(src.path) if src.path is not None else None)  # fmt: skip
    warnings = [src.warning] if src.warning else []
    if len(selection.faces) > 1:
        listing = "; ".join(f.describe() for f in selection.faces)
        kept = "; every other face is kept as it was" if len(selection.selected) < len(selection.faces) else ""
        warnings.append(f"{src.label}: {len(selection.faces)} faces found ({listing}); processing {selection.note}{kept} "
                        "(--data.faces person|all|largest, or --data.face N for one face)")  # fmt: skip
    for w in warnings:
        log.warning("%s", w)
    return GroupPhoto(name=src.stem, path=src.path, image=crops[0], photo=src.image, transform=transforms[0],
                      warnings=warnings, selection=selection, crops=crops, transforms=transforms)  # fmt: skip


# ----------------------------------------------------------------------------------------
# tasks of a prior on the crops


def photo_hole_to_crop(hole: np.ndarray, transform: AlignTransform, size: int) -> torch.Tensor:
    """A hole drawn on the photo (bool ``[H, W]``, True = hole) -> known-mask ``[1, 1, size, size]`` of
    the aligned crop (**1 = known pixel, 0 = hole**); any crop pixel the hole touches is a hole."""
    h, w = hole.shape
    m = torch.from_numpy(np.asarray(transform.matrix(size), dtype=np.float64))
    c = torch.arange(size, dtype=torch.float64)
    v, u = torch.meshgrid(c, c, indexing="ij")
    x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    grid = torch.stack([(x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1], dim=-1)[None].float()
    warped = F.grid_sample(torch.from_numpy(hole.astype(np.float32))[None, None], grid, mode="bilinear",
                           padding_mode="zeros", align_corners=False)  # fmt: skip
    return (warped <= 1e-3).float()


def hole_paste_mask(known: torch.Tensor, grow: int | None = None) -> torch.Tensor:
    """Where an inpainted crop goes back: the hole of ``known [K, 1, S, S]`` (1 = known, 0 = hole)
    grown by ``grow`` px (default ``max(2, S // 64)``) and softened over as many -> ``[K, 1, S, S]``
    in ``[0, 1]`` (1 = take the result). The photo keeps its own pixels everywhere else."""
    grow = max(2, known.shape[-1] // 64) if grow is None else int(grow)
    grown = F.max_pool2d(1.0 - known.float(), 2 * grow + 1, stride=1, padding=grow)
    return F.avg_pool2d(grown, 2 * grow + 1, stride=1, padding=grow, count_include_pad=False).clamp(0, 1)


def restore_factor(face_size: float, resolution: int, max_factor: int = 32) -> int:
    """The super-resolution factor blind restoration uses for a face ``face_size`` px wide in the
    photo (the aligned quad's side): the power of two nearest ``resolution / face_size``, at least 2
    (the face is always re-synthesised from fewer pixels than the generator's) and at most
    ``max_factor`` and ``resolution // 4``.

    >>> restore_factor(300, 1024), restore_factor(60, 1024), restore_factor(2000, 1024), restore_factor(200, 32)
    (4, 16, 2, 2)
    """
    ratio = resolution / max(float(face_size), 1.0)
    f = 2 ** max(1, round(math.log2(max(ratio, 1.0))))
    return int(max(2, min(f, max_factor, max(2, resolution // 4))))


TASKS = ("invert", "restore", "super_resolve", "inpaint", "edit")


def task_runner(
    prior,  # a PersonalPrior
    task: str,  # one of TASKS
    preset: str | None = None,  # projection preset (tasks.presets); None = the Python API's default for the task
    factor: int | None = None,  # super_resolve / restore: the factor (None for restore = restore_factor per photo)
    hole: np.ndarray | None = None,  # inpaint: bool [H, W] on the input photo, True = hole
    direction: Any = None,  # edit: a W direction (tensor [w_dim], .pt/.npy path, principal index)
    strength: float = 1.0,  # edit: the strength along `direction`
    **kw,  # the task's arguments / ProjectionSettings fields over the preset (steps=, lpips_weight=, progress=, ...)
) -> tuple[FaceTask, Callable[[list[GroupFace]], int], int]:
    """``(task, crop_size, upscale)`` for :func:`process_photo` running one of the prior's tasks
    through its Python API (:class:`~mystyle_pl.prior.PersonalPrior` methods), so predict, the app
    and Python run the same code.

    * ``invert``: projection at the generator's resolution ``R`` (``D`` = identity).
    * ``restore``: blind super-resolution (blur + noise in ``D``) from ``R / f`` px crops, ``f`` =
      ``factor`` or :func:`restore_factor` of the largest selected face; pasted at the photo's size.
    * ``super_resolve``: super-resolution ``x factor`` (required) from ``R / factor`` px crops; the
      whole photo is enlarged ``factor`` times (``upscale``).
    * ``inpaint``: the ``hole`` painted on the photo, mapped into each crop; only the (grown) hole is pasted.
    * ``edit``: projection, then ``strength`` along ``direction``.
    """
    r = int(prior.generator.img_resolution)
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")

    def record(extra: dict) -> dict:
        return {"task": task, "preset": preset, **{k: v for k, v in kw.items() if isinstance(v, (int, float, str, bool))}, **extra}

    if task == "invert":
        def run(work: FaceWork) -> FaceOutput:
            res = prior.invert(work.crops, preset=preset, **kw)
            return FaceOutput(res.images, record=record(_metrics(res)))
        return run, (lambda faces: r), 1

    if task in ("restore", "super_resolve"):
        if task == "super_resolve" and factor is None:
            raise ValueError("super_resolve needs a factor (2, 4, 8, ...)")
        if factor is not None and (int(factor) != factor or factor < 2 or r % int(factor)):
            raise ValueError(f"factor must be an integer >= 2 dividing the generator's resolution {r}, got {factor}")
        chosen: dict[str, int] = {}

        def size(faces: list[GroupFace]) -> int:
            f = int(factor) if factor is not None else restore_factor(max(t.size for t in faces) * 1.6, r)
            chosen["factor"] = f  # x 1.6: dlib's box is ~0.61 of the aligned quad's side (FFHQ_DLIB_BOX)
            return r // f

        blind = task == "restore"

        def run(work: FaceWork) -> FaceOutput:
            res = prior.super_resolve(work.crops, factor=chosen["factor"], preset=preset, **({"blind": True} if blind else {}), **kw)
            return FaceOutput(res.images, record=record({"factor": chosen["factor"], "blind": blind, **_metrics(res)}),
                              extra={} if res.raw is None else {"raw": res.raw})  # fmt: skip
        return run, size, (int(factor) if task == "super_resolve" else 1)

    if task == "inpaint":
        if hole is None or not np.asarray(hole).any():
            raise ValueError("inpaint needs a hole: paint over the part of the photo to fill")
        hole_arr = np.asarray(hole, dtype=bool)

        def run(work: FaceWork) -> FaceOutput:
            if hole_arr.shape != work.photo.shape[:2]:
                raise ValueError(f"the hole is {hole_arr.shape[1]}x{hole_arr.shape[0]}, the photo "
                                 f"{work.photo.shape[1]}x{work.photo.shape[0]}")  # fmt: skip
            known = torch.cat([photo_hole_to_crop(hole_arr, t, r) for t in work.transforms])
            if (known == 1).all():
                raise ValueError("the painted hole does not touch the person's face")
            res = prior.inpaint(work.crops, known, preset=preset, **kw)
            return FaceOutput(res.blended, paste_masks=hole_paste_mask(known),
                              record=record({"hole_fraction": float((known == 0).float().mean()), **_metrics(res)}),
                              extra={"generated": res.images})  # fmt: skip
        return run, (lambda faces: r), 1

    def run(work: FaceWork) -> FaceOutput:  # edit
        res = prior.edit(work.crops, direction, strengths=[float(strength)], preset=preset, **kw)
        return FaceOutput(res.images[:, 0], record=record({"strength": float(strength), "applied": res.applied[:, 0].tolist(),
                                                           "inside": res.inside[:, 0].tolist()}),
                          extra={"projected": res.projected})  # fmt: skip
    return run, (lambda faces: r), 1


def run_photo(
    prior,  # a PersonalPrior
    source: Any,  # the whole photo: a file path, PIL image or uint8 array [H, W, 3]
    task: str = "restore",  # one of TASKS
    faces: str = "person",  # "person" | "all" | "largest"
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to the identity that is the person
    identity: Sequence[float] | np.ndarray | None = None,  # the person's identity centre [D]; None = the prior's own
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one
    label: str | None = None,  # the photo in messages
    max_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS,  # cap on the output's pixels
    **kw,  # task_runner's arguments: preset=, factor=, hole=, direction=, strength=, steps=, ...
) -> GroupResult:
    """One of the prior's tasks on the person's face(s) of a whole photo (the Python side of
    ``predict --data.faces`` and the app): :func:`task_runner` + :func:`process_photo`, with the
    identity from :meth:`~mystyle_pl.prior.PersonalPrior.identity_centre` unless given.

    Raises what :func:`process_photo` raises (:class:`NoFaceError`, :class:`NoPersonError`, ...)."""
    if identity is None:
        identity, _ = prior.identity_centre()
    run, size, upscale = task_runner(prior, task, **kw)
    return process_photo(source, run, size, identity=identity, faces=faces, threshold=threshold, upscale=upscale,
                         analyzer=analyzer, label=label, max_pixels=max_pixels)  # fmt: skip


def _metrics(result) -> dict[str, Any]:
    """The JSON-friendly numbers of a projecting task's result (steps, loss, consistency)."""
    out: dict[str, Any] = {}
    if getattr(result, "steps_used", None) is not None:
        out["steps_used"] = int(result.steps_used)
    if isinstance(getattr(result, "final_loss", None), torch.Tensor):
        out["final_loss"] = [round(float(v), 5) for v in result.final_loss.flatten().tolist()]
    for name in ("consistency", "raw_consistency"):
        value = getattr(result, name, None)
        if isinstance(value, torch.Tensor):
            out[name + "_db"] = [round(float(v), 3) for v in value.flatten().tolist()]
    return out
