"""Reading NVIDIA network pickles without running them: a restricted unpickler that turns
``torch_utils.persistence`` objects into inert :class:`PersistentRecord` s (``nvidia_pkl.py``
builds the generator from them).

What the files are
------------------
``network-snapshot-*.pkl`` and the published ``ffhq.pkl`` are written with plain
``pickle.dump`` of a dict::

    {"G": ..., "D": ..., "G_ema": ..., "augment_pipe": ... or None,
     "training_set_kwargs": dict or None}

The networks are ``torch.nn.Module`` instances of classes decorated with
``torch_utils.persistence.persistent_class``. Such an object pickles itself as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta`` is a dict::

    type="class", version=6, class_name="Generator",
    module_src="<the full source of training/networks.py>",
    state=<the module's __dict__>

``state`` is what ``nn.Module`` keeps in its ``__dict__``: ``_parameters``, ``_buffers``
and ``_modules`` (child networks, themselves persistent objects), hook tables
(``collections.OrderedDict``), plain attributes (some of them numpy scalars, such as
``weight_gain``), and the constructor arguments ``_init_args`` / ``_init_kwargs``
(``dnnlib.util.EasyDict`` for the nested ``mapping_kwargs`` / ``synthesis_kwargs``).
Tensors are pickled the way torch pickles them outside ``torch.save``:
``torch._utils._rebuild_parameter(data, requires_grad, hooks)`` around
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``,
with the storage as ``torch.storage._load_from_bytes(<legacy torch.save bytes>)``
(torch 1.7 to 2.x all write this; a tensor carrying Python attributes is wrapped in
``torch._tensor._rebuild_from_type_v2``).

How it is read here
-------------------
Unpickling the real way would ``exec`` ``module_src`` (arbitrary code from the file).
This module never does: a restricted unpickler resolves only a short allowlist of
globals, each mapped to a harmless stand-in:

* ``_reconstruct_persistent_obj`` -> :class:`PersistentRecord` (class name, state,
  constructor arguments; the source text is kept as inert text, never executed),
* ``EasyDict`` -> a plain ``dict`` subclass, ``collections.OrderedDict``, ``set``,
* the torch rebuild functions -> plain tensors; nested storage bytes are read with
  ``torch.load(..., weights_only=True)``,
* numpy scalars / dtypes / arrays -> decoded numbers or inert records (numpy is not
  imported or called).

Any other global is refused with a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .readers import TORCH_LEGACY_MAGIC, AllowlistUnpickler, refused_global_in

# --------------------------------------------------------------------------------------
# Inert stand-ins for the objects a network pickle contains
# --------------------------------------------------------------------------------------


class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` would have rebuilt, as plain data.

    ``class_name`` is the network class (``"Generator"``, ``"SynthesisLayer"``, ...),
    ``state`` the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
    attributes, ``_init_args``, ``_init_kwargs``). ``module_src`` is kept only as text to
    recognise the architecture family; it is never executed.
    """

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str = "", version: Any = None):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src
        self.version = version

    @classmethod
    def from_meta(cls, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise _Malformed(f"a persistent object whose metadata is not a class record ({type(meta).__name__})")
        class_name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(class_name, str) or not isinstance(state, dict):
            raise _Malformed("a persistent object without a class name or state dict")
        src = meta.get("module_src")
        return cls(class_name, state, src if isinstance(src, str) else "", meta.get("version"))

    def __setstate__(self, state: Any) -> None:
        # The real pickles never send state after the reconstruct call.
        raise _Malformed("unexpected state for a persistent object")

    @property
    def children(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def child(self, *path: str) -> PersistentRecord | None:
        node: Any = self
        for name in path:
            node = node.children.get(name) if isinstance(node, PersistentRecord) else None
        return node if isinstance(node, PersistentRecord) else None

    def walk(self, prefix: str = "", _seen: set[int] | None = None):
        """Yield ``(dotted_name, record)`` for this record and all its descendants.

        Each record is visited once: a crafted pickle can make the module graph cyclic.
        """
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self.children.items():
            if isinstance(child, PersistentRecord):
                yield from child.walk(f"{prefix}.{name}" if prefix else name, seen)

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


class AttrDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


class _Malformed(Exception):
    """Raised inside the unpickler; turned into a CheckpointError that names the file."""


class _TensorTypeMarker:
    """Stands in for ``torch.Tensor`` / ``nn.Parameter`` when a pickle names the type."""


class _NumpyDType:
    """An inert ``numpy.dtype``: its type code (``'f8'``) and byte order."""

    def __init__(self, code: Any = "", align: Any = False, copy: Any = False):
        self.code = code if isinstance(code, str) else ""
        self.byteorder = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = "<" if state[1] in ("|", "=") else state[1]


class _NumpyArray:
    """An inert numpy array (the numbers are not needed: kept as raw state)."""

    def __init__(self, *args: Any):
        self.state: Any = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


_STRUCT_FORMATS = {
    "f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q", "b1": "?",
}  # fmt: skip


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` decoded to a Python number (no numpy)."""
    if isinstance(dtype, _NumpyDType) and isinstance(data, bytes) and dtype.code in _STRUCT_FORMATS:
        fmt = dtype.byteorder + _STRUCT_FORMATS[dtype.code]
        if struct.calcsize(fmt) == len(data):
            return struct.unpack(fmt, data)[0]
    return _NumpyArray(dtype, data)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode``: protocol-2 pickles write ``bytes`` as ``encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Malformed("_codecs.encode used for something other than bytes")
    return text.encode("latin1")


def _tensor_from_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> torch.Tensor:
    """``_rebuild_parameter[_with_state]``: we only need the data."""
    if not isinstance(data, torch.Tensor):
        raise _Malformed(f"a parameter whose data is {type(data).__name__}, not a tensor")
    return data


def _tensor_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2``: ``func`` is itself an allowlisted global."""
    if not callable(func) or not isinstance(args, tuple):
        raise _Malformed("a malformed tensor record")
    tensor = func(*args)
    if not isinstance(tensor, torch.Tensor):
        raise _Malformed(f"a tensor record that rebuilt a {type(tensor).__name__}")
    return tensor


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` without the file's hooks or metadata."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Malformed(f"a tensor whose storage is {type(storage).__name__}")
    return torch._utils._rebuild_tensor_v2(
        storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict()
    )


# --------------------------------------------------------------------------------------
# The restricted unpickler
# --------------------------------------------------------------------------------------


class RestrictedUnpickler(AllowlistUnpickler):
    """Resolves only the globals an NVIDIA network pickle needs, each to an inert stand-in."""

    def __init__(self, file, source: str, map_location: Any = "cpu"):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("_codecs", "encode"): _latin1_encode,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _tensor_from_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _tensor_from_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): _tensor_from_type,
            ("torch", "Tensor"): _TensorTypeMarker,
            ("torch.nn.parameter", "Parameter"): _TensorTypeMarker,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord.from_meta,
            ("dnnlib.util", "EasyDict"): AttrDict,
            ("dnnlib", "EasyDict"): AttrDict,
            ("numpy", "dtype"): _NumpyDType,
            ("numpy", "ndarray"): _NumpyArray,
        }
        for core in ("numpy.core", "numpy._core"):  # numpy < 2 and >= 2
            allowed[(f"{core}.multiarray", "scalar")] = _numpy_scalar
            allowed[(f"{core}.multiarray", "_reconstruct")] = _NumpyArray
            allowed[(f"{core}.numeric", "_frombuffer")] = _NumpyArray
        super().__init__(file, source, allowed)
        self.map_location = map_location

    def refuse_global(self, module: str, name: str) -> Exception:
        if module.startswith("dnnlib.tflib"):
            return CheckpointError(
                f"{self.source}: this is a TensorFlow StyleGAN pickle ({module}.{name}); convert it to a "
                "PyTorch pickle first with NVlabs/stylegan2-ada-pytorch legacy.py"
            )
        return CheckpointError(
            f"{self.source}: refused to load global '{module}.{name}': NVIDIA network pickles are read "
            "with an allowlist and nothing from the file is imported or executed"
        )

    def refuse_persistent_id(self, pid: Any) -> Exception:
        return CheckpointError(
            f"{self.source}: the pickle refers to external objects (persistent id {str(pid)[:40]!r}); "
            "it is not an NVIDIA network pickle"
        )

    def _load_storage(self, data: Any) -> torch.storage.TypedStorage:
        """``torch.storage._load_from_bytes``: a nested legacy ``torch.save`` of one storage."""
        if not isinstance(data, (bytes, bytearray)):
            raise _Malformed("a tensor storage that is not bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TypedStorage deprecation, pickle-protocol notes
                storage = torch.load(io.BytesIO(bytes(data)), map_location=self.map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            refused = refused_global_in(e)
            if refused:
                raise CheckpointError(
                    f"{self.source}: refused to load global '{refused}' inside a tensor storage"
                ) from None
            raise _Malformed(f"an unreadable tensor storage ({e})") from None
        if not isinstance(storage, torch.storage.TypedStorage):
            raise _Malformed(f"a tensor storage that holds a {type(storage).__name__}")
        return storage


def read_pickle(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (records instead of networks)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f, source=str(path), map_location=map_location).load()
    except (CheckpointError, OSError):
        raise
    except _Malformed as e:
        raise CheckpointError(f"{path}: not a valid NVIDIA network pickle: it contains {e}") from None
    except Exception as e:  # noqa: BLE001 - the pickle machinery raises many kinds on bad bytes
        raise CheckpointError(
            f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); download or copy it again"
        ) from None
    if isinstance(data, int) and data == TORCH_LEGACY_MAGIC:
        raise CheckpointError(
            f"{path}: this is a torch.save file, not an NVIDIA network pickle; load it with format='rosinality'"
        )
    return data
