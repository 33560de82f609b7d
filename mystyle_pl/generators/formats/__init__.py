"""Checkpoint formats: one module each, all returning project generators.

=============  ============================================================  ==================
format         files                                                         module
=============  ============================================================  ==================
``native``     ``*.safetensors`` written by mystyle-pl (architecture inside)  ``native.py``
``nvidia``     stylegan2-ada-pytorch / stylegan3 pickles (``ffhq.pkl``)      ``nvidia_pkl.py``
``rosinality`` rosinality/stylegan2-pytorch ``.pt`` (``g_ema`` state dict);   ``rosinality.py``
               pSp / e4e / ReStyle ``.pt`` (``state_dict`` ``decoder.*``)
``openvino``   MobileStyleGAN's OpenVINO IR (a folder or the random-face      ``openvino_ir.py``
               wheel): converted once by ``convert_openvino_ir``, not sniffed
=============  ============================================================  ==================

``load_generator(path)`` sniffs the format from the file's first bytes; nothing is ever
unpickled with the unrestricted unpickler.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..base import Generator
from . import native, nvidia_pkl, rosinality
from .errors import CheckpointError
from .readers import is_safetensors, starts_like_legacy_torch

FORMAT_NAMES = ("native", "nvidia", "rosinality")
# Keyword options each format's loader takes (load_generator refuses the others by name).
_FORMAT_OPTIONS = {
    "native": {"map_location"},
    "nvidia": {"map_location"},
    "rosinality": {"map_location", "size", "channel_multiplier", "key"},
}


def detect_format(path: str | os.PathLike) -> str:
    """Return the format name of the checkpoint at ``path`` (see ``FORMAT_NAMES``)."""
    path = _existing_file(path)
    if is_safetensors(path):
        return "native"
    if zipfile.is_zipfile(path):  # torch.save's zip container: rosinality-style .pt
        return "rosinality"
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if head.startswith(b"PK\x03\x04"):  # a zip whose central directory is missing
        raise CheckpointError(f"{path}: truncated or corrupt zip archive (torch.save file); copy it again")
    if head[:1] == b"\x80":  # a pickle stream
        # torch.save's legacy (non-zip) files open with a pickled magic number; any other
        # pickle can only be an NVIDIA network pickle (read with an allowlist, never trusted).
        if starts_like_legacy_torch(head):
            return "rosinality"
        return "nvidia"
    raise CheckpointError(
        f"{path}: unrecognised checkpoint format (expected .safetensors from mystyle-pl, an NVIDIA "
        f"stylegan2-ada/stylegan3 .pkl, or a torch .pt: rosinality stylegan2-pytorch, or pSp / e4e / ReStyle)"
    )


def load_generator(path: str | os.PathLike, format: str | None = None, **kwargs) -> Generator:
    """Load a generator checkpoint of any supported format (``format=None`` sniffs it).

    Extra keyword arguments go to the format's loader: ``key=``, ``size=``,
    ``channel_multiplier=`` for torch ``.pt`` files (``rosinality.load``: which generator of a
    file holding several, and the architecture when it cannot be inferred); ``map_location=``
    for every format. An option the format does not take raises :class:`CheckpointError`.
    """
    path = _existing_file(path)
    format = format or detect_format(path)
    unused = sorted(set(kwargs) - _FORMAT_OPTIONS.get(format, set()))
    if unused and format in _FORMAT_OPTIONS:
        raise CheckpointError(
            f"{path}: the option(s) {', '.join(unused)} apply only to torch .pt checkpoints (rosinality, pSp / "
            f"e4e); this file is in the {format!r} format, which needs none of them: drop them"
        )
    if format == "native":
        return native.load(path, **kwargs)
    if format == "nvidia":
        return nvidia_pkl.load(path, **kwargs)
    if format == "rosinality":
        return rosinality.load(path, **kwargs)
    raise ValueError(f"unknown checkpoint format {format!r}; expected one of {FORMAT_NAMES}")


def save_generator(generator: Generator, path: str | os.PathLike, **kwargs) -> Path:
    """Write ``generator`` in the native format (atomic)."""
    return native.save(generator, path, **kwargs)


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    return path


__all__ = ["CheckpointError", "FORMAT_NAMES", "detect_format", "load_generator", "save_generator"]
