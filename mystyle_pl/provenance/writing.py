"""Labelling in predict's writer: one :class:`Provenance` per writer, on by default.

Per input, :meth:`Provenance.begin` watermarks the task's aligned results in place (before
paste-back, so the pasted photo carries the mark inside the face and nothing outside it
changes), and :meth:`Provenance.write` writes each result labelled (XMP + signed C2PA).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..data.io import to_tensor, to_uint8
from .keys import signing_key
from .label import ingredient_bytes, write_labelled
from .manifest import Label, sha256_bytes
from .watermark import can_mark, mark_crop, new_run_id

log = logging.getLogger(__name__)

CREATED_TASKS = ("sample",)  # tasks whose results are new pictures (c2pa.created); the others change a photo
UNMARKED_KEYS = ("mask", "degraded")  # images written beside a result that are not themselves marked
UNLABELLED_KEYS = ("mask",)  # the user's own hole, not a picture


def prior_digest(prior_dir: str | os.PathLike | None) -> str | None:
    """sha256 of the prior's ``prior.json`` (its metadata: family, resolution, album digest,
    training settings; never the photos), or None when there is none."""
    if not prior_dir:
        return None
    path = Path(prior_dir) / "prior.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Provenance:
    """Watermark and label a writer's results (``enabled=False``: research runs, recorded as such)."""

    def __init__(self, enabled: bool = True, cert: str | None = None, key: str | None = None) -> None:
        self.enabled, self.cert, self.key = bool(enabled), cert, key
        self._key = None
        self._label: Label | None = None
        self._ingredient: bytes | None = None
        self._ingredient_fmt = "png"
        self.run_id = new_run_id()

    def signing_key(self):
        if self._key is None:
            self._key = signing_key(self.cert, self.key)
        return self._key

    def labelled_keys(self, pred) -> list[str]:
        return [k for k in pred.images if k not in UNLABELLED_KEYS]

    def begin(self, pred) -> dict[str, Any]:
        """Mark ``pred``'s results in place and prepare their label -> the record's ``provenance`` entry."""
        if not self.enabled:
            self._label = None
            return {"enabled": False, "note": "provenance off (--provenance off): results are not labelled"}
        task = str(pred.record.get("task"))
        marked = []
        for k, image in list(pred.images.items()):
            if k in UNMARKED_KEYS or image.ndim != 4 or image.shape[-1] != image.shape[-2]:
                continue
            crop = to_uint8(image)[0]
            if can_mark(crop):
                pred.images[k] = to_tensor(mark_crop(crop, self.run_id)).to(image.dtype)
                marked.append(k)
        item = pred.item
        kind = "created" if task in CREATED_TASKS else "edited"
        self._ingredient, self._ingredient_fmt = (None, "png")
        if kind == "edited":
            fallback = to_uint8(item.image if item.image.ndim == 4 else item.image[None])[0] if item.image is not None else None
            self._ingredient, self._ingredient_fmt = ingredient_bytes(item.source, fallback)
        key = self.signing_key()
        settings = pred.record.get("settings") or {}
        self._label = Label(kind=kind, task=task, settings=settings, prior_digest=prior_digest(pred.record.get("prior")),
                            ingredient_sha256=sha256_bytes(self._ingredient) if self._ingredient else None,
                            run_id=f"{self.run_id:06x}" if marked else None)  # fmt: skip
        return {"enabled": True, "run_id": f"{self.run_id:06x}", "watermarked": marked, "kind": kind,
                "signer": key.source, "certificate": key.path,
                "ingredient_sha256": self._label.ingredient_sha256}  # fmt: skip

    def write(self, path: Path, image, compress_level: int = 6) -> Path:
        """Write ``image`` (``uint8 [H, W, 3]`` or a ``[1, 3, H, W]`` / ``[3, H, W]`` tensor in [-1, 1]) labelled."""
        if isinstance(image, torch.Tensor):
            image = to_uint8(image if image.ndim == 4 else image[None])[0]
        assert self._label is not None, "Provenance.begin was not called"
        return write_labelled(path, image, self._label, self.signing_key(), ingredient=self._ingredient,
                              compress_level=compress_level)  # fmt: skip


__all__ = ["Provenance", "prior_digest"]
