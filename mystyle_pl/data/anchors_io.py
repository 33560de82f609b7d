"""Anchor files: one W-space latent code per album photo, as safetensors (never pickle).

An anchors file holds

- tensor ``w`` ``[N, w_dim]``: the W inversion of each photo (the MyStyle "anchors");
- optionally tensor ``w_flip`` ``[N, w_dim]``: the inversion of each photo's horizontal mirror
  (needed only to train with ``hflip=True``, see :class:`~mystyle_pl.data.datamodule.PersonalPhotosDataModule`);
- metadata ``names``: a JSON list of the photos' file names (relative to the album's image folder,
  e.g. ``"0003.png"``), row ``i`` of ``w`` belonging to ``names[i]``. Writers use the album's sorted
  photo order, but readers match **by name, never by position**;
- metadata ``format`` (``"mystyle_pl.anchors"``), ``format_version``, ``w_dim``, ``num_anchors``, and
  ``metadata``: a JSON object of free-form provenance (generator, inversion settings, ...).

>>> import tempfile, torch
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = save_anchors(f"{tmp}/anchors.safetensors", torch.zeros(2, 4), ["a.png", "b.png"], {"steps": 500})
...     anchors = load_anchors(path)
>>> anchors.names, tuple(anchors.w.shape), anchors.metadata, anchors.w_flip is None
(['a.png', 'b.png'], (2, 4), {'steps': 500}, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..generators.fileutil import save_safetensors_atomic

FORMAT_TAG = "mystyle_pl.anchors"
FORMAT_VERSION = "1"
RESERVED_METADATA = ("format", "format_version", "names", "w_dim", "num_anchors", "metadata")


class AnchorsError(ValueError):
    """An anchors file is missing, malformed, or does not match the album."""


@dataclass(frozen=True)
class Anchors:
    """The content of an anchors file (see the module docstring)."""

    w: Tensor  # [N, w_dim] float32, row i = names[i].
    names: list[str]  # Photo file names, unique.
    metadata: dict[str, Any] = field(default_factory=dict)  # Free-form provenance (JSON values).
    w_flip: Tensor | None = None  # [N, w_dim] inversions of the mirrored photos; None = not stored.
    path: Path | None = None  # The file it was read from (for error messages); None = built in memory.

    def __post_init__(self) -> None:
        _check_anchor_tensors(self.w, list(self.names), self.w_flip, where=str(self.path or "anchors"))

    @property
    def w_dim(self) -> int:
        return int(self.w.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, names: Sequence[str]) -> list[int]:
        """The row of each of ``names``; raises :class:`AnchorsError` naming every photo without an anchor."""
        row_of = {name: i for i, name in enumerate(self.names)}
        missing = [name for name in names if name not in row_of]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:20]) + (
                f", ... ({len(missing)} in all)" if len(missing) > 20 else ""
            )
            raise AnchorsError(
                f"{len(missing)} photo(s) have no anchor in {self.path or 'the anchors'}: {shown}. "
                "Anchors are matched by photo file name; recompute the anchors for this album "
                "(or remove those photos from it)."
            )
        return [row_of[name] for name in names]

    def select(self, names: Sequence[str]) -> tuple[Tensor, Tensor | None]:
        """``(w [len(names), w_dim], w_flip or None)`` in the order of ``names`` (matched by name)."""
        rows = torch.as_tensor(self.rows(names), dtype=torch.long)
        w_flip = self.w_flip.index_select(0, rows) if self.w_flip is not None else None
        return self.w.index_select(0, rows), w_flip


def _check_anchor_tensors(w: Tensor, names: list[str], w_flip: Tensor | None, where: str) -> None:
    if not isinstance(w, Tensor) or w.ndim != 2:
        raise AnchorsError(f"{where}: w must be a tensor [N, w_dim], got shape {tuple(getattr(w, 'shape', ()))}")
    if not w.is_floating_point():
        raise AnchorsError(f"{where}: w must be floating point, got {w.dtype}")
    if not all(isinstance(n, str) for n in names):
        raise AnchorsError(f"{where}: names must be strings")
    if len(names) != w.shape[0]:
        raise AnchorsError(f"{where}: {len(names)} names for w of shape [N={w.shape[0]}, w_dim={w.shape[1]}]")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise AnchorsError(f"{where}: duplicate photo names {dupes}")
    if w_flip is not None and (not isinstance(w_flip, Tensor) or tuple(w_flip.shape) != tuple(w.shape)):
        raise AnchorsError(
            f"{where}: w_flip must have the shape of w [N={w.shape[0]}, w_dim={w.shape[1]}], "
            f"got {tuple(getattr(w_flip, 'shape', ()))}"
        )


def save_anchors(
    path: str | os.PathLike,
    w: Tensor,  # [N, w_dim] anchors, row i = names[i].
    names: Sequence[str],  # Photo file names (the album's sorted order by convention).
    metadata: dict[str, Any] | None = None,  # Free-form provenance; values must be JSON-serialisable.
    w_flip: Tensor | None = None,  # [N, w_dim] anchors of the mirrored photos; None = not stored.
) -> Path:
    """Write an anchors file atomically (temp file in the same folder + rename). Returns ``path``."""
    path = Path(path)
    names = list(names)
    _check_anchor_tensors(w, names, w_flip, where=str(path))
    try:
        user_metadata = json.dumps(dict(metadata or {}), sort_keys=True)
    except TypeError as e:
        raise AnchorsError(f"{path}: anchors metadata must be JSON-serialisable ({e})") from e
    header = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "names": json.dumps(names),
        "w_dim": str(int(w.shape[1])),
        "num_anchors": str(len(names)),
        "metadata": user_metadata,
    }
    tensors = {"w": w.detach().to("cpu", torch.float32).contiguous().clone()}
    if w_flip is not None:
        tensors["w_flip"] = w_flip.detach().to("cpu", torch.float32).contiguous().clone()
    return save_safetensors_atomic(tensors, path, header)


def load_anchors(path: str | os.PathLike) -> Anchors:
    """Read an anchors file (safetensors; no unpickling). Raises :class:`AnchorsError` with the path on any problem."""
    path = Path(path)
    if not path.is_file():
        raise AnchorsError(f"anchors file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
            keys = set(f.keys())
            if "w" not in keys:
                raise AnchorsError(f"{path}: no tensor 'w' in this anchors file (tensors: {sorted(keys)})")
            w = f.get_tensor("w")
            w_flip = f.get_tensor("w_flip") if "w_flip" in keys else None
    except (SafetensorError, OSError) as e:
        raise AnchorsError(f"{path}: not a readable safetensors file ({e})") from e
    fmt = header.get("format")
    if fmt is not None and fmt != FORMAT_TAG:
        raise AnchorsError(f"{path}: format {fmt!r} is not an anchors file ({FORMAT_TAG!r})")
    if "names" not in header:
        raise AnchorsError(f"{path}: metadata has no 'names' (the photo file name of each row of w)")
    try:
        names = json.loads(header["names"])
        user_metadata = json.loads(header.get("metadata", "{}"))
    except json.JSONDecodeError as e:
        raise AnchorsError(f"{path}: metadata is not valid JSON ({e})") from e
    if not isinstance(names, list):
        raise AnchorsError(f"{path}: metadata 'names' must be a JSON list")
    # Files written by other tools may carry flat string metadata: keep it, without the reserved keys.
    extra = {k: v for k, v in header.items() if k not in RESERVED_METADATA}
    metadata = {**extra, **(user_metadata if isinstance(user_metadata, dict) else {"metadata": user_metadata})}
    w = w.float()
    w_flip = w_flip.float() if w_flip is not None else None
    try:
        return Anchors(w=w, names=names, metadata=metadata, w_flip=w_flip, path=path)
    except AnchorsError as e:
        raise AnchorsError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
