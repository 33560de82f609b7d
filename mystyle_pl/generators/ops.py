"""Low-level StyleGAN2 operations in plain PyTorch.

These follow the math of NVIDIA's stylegan2-ada-pytorch reference implementations
(``torch_utils/ops/{upfirdn2d,bias_act,conv2d_resample}.py`` with ``impl='ref'``) so that
its weights reproduce its images. Everything here is differentiable, device-agnostic and
works under autocast; no custom CUDA kernels are needed.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """A separable FIR filter as a normalised 2-D kernel ``[k, k]`` (sums to 1).

    >>> setup_filter([1, 3, 3, 1]).shape
    torch.Size([4, 4])
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"resample filter must be a non-empty list of taps, got {list(taps)!r}")
    f = torch.outer(f, f)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that its mean square along ``dim`` is one (the mapping network's input norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    dim: int = 1,
) -> torch.Tensor:
    """Add a bias along ``dim``, apply ``act`` ('linear' or 'lrelu'), scale by ``gain``, clamp.

    ``gain=None`` uses the activation's default gain (sqrt(2) for lrelu, 1 for linear);
    ``clamp=None`` disables clamping.
    """
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
        default_gain = SQRT2
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unknown activation {act!r}; expected 'linear' or 'lrelu'")
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the 2-D FIR ``f``, then downsample.

    ``padding`` is ``(x0, x1, y0, y1)``; negative values crop. Matches the reference
    ``upfirdn2d`` of stylegan2-ada-pytorch (``flip_filter=False``).
    """
    batch, channels, height, width = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    # conv2d is a correlation: flip the filter to convolve (a no-op for symmetric filters).
    kernel = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    kernel = kernel[None, None].expand(channels, 1, *kernel.shape)
    x = F.conv2d(x, kernel, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample an image by ``up`` with the FIR filter ``f`` (keeps the image's DC gain)."""
    kw = f.shape[-1]
    p0 = (kw + up - 1) // 2
    p1 = (kw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """A ``k x k`` convolution that doubles the resolution, as StyleGAN2 does it.

    A stride-2 transposed convolution (weights not flipped) followed by FIR smoothing.
    ``weight`` is ``[out, in/groups, k, k]``.
    """
    out_channels, in_per_group, kh, kw = weight.shape
    fw = f.shape[-1]
    up = 2
    # Padding bookkeeping of conv2d_resample (padding = k // 2) for up=2.
    pad = kw // 2
    px0 = pad + (fw + up - 1) // 2 - (kw - 1)
    px1 = pad + (fw - up) // 2 - (kw - up)
    pt = max(min(-px0, -px1), 0)
    if groups == 1:
        w = weight.transpose(0, 1)
    else:
        w = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw)
        w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
    x = F.conv_transpose2d(x, w.to(x.dtype), stride=up, padding=pt, groups=groups)
    p0, p1 = px0 + pt, px1 + pt
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated (and optionally demodulated) convolution.

    Args:
        x: input features ``[B, in, H, W]``.
        weight: shared kernel ``[out, in, k, k]``.
        styles: per-sample input-channel scales ``[B, in]``.
        noise: optional additive noise broadcastable to ``[B, out, H', W']``.
        up: 1 or 2 (2 doubles the resolution, needs ``resample_filter``).
        demodulate: normalise each output channel to unit expected variance.
        fused: one grouped convolution per batch (fast for inference / batch 1) instead of
            a shared convolution with activation scaling (fast for training). Same math.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must be [B={batch}, in={in_channels}], got {tuple(styles.shape)}")
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")

    dcoefs = None
    if demodulate:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [B, out, in, k, k]
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [B, out]

    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        if up == 2:
            x = conv2d_up2(x, weight, resample_filter)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=kw // 2)
        if dcoefs is not None and noise is not None:
            # One fused multiply-add (one rounding), as the reference's fma(): bit-identical results.
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    w = w.reshape(batch * out_channels, in_channels, kh, kw)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    if up == 2:
        x = conv2d_up2(x, w, resample_filter, groups=batch)
    else:
        x = F.conv2d(x, w.to(x.dtype), padding=kw // 2, groups=batch)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
