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

Provenance (on by default, ``provenance=False`` to opt out): the results are watermarked in the
face before they are pasted, and :meth:`GroupResult.save` writes the photo with its Content
Credentials (the input photo as the ingredient) and IPTC XMP (:mod:`mystyle_pl.provenance`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data.align import AlignTransform
from .data.io import read_image
from .group_paste import align_selected, paste_face, paste_faces
from .group_select import FACE_MODES, FaceSelection, GroupFace, NoPersonError, analyse, find_faces, select_faces
from .provenance.writing import OFF, Provenance
from .tasks.pasteback import (
    DEFAULT_IDENTITY_THRESHOLD,
    DEFAULT_MAX_PHOTO_PIXELS,
    NoFaceError,
    TaskPhoto,
    crop_tensor,
    read_task_source,
)

__all__ = [  # finding / choosing the faces (group_select) and aligning / pasting them (group_paste) re-exported
    "FACE_MODES", "TASKS", "FaceOutput", "FaceSelection", "FaceTask", "FaceWork", "GroupFace", "GroupPhoto",
    "GroupResult", "NoFaceError", "NoPersonError", "align_selected", "analyse", "find_faces", "hole_paste_mask",
    "load_photo_faces", "paste_face", "paste_faces", "photo_hole_to_crop", "process_photo", "restore_factor",
    "run_photo", "select_faces", "task_runner",
]  # fmt: skip

log = logging.getLogger(__name__)


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
    provenance: Provenance | None = None  # how save() labels the photo (None or disabled: written unlabelled)
    watermark: str = OFF  # the watermark's state in the crops ("marked (run ...)", "skipped: ...", "off")
    watermark_photo: str = OFF  # ... and in the pasted photo (inpainting pastes only the hole: it may differ)
    source_file: str | None = None  # the input photo's file, when it was given as one (the manifest's ingredient)

    @property
    def faces(self) -> list[GroupFace]:
        return self.selection.faces

    def save(self, path: str | os.PathLike, compress_level: int = 6) -> Path:
        """Write :attr:`photo` to ``path`` (PNG or JPEG by its suffix, atomically) -> ``path``. With
        provenance on (the default of :func:`process_photo` / :func:`run_photo`) it carries a signed
        C2PA manifest (``c2pa.edited``, the input photo as the ingredient, the task and its settings),
        IPTC XMP and, in the face(s), the watermark; with ``provenance=False`` it is written plain."""
        prov = self.provenance if self.provenance is not None else Provenance(enabled=False)
        task = str(self.output.record.get("task") or "photo")
        label = prov.label(task, settings=self.output.record, source=self.source_file, fallback=self.source,
                           watermark=self.watermark_photo)  # fmt: skip
        return prov.write(path, self.photo, label, compress_level=compress_level)

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable record: every face found, its distance to the person, what was done."""
        return {
            **self.selection.record(),
            "input_size": [int(self.source.shape[1]), int(self.source.shape[0])],
            "output_size": [int(self.photo.shape[1]), int(self.photo.shape[0])], "upscale": self.upscale,
            "changed_pixels": int(self.changed.sum()), **({"task": self.output.record} if self.output.record else {}),
            "provenance": "on" if self.provenance is not None and self.provenance.enabled else "off",
            "watermark": self.watermark,
            **({"watermark_photo": self.watermark_photo} if self.watermark_photo != self.watermark else {}),
        }  # fmt: skip


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
    provenance: bool | Provenance = True,  # watermark the results before pasting, for GroupResult.save's labels; False = not
) -> GroupResult:
    """Run ``task`` on the selected face(s) of a whole photo and paste each result back; all other
    pixels are the input's, byte for byte (at ``upscale=1``). With ``provenance`` (a
    :class:`~mystyle_pl.provenance.writing.Provenance` or a bool) the results carry the watermark in
    the face, and :meth:`GroupResult.save` labels the photo.

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
    prov = provenance if isinstance(provenance, Provenance) else Provenance(enabled=bool(provenance))
    output.images, watermark, watermark_photo = prov.mark_faces(output.images, batch, output.paste_masks)
    masks = [None if output.paste_masks is None else output.paste_masks[k] for k in range(len(chosen))]
    out, changed, regions = paste_faces(photo, list(output.images), transforms, masks, upscale=upscale,
                                        max_pixels=max_pixels, feather=feather)  # fmt: skip
    for f, region in zip(chosen, regions):
        f.region = region
    return GroupResult(photo=out, source=photo, selection=selection, crops=batch, output=output, changed=changed,
                       upscale=upscale, provenance=prov, watermark=watermark, watermark_photo=watermark_photo,
                       source_file=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)  # fmt: skip


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
        warnings.append(f"{src.label}: {len(selection.faces)} faces found ({listing}); processing: {selection.note}{kept} "
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
    provenance: bool = True,  # the results watermarked and result.save() labelled; False = neither (research)
    **kw,  # task_runner's arguments: preset=, factor=, hole=, direction=, strength=, steps=, ...
) -> GroupResult:
    """One of the prior's tasks on the person's face(s) of a whole photo (the Python side of
    ``predict --data.faces`` and the app): :func:`task_runner` + :func:`process_photo`, with the
    identity from :meth:`~mystyle_pl.prior.PersonalPrior.identity_centre` unless given.
    ``run_photo(prior, "group.jpg").save("restored.png")`` writes it labelled (:meth:`GroupResult.save`).

    Raises what :func:`process_photo` raises (:class:`NoFaceError`, :class:`NoPersonError`, ...)."""
    if identity is None:
        identity, _ = prior.identity_centre()
    run, size, upscale = task_runner(prior, task, **kw)
    return process_photo(source, run, size, identity=identity, faces=faces, threshold=threshold, upscale=upscale,
                         analyzer=analyzer, label=label, max_pixels=max_pixels,
                         provenance=Provenance(enabled=provenance, prior=prior))  # fmt: skip


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
