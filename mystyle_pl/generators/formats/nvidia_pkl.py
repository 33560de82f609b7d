"""NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3) -> ``StyleGAN2Generator``.

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

The generator is then rebuilt from ``G_ema``'s constructor arguments and its tensors
(``G_ema``'s parameter names are exactly ours) and loaded strictly. Supported: the
unconditional StyleGAN2 generator with the ``skip`` output architecture, from either
repository (stylegan3's ``networks_stylegan2.py`` passes the synthesis options flat).
``num_fp16_res``, ``fp16_channels_last`` and ``fused_modconv_default`` are accepted and
ignored: they only choose the precision / kernel layout of the computation, and this
project computes in fp32 (or under autocast). Refused with a clear error: conditional
models (``c_dim > 0``), the ``orig`` / ``resnet`` architectures, StyleGAN3 (alias-free)
generators, and options with no counterpart here (named in the message).
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

from ..stylegan2 import StyleGAN2Generator
from .errors import CheckpointError
from .native import load_state_strict
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


# --------------------------------------------------------------------------------------
# From records to a StyleGAN2Generator
# --------------------------------------------------------------------------------------

# Generator.__init__(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")

# NVIDIA option -> StyleGAN2Generator argument.
_MAPPING_RENAMES = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier"}
_SYNTHESIS_RENAMES = {
    "channel_base": "channel_base",
    "channel_max": "channel_max",
    "conv_clamp": "conv_clamp",
    "resample_filter": "resample_filter",
    "use_noise": "use_noise",
}
# Options with only one value implemented here.
_REQUIRED_VALUES = {"activation": "lrelu", "architecture": "skip", "kernel_size": 3}
# Options that do not change what the generator computes (only how, or only in training).
_IGNORED = {
    "embed_features",  # label embedding width: only used when c_dim > 0 (refused anyway)
    "w_avg_beta",  # decay of the training-time w_avg tracker
    "num_fp16_res",  # fp16 for the top resolutions: we compute in fp32 / autocast
    "fp16_channels_last",  # memory layout under fp16
    "fused_modconv_default",  # grouped vs shared convolution: same math
}


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> StyleGAN2Generator:
    """Load the ``G_ema`` generator of an NVIDIA stylegan2-ada-pytorch / stylegan3 pickle.

    Nothing from the file is imported or executed (see the module docstring). Falls back
    to ``G`` with a warning when the pickle has no ``G_ema``. When the network has no
    ``w_avg`` buffer (``w_avg_beta=None``), it is estimated from the mapping network.
    ``num_fp16_res`` is ignored: the generator always computes in fp32 (or autocast).

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` for
    anything unreadable or unsupported, naming the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    source = str(path)
    record = select_generator(read_pickle(path, map_location=map_location), source)
    check_supported(record, source)
    config = generator_config(record, source)
    state = flatten_state(record, source)
    try:
        generator = StyleGAN2Generator(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot build a StyleGAN2 generator from {config}: {e}") from e
    estimate_w_avg = "mapping.w_avg" not in state
    if estimate_w_avg:  # MappingNetwork(w_avg_beta=None) does not track it
        state["mapping.w_avg"] = generator.mapping.w_avg.clone()
    load_state_strict(generator, state, source=source)
    if estimate_w_avg:
        warnings.warn(f"{source}: the network has no w_avg; estimating it from 10,000 mapped samples", stacklevel=2)
        generator.mapping.w_avg.copy_(generator.estimate_w_avg())
    return generator.to(map_location) if isinstance(map_location, (str, torch.device)) else generator


def select_generator(data: Any, source: str) -> PersistentRecord:
    """``data["G_ema"]`` (or ``data["G"]`` with a warning, or a bare pickled network)."""
    if isinstance(data, PersistentRecord):
        return data
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a pickled dict with 'G_ema', found {type(data).__name__}")
    if isinstance(data.get("G_ema"), PersistentRecord):
        return data["G_ema"]
    if isinstance(data.get("G"), PersistentRecord):
        warnings.warn(
            f"{source}: no 'G_ema' in the pickle; using 'G' (the raw, non-averaged training weights)", stacklevel=3
        )
        return data["G"]
    raise CheckpointError(
        f"{source}: no generator network ('G_ema' or 'G') in the pickle; it holds {sorted(map(str, data))}"
    )


def check_supported(record: PersistentRecord, source: str) -> None:
    """Refuse StyleGAN3, non-generators and non-``skip`` architectures before reading options."""
    names = {rec.class_name for _, rec in record.walk()}
    synthesis = record.child("synthesis")
    if (
        "SynthesisInput" in names
        or (synthesis is not None and "input" in synthesis.children)
        or "class SynthesisInput" in record.module_src
    ):
        raise CheckpointError(
            f"{source}: this is a StyleGAN3 (alias-free) generator, which mystyle-pl does not support; "
            "use a StyleGAN2 / StyleGAN2-ADA checkpoint"
        )
    if record.class_name != "Generator" or synthesis is None or record.child("mapping") is None:
        raise CheckpointError(
            f"{source}: expected a StyleGAN2 Generator network, found {record.class_name} "
            f"with children {sorted(record.children)}"
        )
    for name, block in synthesis.children.items():
        architecture = block.state.get("architecture", "skip") if isinstance(block, PersistentRecord) else "skip"
        if architecture != "skip":
            raise CheckpointError(
                f"{source}: synthesis.{name} uses architecture={architecture!r}; only 'skip' is supported"
            )


def constructor_options(record: PersistentRecord, source: str) -> dict[str, Any]:
    """The Generator's constructor arguments (``_init_args`` named, merged with ``_init_kwargs``)."""
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs")
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{source}: the generator carries no constructor arguments (init_kwargs)")
    if len(args) > len(_GENERATOR_ARGS):
        raise CheckpointError(f"{source}: the generator was built with {len(args)} positional arguments")
    options = dict(zip(_GENERATOR_ARGS, args, strict=False))  # positional arguments, in order
    options.update(kwargs)
    return options


def generator_config(record: PersistentRecord, source: str) -> dict[str, Any]:
    """``StyleGAN2Generator`` arguments from the pickled Generator's constructor arguments."""
    options = constructor_options(record, source)
    if options.get("c_dim", 0):
        raise CheckpointError(
            f"{source}: conditional generator (c_dim={options['c_dim']}); only unconditional models are supported"
        )
    missing = [k for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if k not in options]
    if missing:
        raise CheckpointError(f"{source}: the generator's constructor arguments lack {missing}")
    config = {k: int(options[k]) for k in ("z_dim", "w_dim", "img_resolution", "img_channels")}
    mapping = dict(options.get("mapping_kwargs") or {})
    synthesis = dict(options.get("synthesis_kwargs") or {})
    # stylegan3's networks_stylegan2.Generator takes the synthesis options flat (**synthesis_kwargs).
    synthesis.update({k: v for k, v in options.items() if k not in _GENERATOR_ARGS})

    problems: list[str] = []
    config.update(_translate(mapping, _MAPPING_RENAMES, "mapping_kwargs", problems))
    config.update(_translate(synthesis, _SYNTHESIS_RENAMES, "synthesis_kwargs", problems))
    layer_features = mapping.get("layer_features")
    if layer_features is not None and layer_features != config["w_dim"]:
        problems.append(f"mapping_kwargs.layer_features={layer_features!r} (only None = w_dim is supported)")
    if problems:
        raise CheckpointError(f"{source}: unsupported generator options: " + "; ".join(problems))

    # The two repositories default conv_clamp differently (None vs 256) and the pickle
    # only records arguments that were passed: read what the layers were built with.
    layer = record.child("synthesis", "b4", "conv1")
    for key in ("conv_clamp", "use_noise"):
        if key not in synthesis and layer is not None and key in layer.state:
            config[key] = layer.state[key]
    if config.get("conv_clamp") is not None:
        config["conv_clamp"] = float(config["conv_clamp"])
    if "resample_filter" in config:
        config["resample_filter"] = [float(t) for t in config["resample_filter"]]
    return config


def _translate(options: dict[str, Any], renames: dict[str, str], group: str, problems: list[str]) -> dict[str, Any]:
    """Map one option group through the tables above, collecting what is unsupported."""
    out = {}
    for key, value in options.items():
        if key in renames:
            out[renames[key]] = value
        elif key in _REQUIRED_VALUES:
            if value != _REQUIRED_VALUES[key]:
                problems.append(f"{group}.{key}={value!r} (only {_REQUIRED_VALUES[key]!r} is supported)")
        elif key not in _IGNORED and key != "layer_features":
            problems.append(f"{group}.{key}={value!r} (unknown option)")
    return out


def flatten_state(record: PersistentRecord, source: str) -> dict[str, torch.Tensor]:
    """The network's ``state_dict`` rebuilt from the records' ``_parameters`` / ``_buffers`` / ``_modules``."""
    state: dict[str, torch.Tensor] = {}
    for prefix, node in record.walk():
        non_persistent = set(node.state.get("_non_persistent_buffers_set") or ())
        tensors = dict(node.state.get("_parameters") or {})
        tensors.update({k: v for k, v in (node.state.get("_buffers") or {}).items() if k not in non_persistent})
        for name, tensor in tensors.items():
            if tensor is None:
                continue
            key = f"{prefix}.{name}" if prefix else name
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{source}: {key} is a {type(tensor).__name__}, not a tensor")
            state[key] = tensor.detach()
        for name, child in node.children.items():
            if child is not None and not isinstance(child, PersistentRecord):
                raise CheckpointError(f"{source}: submodule {prefix}.{name} is not a network record")
    return state


__all__ = [
    "AttrDict",
    "PersistentRecord",
    "RestrictedUnpickler",
    "check_supported",
    "flatten_state",
    "generator_config",
    "load",
    "read_pickle",
    "select_generator",
]
