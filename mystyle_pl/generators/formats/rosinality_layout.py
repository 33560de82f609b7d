"""rosinality/stylegan2-pytorch's generator layout -> ours: the tensor names, the transforms and the
architecture inferred from the shapes (:mod:`.rosinality` reads the checkpoints).

Layout of rosinality's ``Generator`` (``model.py``) and where each tensor goes
-------------------------------------------------------------------------------
==================================  ======================  =========================================
rosinality                          shape                   ours
==================================  ======================  =========================================
``style.{i}.weight/bias`` (i>=1)    [D, D] / [D]            ``mapping.fc{i-1}.weight/bias``
``input.input``                     [1, C4, 4, 4]           ``synthesis.b4.const`` [C4, 4, 4]
``conv1.*``                         styled conv             ``synthesis.b4.conv1.*``
``to_rgb1.*``                       toRGB                   ``synthesis.b4.torgb.*``
``convs.{2k}.*`` / ``convs.{2k+1}`` styled convs            ``synthesis.b{8*2^k}.conv0.*`` / ``conv1.*``
``to_rgbs.{k}.*``                   toRGB                   ``synthesis.b{8*2^k}.torgb.*``
``noises.noise_{j}``                [1, 1, r, r]            ``noise_const`` [r, r] of layer j
==================================  ======================  =========================================

Inside a styled conv: ``conv.weight`` [1, out, in, k, k] -> ``weight`` [out, in, k, k];
``conv.modulation.weight/bias`` -> ``affine.weight/bias``; ``noise.weight`` [1] ->
``noise_strength`` []; ``activate.bias`` -> ``bias``. Inside a toRGB: the same ``conv.*``
and ``bias`` [1, 3, 1, 1] -> ``bias`` [3]. Noise layer j: 0 is ``b4.conv1``, j >= 1 is the
layer of ``convs.{j-1}``. The FIR kernels (``conv.blur.kernel``, ``upsample.kernel``) are
buffers derived from the [1, 3, 3, 1] filter; they are checked and dropped, ours are
built from ``resample_filter``.

Why the weights copy unchanged (the math, checked against ``model.py``)
-----------------------------------------------------------------------
* ``EqualLinear(lr_mul)`` computes ``lrelu(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul) * sqrt(2)``:
  exactly our ``FullyConnectedLayer`` (``weight_gain``, ``bias_gain``, lrelu gain sqrt(2)).
  Modulations are ``EqualLinear(lr_mul=1, bias_init=1)`` like our affines.
* ``ModulatedConv2d`` multiplies the weight by ``scale = 1/sqrt(in*k*k)`` *before*
  modulation and demodulation; ours does not scale. Demodulation divides the scale out
  again, so the two agree up to the 1e-8 epsilon inside the rsqrt (relative 1e-8).
* toRGB (no demodulation): rosinality ``scale * W * style`` with ``scale = 1/sqrt(in)``;
  ours multiplies the style by ``weight_gain = 1/sqrt(in)``: the same product.
* The up-sampling conv (transposed, stride 2, unflipped weight, then a 4x4 blur padded
  (1, 1) with gain 4) and the skip up-sampler (pad (2, 1), gain 4) are what our
  ``conv2d_up2`` / ``upsample2d`` do with the [1, 3, 3, 1] filter.
* Noise is added after the convolution, then bias and lrelu * sqrt(2): as ours.

Architecture is inferred from the tensor shapes (resolution from the number of
``to_rgbs``, channels per resolution -> ``channel_base`` / ``channel_max``, ``n_mlp`` from
the ``style.*`` count, the latent width from ``style.1``) and verified against every
tensor. ``size=`` / ``channel_multiplier=`` override the inference (rosinality's channel
table is ``min(16384 * channel_multiplier // res, 512)``). The mapping learning-rate
multiplier is not stored in the file; rosinality's default 0.01 (``lr_mlp``) is assumed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from ..ops import setup_filter
from ..stylegan2 import DEFAULT_RESAMPLE_FILTER
from .errors import CheckpointError

ROSINALITY_LR_MLP = 0.01  # Generator(lr_mlp=0.01): not stored in checkpoints.

Transform = Callable[[torch.Tensor, str], "torch.Tensor | None"]  # None: verified, nothing to store


# --------------------------------------------------------------------------------------
# Tensor transforms (each gets the tensor and its rosinality name, for error messages)
# --------------------------------------------------------------------------------------


def _same(t: torch.Tensor, name: str) -> torch.Tensor:
    return t


def _drop_batch(t: torch.Tensor, name: str) -> torch.Tensor:
    """``[1, ...]`` -> ``[...]`` (modulated conv weights, the constant input)."""
    if t.ndim < 2 or t.shape[0] != 1:
        raise _BadTensor(f"{name} has shape {tuple(t.shape)}, expected a leading dimension of 1")
    return t[0]


def _to_scalar(t: torch.Tensor, name: str) -> torch.Tensor:
    """Noise strength ``[1]`` -> ``[]``."""
    if t.numel() != 1:
        raise _BadTensor(f"{name} has shape {tuple(t.shape)}, expected one value")
    return t.reshape(())


def _flatten(t: torch.Tensor, name: str) -> torch.Tensor:
    """toRGB bias ``[1, C, 1, 1]`` -> ``[C]``."""
    return t.reshape(-1)


def _noise_map(t: torch.Tensor, name: str) -> torch.Tensor:
    """Noise ``[1, 1, r, r]`` -> ``[r, r]``."""
    if t.ndim != 4 or t.shape[:2] != (1, 1):
        raise _BadTensor(f"{name} has shape {tuple(t.shape)}, expected [1, 1, r, r]")
    return t[0, 0]


def _check_fir(t: torch.Tensor, name: str) -> None:
    """The blur / up-sampling kernels must be the [1, 3, 3, 1] filter times 4 (gain of 2x up)."""
    expected = setup_filter(DEFAULT_RESAMPLE_FILTER) * 4
    if t.shape != expected.shape or not torch.allclose(t.detach().float().cpu(), expected, atol=1e-6):
        raise _BadTensor(f"{name} is not the [1, 3, 3, 1] FIR kernel; other resampling filters are not supported")


class _BadTensor(Exception):
    pass


# --------------------------------------------------------------------------------------
# The mapping table
# --------------------------------------------------------------------------------------

# Parts of a StyledConv: rosinality suffix -> (our suffix or None = verify and drop, transform).
STYLED_CONV_PARTS: dict[str, tuple[str | None, Transform]] = {
    "conv.weight": ("weight", _drop_batch),
    "conv.modulation.weight": ("affine.weight", _same),
    "conv.modulation.bias": ("affine.bias", _same),
    "noise.weight": ("noise_strength", _to_scalar),
    "activate.bias": ("bias", _same),
    "conv.blur.kernel": (None, _check_fir),
}
# Parts of a ToRGB.
TO_RGB_PARTS: dict[str, tuple[str | None, Transform]] = {
    "conv.weight": ("weight", _drop_batch),
    "conv.modulation.weight": ("affine.weight", _same),
    "conv.modulation.bias": ("affine.bias", _same),
    "bias": ("bias", _flatten),
    "upsample.kernel": (None, _check_fir),
}


def _conv_layer(index: int) -> str:
    """``convs.{index}`` -> our layer: two per block from 8x8 up, conv0 (up-sampling) first."""
    return f"synthesis.b{8 * 2 ** (index // 2)}.{'conv0' if index % 2 == 0 else 'conv1'}"


def _noise_layer(index: int) -> str:
    """``noises.noise_{index}``: 0 feeds ``conv1`` (4x4), then one per ``convs`` entry."""
    return "synthesis.b4.conv1" if index == 0 else _conv_layer(index - 1)


def map_name(key: str) -> tuple[str | None, Transform] | None:
    """Our name and transform for one rosinality key; ``None`` when the key is unknown.

    A returned name of ``None`` means "verify with the transform, then drop".
    """
    if m := re.fullmatch(r"style\.(\d+)\.(weight|bias)", key):
        index = int(m[1])
        return (f"mapping.fc{index - 1}.{m[2]}", _same) if index >= 1 else None
    if key == "input.input":
        return "synthesis.b4.const", _drop_batch
    if m := re.fullmatch(r"noises\.noise_(\d+)", key):
        return f"{_noise_layer(int(m[1]))}.noise_const", _noise_map
    if m := re.fullmatch(r"(conv1|convs\.(\d+))\.(.+)", key):
        layer = "synthesis.b4.conv1" if m[1] == "conv1" else _conv_layer(int(m[2]))
        return _part(layer, STYLED_CONV_PARTS, m[3])
    if m := re.fullmatch(r"(to_rgb1|to_rgbs\.(\d+))\.(.+)", key):
        layer = "synthesis.b4.torgb" if m[1] == "to_rgb1" else f"synthesis.b{8 * 2 ** int(m[2])}.torgb"
        return _part(layer, TO_RGB_PARTS, m[3])
    return None


def _part(layer: str, parts: dict[str, tuple[str | None, Transform]], suffix: str):
    if suffix not in parts:
        return None
    ours, transform = parts[suffix]
    return (f"{layer}.{ours}" if ours else None), transform


def convert_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename and reshape every tensor; fail on any key the table does not know."""
    unknown = sorted(k for k in state if map_name(k) is None)
    if unknown:
        more = f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else ""
        raise CheckpointError(
            f"{source}: unexpected tensors for a rosinality StyleGAN2 generator: {', '.join(unknown[:8])}{more}"
        )
    converted = {}
    for key, tensor in state.items():
        ours, transform = map_name(key)
        try:
            value = transform(tensor, key)
        except _BadTensor as e:
            raise CheckpointError(f"{source}: {e}") from None
        if ours is not None:
            converted[ours] = value
    return converted


# --------------------------------------------------------------------------------------
# Architecture inference
# --------------------------------------------------------------------------------------


def _indices(state: dict[str, Any], pattern: str) -> list[int]:
    return sorted(int(m[1]) for k in state if (m := re.fullmatch(pattern, k)))


def infer_config(
    state: dict[str, torch.Tensor],
    source: str,
    size: int | None = None,
    channel_multiplier: float | None = None,
) -> dict[str, Any]:
    """``StyleGAN2Generator`` arguments from a rosinality ``g_ema`` state dict's shapes."""
    hint = architecture_hint(source)
    styles = _indices(state, r"style\.(\d+)\.weight")
    rgbs = _indices(state, r"to_rgbs\.(\d+)\.conv\.weight")
    for name in ("input.input", "to_rgb1.conv.weight"):
        if name not in state:
            raise CheckpointError(f"{source}: no '{name}' tensor; not a rosinality StyleGAN2 generator")
    if not styles or styles != list(range(1, len(styles) + 1)):
        raise CheckpointError(f"{source}: mapping layers style.{{i}} must be numbered 1..n, found {styles}")
    if rgbs != list(range(len(rgbs))):
        raise CheckpointError(f"{source}: to_rgbs.{{k}} must be numbered 0..n-1, found {rgbs}")

    img_resolution = 2 ** (len(rgbs) + 2)
    if size is not None and size != img_resolution:
        raise CheckpointError(
            f"{source}: size={size} was given but the checkpoint has {len(rgbs)} to_rgbs layers, "
            f"i.e. {img_resolution} px"
        )
    channels = {4: state["input.input"].shape[1]}
    channels.update({8 * 2**k: state[f"to_rgbs.{k}.conv.weight"].shape[2] for k in rgbs})
    if channel_multiplier is not None:
        channel_base, channel_max = int(16384 * channel_multiplier), 512  # rosinality's channel table
    else:
        channel_base, channel_max = fit_channel_schedule(channels)
    wrong = [
        f"{res} px: {ch} channels (schedule gives {min(channel_base // res, channel_max)})"
        for res, ch in channels.items()
        if min(channel_base // res, channel_max) != ch
    ]
    if wrong:
        raise CheckpointError(
            f"{source}: the channel schedule min({channel_base} // res, {channel_max}) does not fit the "
            f"checkpoint ({'; '.join(wrong)}); {hint}"
        )
    style1 = state["style.1.weight"]
    return dict(
        z_dim=int(style1.shape[1]),
        w_dim=int(state[f"style.{styles[-1]}.weight"].shape[0]),
        img_resolution=img_resolution,
        img_channels=int(state["to_rgb1.conv.weight"].shape[1]),
        channel_base=channel_base,
        channel_max=channel_max,
        mapping_layers=len(styles),
        mapping_lr_multiplier=ROSINALITY_LR_MLP,
        resample_filter=[float(t) for t in DEFAULT_RESAMPLE_FILTER],
        conv_clamp=None,
        use_noise=True,
    )


def fit_channel_schedule(channels: dict[int, int]) -> tuple[int, int]:
    """``(channel_base, channel_max)`` with ``min(channel_base // res, channel_max) == channels[res]``.

    ``channel_max`` is the widest layer; ``channel_base`` comes from the first resolution
    below it (StyleGAN2 halves the channels as the resolution doubles). When every
    resolution is at the maximum, any large enough base works: ``channel_max * max_res``.
    The caller verifies the result against every resolution.
    """
    channel_max = max(channels.values())
    narrower = sorted(res for res, ch in channels.items() if ch < channel_max)
    if not narrower:
        return channel_max * max(channels), channel_max
    res = narrower[0]
    return channels[res] * res, channel_max


def architecture_hint(source: str) -> str:
    return (
        f"state the architecture with `mystyle-pl convert {source} OUT.safetensors --size SIZE --channel-multiplier M` "
        "(the same options work for `mystyle-pl info`), or load_generator(path, size=, channel_multiplier=) in Python"
    )
