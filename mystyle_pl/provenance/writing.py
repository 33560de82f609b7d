"""Labelling results on their way out: one :class:`Provenance` per run (predict's writer, the demo,
the app, the Python API), on by default, and :func:`write_result`, the one way a result image is
written (labelled, or plain when provenance is off).

Per result: :meth:`Provenance.mark` watermarks the task's aligned result (before paste-back, so the
pasted photo carries the mark inside the face and nothing outside it changes) or says why not (a
crop under :data:`~.watermark.MIN_CROP_PX`; a paste that keeps too little of the mark box, as
inpainting's, which pastes only the hole); :meth:`Provenance.label` makes the result's label (the
user's photo as the ingredient of an edited picture); :meth:`Provenance.write` writes it labelled
(XMP + signed C2PA). In predict, :meth:`Provenance.begin` does the first two for one input.

The watermark's state is one line, the same in records, manifests and ``verify``:
``"marked (run 1a2b3c)"``, ``"skipped: crop 128 px < 192 px minimum"``, ``"skipped: ..."``, ``"off"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.io import to_tensor, to_uint8, write_image
from .keys import signing_key
from .label import ingredient_bytes, write_labelled
from .manifest import Label, sha256_bytes
from .watermark import MARK_BOX, mark_crop, new_run_id, read_crop, skip_reason

log = logging.getLogger(__name__)

CREATED_TASKS = ("sample",)  # tasks whose results are new pictures (c2pa.created); the others change a photo
UNMARKED_KEYS = ("mask", "degraded")  # images written beside a result that are not themselves marked
UNLABELLED_KEYS = ("mask",)  # the user's own hole, not a picture
OFF = "off"  # the watermark's state when provenance is off
OFF_NOTE = "provenance off (--provenance off): results are not labelled"


def prior_digest(prior: Any) -> str | None:
    """sha256 of the prior's ``prior.json`` (its metadata: family, resolution, album digest, training
    settings; never the photos): ``prior`` is the bundle's folder, or a loaded
    :class:`~mystyle_pl.prior.PersonalPrior` (its ``info`` written as ``save`` writes the file, so a
    loaded prior has its file's digest). None when there is none."""
    if prior is None:
        return None
    info = getattr(prior, "info", None)
    if isinstance(info, dict):
        return hashlib.sha256((json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode()).hexdigest()
    try:
        return hashlib.sha256((Path(prior) / "prior.json").read_bytes()).hexdigest()
    except (OSError, TypeError):
        return None


def as_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``uint8 [H, W, 3]`` from itself or from a tensor ``[1, 3, H, W]`` / ``[3, H, W]`` in ``[-1, 1]``."""
    if isinstance(image, torch.Tensor):
        return to_uint8(image if image.ndim == 4 else image[None])[0]
    return np.asarray(image)


@dataclass
class ResultLabel:
    """What one written result says about itself: its :class:`~.manifest.Label` and the user's photo
    (the ingredient of an edited picture: the original file's bytes and format)."""

    label: Label
    ingredient: bytes | None = None
    ingredient_format: str = "png"


def write_result(path: str | os.PathLike, image: np.ndarray | torch.Tensor, label: ResultLabel | None,
                 compress_level: int = 6, key=None) -> Path:  # fmt: skip
    """Write a result image (PNG or JPEG by ``path``'s suffix, atomically): labelled with ``label``
    (XMP + a C2PA manifest signed with ``key``, a :class:`~.keys.SigningKey`; None = :func:`~.keys.signing_key`),
    or plain when ``label`` is None (provenance off). ``image``: ``uint8 [H, W, 3]`` or a tensor
    ``[1, 3, H, W]`` / ``[3, H, W]`` in ``[-1, 1]``; the watermark, if any, is already in it."""
    if label is None:
        return write_image(path, image, compress_level=compress_level)
    return write_labelled(path, as_uint8(image), label.label, key or signing_key(), ingredient=label.ingredient,
                          ingredient_format=label.ingredient_format, compress_level=compress_level)  # fmt: skip


def pasted_note(result: torch.Tensor, original: torch.Tensor, paste_mask: torch.Tensor, note: str) -> str:
    """The watermark's state in a photo into which only ``paste_mask`` (``[1, R, R]`` or ``[1, 1, R, R]``
    in [0, 1], 1 = the result) of the marked crop ``result`` (``[1, 3, R, R]`` in [-1, 1]) goes over
    ``original`` (the input crop ``[1, 3, S, S]``): ``note`` (the crop's state) when the mark reads
    back from that blend at the crop's size, else why not."""
    if not note.startswith("marked"):
        return note
    r = result.shape[-1]
    original = original if original.ndim == 4 else original[None]
    if original.shape[-1] != r:
        original = torch.nn.functional.interpolate(original.float(), size=(r, r), mode="bilinear", align_corners=False)
    alpha = paste_mask.detach().float().cpu().reshape(r, r).clamp(0, 1).numpy()[..., None]
    blend = np.rint(alpha * as_uint8(result) + (1 - alpha) * as_uint8(original)).astype(np.uint8)
    if read_crop(blend)[0] is not None:
        return note
    x0, y0, x1, y1 = (round(f * r) for f in MARK_BOX)
    covered = float((alpha[y0:y1, x0:x1] > 0.5).mean())
    return (f"skipped: only {covered:.0%} of the face's mark box is pasted back (inpainting pastes the hole only), "
            "too little to carry the mark")  # fmt: skip


class Provenance:
    """Watermark and label one run's results (``enabled=False``: research runs, recorded as such).

    ``cert`` / ``key``: the signing certificate and key (PEM paths; None = :func:`~.keys.signing_key`'s
    order); ``prior``: the prior (folder or loaded) whose digest the manifests carry."""

    def __init__(self, enabled: bool = True, cert: str | None = None, key: str | None = None,
                 prior: Any = None) -> None:  # fmt: skip
        self.enabled, self.cert, self.key, self.prior = bool(enabled), cert, key, prior
        self._key = None
        self._current: ResultLabel | None = None
        self._photo: ResultLabel | None = None
        self.run_id = new_run_id()

    @property
    def state(self) -> str:
        """``"on"`` or ``"off"``, as run records write it."""
        return "on" if self.enabled else "off"

    def signing_key(self):
        if self._key is None:
            self._key = signing_key(self.cert, self.key)
        return self._key

    def mark(self, crop: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, str]:
        """Watermark an aligned result crop (``uint8 [R, R, 3]``, or a tensor ``[1, 3, R, R]`` /
        ``[3, R, R]`` in [-1, 1]) -> ``(the crop, in the form given, the watermark's state)``: marked,
        or unchanged with the reason (too small; the mark does not read back from it, checked here
        on every crop; provenance off)."""
        if not self.enabled:
            return crop, OFF
        pixels = as_uint8(crop)
        reason = skip_reason(pixels)
        if reason is not None:
            return crop, reason
        marked = mark_crop(pixels, self.run_id)
        if read_crop(marked)[0] is None:  # e.g. clipped noise (a random test generator's): the mark would be lost
            return crop, "skipped: the mark does not read back from this image (too saturated or noisy to carry it)"
        if isinstance(crop, torch.Tensor):
            out = to_tensor(marked).to(device=crop.device, dtype=crop.dtype)
            return (out if crop.ndim == 4 else out[0]), self.marked_note
        return marked, self.marked_note

    def mark_cost(self, crop: np.ndarray | torch.Tensor) -> tuple[float | None, str]:
        """What marking ``crop`` (as :meth:`mark` takes it) costs: ``(PSNR in dB of the marked crop
        against the unmarked one over the face's mark box, the only pixels the mark changes; the
        watermark's state)``; the PSNR is None when the crop is not marked (too small; off)."""
        pixels = as_uint8(crop)
        marked, note = self.mark(pixels)
        if not note.startswith("marked"):
            return None, note
        r = pixels.shape[0]
        x0, y0, x1, y1 = (round(f * r) for f in MARK_BOX)
        diff = marked[y0:y1, x0:x1].astype(np.float64) - pixels[y0:y1, x0:x1]
        mse = float(np.mean(diff**2))
        return (float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))), note

    @property
    def marked_note(self) -> str:
        return f"marked (run {self.run_id:06x})"

    def mark_faces(self, results: torch.Tensor, inputs: torch.Tensor | None = None,
                   paste_masks: torch.Tensor | None = None) -> tuple[torch.Tensor, str, str]:  # fmt: skip
        """Mark a batch of results ``[K, 3, R, R]`` (in [-1, 1]) before they are pasted into a photo ->
        ``(marked [K, 3, R, R], the crops' watermark state, the photo's)``. ``paste_masks [K, 1, R, R]``
        (1 = the result; None = the face ellipse, which holds the whole mark box) with ``inputs [K, 3, S, S]``
        (the crops the task got): the photo's state says whether the mark reads back from what is pasted."""
        if not self.enabled:
            return results, OFF, OFF
        marked, notes = [], []
        for k in range(results.shape[0]):
            image, note = self.mark(results[k : k + 1])
            marked.append(image)
            notes.append(note)
        out = torch.cat(marked) if marked else results
        crop_note = notes[0] if notes else OFF
        if paste_masks is None or inputs is None:
            return out, crop_note, crop_note
        photo_notes = [pasted_note(out[k : k + 1], inputs[k : k + 1], paste_masks[k], n) for k, n in enumerate(notes)]
        return out, crop_note, next((n for n in photo_notes if n != crop_note), crop_note)

    def label(self, task: str, kind: str | None = None, settings: dict[str, Any] | None = None,
              source: str | os.PathLike | None = None, fallback: np.ndarray | torch.Tensor | None = None,
              watermark: str | None = None) -> ResultLabel | None:  # fmt: skip
        """The label of a result of ``task`` (None when provenance is off). ``kind``: "edited" (a photo
        changed by the model: ``source``, the user's file, or ``fallback`` pixels is its ingredient) or
        "created" (a new sample); None = by the task (:data:`CREATED_TASKS`). ``watermark``: its state."""
        if not self.enabled:
            return None
        kind = kind or ("created" if task in CREATED_TASKS else "edited")
        ingredient, fmt = (None, "png")
        if kind == "edited":
            ingredient, fmt = ingredient_bytes(source, None if fallback is None else as_uint8(fallback))
        run_id = f"{self.run_id:06x}" if watermark and watermark.startswith("marked") else None
        label = Label(kind=kind, task=task, settings=settings or {}, prior_digest=prior_digest(self.prior),
                      ingredient_sha256=sha256_bytes(ingredient) if ingredient else None, run_id=run_id,
                      watermark=watermark)  # fmt: skip
        return ResultLabel(label, ingredient, fmt)

    def write(self, path: str | os.PathLike, image: np.ndarray | torch.Tensor, label: ResultLabel | None = None,
              photo: bool = False, compress_level: int = 6) -> Path:  # fmt: skip
        """:func:`write_result` with ``label`` (None = the one :meth:`begin` made: the photo's when
        ``photo``), signed with this run's key; plain when provenance is off."""
        if not self.enabled:
            return write_image(path, image, compress_level=compress_level)
        label = label or (self._photo if photo else self._current)
        assert label is not None, "Provenance.begin was not called"
        return write_result(path, image, label, compress_level=compress_level, key=self.signing_key())

    # ------------------------------------------------------------------ predict

    def labelled_keys(self, pred) -> list[str]:
        # per-face files (``mask_face1``) are what their key without the face suffix is
        return [k for k in pred.images if re.sub(r"_face\d+$", "", k) not in UNLABELLED_KEYS]

    def begin(self, pred) -> dict[str, Any]:
        """Mark ``pred``'s results in place and prepare their labels -> the record's entries:
        ``provenance`` ("on" / "off"), ``watermark`` (its state in the crops; ``watermark_photo`` when the
        pasted photo's differs) and ``content_credentials`` (run id, signer, ingredient hash)."""
        self._current = self._photo = None
        if not self.enabled:
            return {"provenance": "off", "watermark": OFF, "content_credentials": OFF_NOTE}
        task = str(pred.record.get("task"))
        self.prior = self.prior if self.prior is not None else pred.record.get("prior")
        marked, notes = [], []
        for k, image in list(pred.images.items()):
            if k in UNMARKED_KEYS or image.ndim not in (3, 4) or image.shape[-1] != image.shape[-2]:
                continue  # (Output.images are [3, R, R]; a batch of one [1, 3, R, R] is taken too)
            pred.images[k], note = self.mark(image)
            notes.append(note)
            if note.startswith("marked"):
                marked.append(k)
        crop_note = notes[0] if notes else "skipped: no aligned result to mark"
        photo_note = self._photo_note(pred, crop_note)
        item = pred.item
        fallback = None if item.image is None else (item.image if item.image.ndim == 4 else item.image[None])
        settings = pred.record.get("settings") or {}
        self._current = self.label(task, settings=settings, source=item.source, fallback=fallback, watermark=crop_note)
        run_id = self._current.label.run_id if photo_note == crop_note else None  # the photo's mark may be lost
        self._photo = replace(self._current, label=replace(self._current.label, watermark=photo_note, run_id=run_id))
        key = self.signing_key()
        credentials = {"run_id": f"{self.run_id:06x}", "watermarked": marked, "kind": self._current.label.kind,
                       "signer": key.source, "certificate": key.path,
                       "ingredient_sha256": self._current.label.ingredient_sha256}  # fmt: skip
        out = {"provenance": "on", "watermark": crop_note, "content_credentials": credentials}
        if pred.paste and photo_note != crop_note:
            out["watermark_photo"] = photo_note
            # about the watermark in photo.png, not the input (the results are written): say so
            log.warning("%s: photo.png's watermark %s (crop.png is %s)", item.source or item.name, photo_note, crop_note)
        return out

    def _photo_note(self, pred, crop_note: str) -> str:
        """The watermark's state in the pasted photo(s): the crop's, unless only part of the result is
        pasted (a paste mask: inpainting) and the mark does not read back from that part."""
        if not pred.paste or not crop_note.startswith("marked"):
            return crop_note
        key = next(iter(pred.paste.values()))
        faces = getattr(pred, "faces", None) or [None]
        for face in faces:
            suffix, mask = ("", pred.paste_mask) if face is None else (face.suffix, face.paste_mask)
            if mask is None or f"{key}{suffix}" not in pred.images:
                continue
            original = pred.images.get(f"input{suffix}") if suffix else pred.item.image
            if original is None:
                continue
            note = pasted_note(pred.images[f"{key}{suffix}"], original, mask, crop_note)
            if note != crop_note:
                return note
        return crop_note


def save_result(path: str | os.PathLike, image: np.ndarray | torch.Tensor, task: str, source: Any = None,
                prior: Any = None, kind: str | None = None, settings: dict[str, Any] | None = None,
                provenance: bool = True, compress_level: int = 6) -> Path:  # fmt: skip
    """Save one result of the Python API (an aligned crop: ``uint8 [R, R, 3]`` or a tensor ``[1, 3, R, R]``
    / ``[3, R, R]`` in [-1, 1], e.g. ``prior.super_resolve(x).images[:1]``) to ``path`` (PNG or JPEG by
    suffix), labelled: watermarked (crops of at least :data:`~.watermark.MIN_CROP_PX` px; the manifest
    says why not otherwise), IPTC XMP and a signed C2PA manifest. ``task``: its name ("superres",
    "sample", ...); ``kind``: "edited" / "created" (None = by the task); ``source``: the user's photo
    (a file path, or its pixels), required for an edited result (the manifest's ingredient);
    ``prior``: the prior or its folder (its digest). ``provenance=False``: written plain (research).

    Raises ``ValueError`` for a batch of several images or an edited result without ``source``."""
    if isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[0] != 1:
        raise ValueError(f"save_result saves one image, got a batch of {image.shape[0]} (save each: images[i:i + 1])")
    prov = Provenance(enabled=provenance, prior=prior)
    marked, note = prov.mark(image)
    label = None
    if prov.enabled:
        if (kind or ("created" if task in CREATED_TASKS else "edited")) == "edited" and source is None:
            raise ValueError(f"save_result: a {task} result is an edited photo; give its source (the input photo's "
                             "file or pixels) for the manifest's ingredient")  # fmt: skip
        path_like = isinstance(source, (str, os.PathLike))
        label = prov.label(task, kind, settings, source=source if path_like else None,
                           fallback=None if path_like else source, watermark=note)  # fmt: skip
    return prov.write(path, marked, label, compress_level=compress_level)


__all__ = ["OFF", "Provenance", "ResultLabel", "as_uint8", "pasted_note", "prior_digest", "save_result", "write_result"]
