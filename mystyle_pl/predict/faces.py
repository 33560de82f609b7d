"""Several faces of one photo through ``predict`` (``--data.faces``).

The data module hands over one :class:`~.data.TaskItem` per photo; under ``data.faces`` its
``photo`` is a :class:`~mystyle_pl.group.GroupPhoto` holding every face found and the selected
faces' aligned crops. :func:`expand` makes one item per selected face (so the faces of all photos
of a batch are projected together, grouped by size), :func:`merge` puts their predictions back
into one per photo, and :func:`paste_faces` (called by the writer) pastes every processed face
into the photo through :func:`mystyle_pl.group.paste_faces`: every other pixel stays the input's,
byte for byte.

Files of a photo with one processed face are those of any input (``crop.png``, ``photo.png``,
...); with several, each face's images carry its number from the left (``crop_face0.png``,
``input_face2.png``, ``strip_face1.png``, ...) and ``photo.png`` has them all. ``record.json`` lists
every face found (``faces``: box, distance to the person, ``action``: "processed", "kept as it
was: <why>" or "failed: <reason>", the pasted ``region``; with several processed faces each one's
task figures under ``result``); so does the ``failed.json`` entry of a photo that failed or was skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..data.align import AlignTransform
from ..group import GroupPhoto
from ..group import paste_faces as paste_group_faces
from ..tasks.pasteback import TaskPhoto
from .items import Prediction, TaskItem


@dataclass
class PastedFace:
    """One processed face of a merged prediction: what the writer pastes, where it is recorded."""

    suffix: str  # "" (the photo's only processed face) or "_face<N>" (N: the face's number from the left)
    transform: AlignTransform  # the crop <-> photo geometry
    paste_mask: torch.Tensor | None  # [1, S, S] region of the crop pasted (1 = result); None = the face ellipse
    record_index: int  # position in record["faces"]


def expand(item: TaskItem) -> list[TaskItem]:
    """One item per selected face of a :class:`~mystyle_pl.group.GroupPhoto` (crop and mask on
    ``item.image``'s device); ``[item]`` for any other input."""
    photo = item.photo
    if not isinstance(photo, GroupPhoto) or len(photo.transforms) < 2:
        return [item]
    device = item.image.device
    subs = []
    for k, transform in enumerate(photo.transforms):
        one = TaskPhoto(name=photo.name, path=photo.path, image=photo.crops[k], photo=photo.photo, transform=transform)
        mask = None if photo.masks is None else photo.masks[k].to(device)
        subs.append(replace(item, image=photo.crops[k].to(device), mask=mask, photo=one, warnings=[]))
    return subs


def merge(item: TaskItem, parts: Sequence[Prediction], shared: Sequence[str] = ()) -> Prediction:
    """The predictions of ``item``'s faces (in :func:`expand`'s order) -> one prediction of the photo.

    ``shared``: the record keys every input has (the rest of a part's record is its face's task
    figures). A face that failed (out of memory, ...) is kept as it was, its ``action`` in the record
    ``"failed: <reason>"`` and a warning on ``item``; the photo fails (the first face's error, the
    faces listed in its record) only when every face failed. Any other input passes through."""
    photo = item.photo
    if not isinstance(photo, GroupPhoto):
        (pred,) = parts
        return pred
    selection = photo.selection
    chosen = selection.selected
    for face, part in zip(chosen, parts):
        if part.error is not None:
            label = item.source or item.name
            reason = _reason(part.error, label)
            face.action = f"failed: {reason}"
            if len(parts) > 1:
                item.warnings.append(f"{label}: {face.describe()} failed ({reason}); it is kept as it was")
    done = [(face, part) for face, part in zip(chosen, parts) if part.error is None]
    if not done:
        return Prediction(item=item, error=parts[0].error, record=selection.record())
    position = {id(f): i for i, f in enumerate(selection.faces)}
    results: dict[int, dict[str, Any]] = {}
    if len(parts) == 1:
        pred = parts[0]
        pred.item = item
        pred.faces = [PastedFace("", photo.transforms[0], pred.paste_mask, position[id(chosen[0])])]
    else:
        first = done[0][1]
        pred = Prediction(item=item, paste=dict(first.paste), strip=list(first.strip), upscale=first.upscale,
                          record=dict(first.record))  # fmt: skip
        pred.faces = []
        for face, part in done:
            suffix = f"_face{face.index}"
            pred.images.update({f"{key}{suffix}": image for key, image in part.images.items()})
            pred.face_inputs[f"input{suffix}"] = part.item.image
            # own copies: latents the faces share (edit's direction) cannot be saved under several names
            pred.latents.update({f"{key}{suffix}": value.clone() for key, value in part.latents.items()})
            results[position[id(face)]] = {k: v for k, v in part.record.items()
                                           if k not in shared and k not in ("batch_size", "seconds")}  # fmt: skip
            pred.faces.append(PastedFace(suffix, part.item.photo.transform, part.paste_mask, position[id(face)]))
        for key in set(first.record) - set(shared) - {"batch_size", "seconds"}:
            pred.record.pop(key, None)  # each face's own figures are under faces[i]["result"]
        pred.record["seconds"] = round(sum(float(p.record.get("seconds", 0.0)) for _, p in done), 3)
        item.image = None  # the crops the task ran on are pred.face_inputs (input_face<N>.png)
    pred.record.update(selection.record())
    for i, result in results.items():
        pred.record["faces"][i]["result"] = result
    return pred


def _reason(error: str, source: str) -> str:
    """A face's error without the photo's name in front (the record is the photo's)."""
    prefix = f"{source}: "
    return error[len(prefix):] if error.startswith(prefix) else error


def paste_faces(pred: Prediction, key: str, max_pixels: int | None) -> np.ndarray:
    """``photo`` with image ``key`` of every processed face of ``pred`` pasted in -> uint8 ``[H', W', 3]``;
    records the pixels changed (``changed_pixels``) and each face's ``region`` in ``pred.record``."""
    photo = pred.item.photo.photo
    results = [pred.images[f"{key}{f.suffix}"] for f in pred.faces]
    out, changed, regions = paste_group_faces(photo, results, [f.transform for f in pred.faces],
                                              [f.paste_mask for f in pred.faces], upscale=pred.upscale,
                                              max_pixels=max_pixels)  # fmt: skip
    faces: list[dict[str, Any]] = pred.record.get("faces", [])
    for f, region in zip(pred.faces, regions):
        if f.record_index < len(faces):
            faces[f.record_index]["region"] = region
    pred.record["changed_pixels"] = int(changed.sum())
    return out
