"""MobileStyleGAN (Belousov 2021, arXiv 2104.04767) in plain PyTorch, converted from OpenVINO IR.

MobileStyleGAN is a StyleGAN2 student: the teacher's mapping network, then a light synthesis
network that predicts Haar-wavelet coefficients instead of pixels and upsamples with inverse
wavelet transforms (IDWT). The FFHQ 1024 weights are public as an OpenVINO IR v10 export
(``MappingNetwork.{xml,bin}``, ``SynthesisNetwork.{xml,bin}`` inside the ``random-face`` wheel);
``convert_openvino_ir`` turns them into a native mystyle-pl file.

Architecture (FFHQ 1024, ``channels=(512, 512, 512, 512, 512, 256, 128, 64)``)::

    mapping     z [B,512] -> pixel norm -> 8 x (FC 512 + lrelu*sqrt2), lr multiplier 0.01 (= StyleGAN2's)
    synthesis   const [512,4,4]
      b4.conv   modulated dense 3x3 conv 512->512 (+ noise, bias, lrelu 0.2)                 4 px
      bR        R = 8 .. 512, one block per further entry of ``channels`` (c_prev -> c):
        up      modulate c_prev channels, read them as Haar coefficients of c_prev/4 channels
                (LL, then LH/HL/HH per channel), inverse Haar transform: 2x resolution
        conv0   modulated depthwise-separable 3x3 conv c_prev/4 -> c (+ noise, bias, lrelu)  R px
        conv1   modulated depthwise-separable 3x3 conv c -> c (+ noise, bias, lrelu)         R px
      to_img    modulated 1x1 conv c -> 12 + bias: Haar coefficients of the RGB image       512 px
      idwt      inverse Haar transform -> RGB image [B, 3, 1024, 1024], roughly in [-1, 1] (not clamped)

W+ (``num_ws = 3 * len(channels) - 1 = 23``): one ``w`` per modulation, in this order (index:
layer) -- 0: ``b4.conv``; then for each block ``bR`` in increasing R: ``bR.up``, ``bR.conv0``,
``bR.conv1`` (indices 1-3 for b8, ..., 19-21 for b512); 22: ``to_img``. The exported graph feeds
one ``w`` to all 23. ``MobileSynthesisNetwork.ws_layers`` lists the order; upstream's own W+
layout (where ``up`` shares a slot with ``conv0`` and one slot is unused) converts with
``ws_from_upstream``. The upstream model also has to_img heads at every resolution; only the last
one reaches the image, so the export (and this port) has just that one.

Noise: the export has no noise input; it adds a fixed map per styled conv (15 of them), i.e.
``strength x noise`` folded into one constant. The converter splits it into ``noise_strength``
(the map's RMS) and a unit-RMS ``noise_const`` buffer. ``noise_mode='const'`` reproduces the
export; ``'random'`` draws fresh per-sample normal noise at the same strength (upstream's training
behaviour); ``'none'`` adds no noise.

Parameterisation (what the export folded, and how weights are kept trainable):

* mapping: the export multiplies the equalised-lr gains into the weights (``W * 0.01/sqrt(512)``,
  ``b * 0.01``). They are divided out again, so the mapping is exactly StyleGAN2's
  ``MappingNetwork`` (stored weights of std ~100 scaled by ``0.01/sqrt(512)`` at run time).
* synthesis convs: upstream demodulates with a *fixed* per-output-channel factor computed from the
  weights and a frozen random ``style_inv`` buffer (never from the styles). The export folded that
  factor (and the modulation's ``1/sqrt(fan_in)``) into the weights, and it cannot be separated
  again from the product. This port keeps the folded product as the trainable weight: every weight
  tensor (affines, dense, depthwise, pointwise and to_img convs) is stored at unit RMS and multiplied
  by a fixed scalar ``weight_gain`` buffer at run time -- StyleGAN2's equalised learning rate, with
  the gain measured at conversion instead of ``1/sqrt(fan_in)`` (random init uses ``1/sqrt(fan_in)``).
  Biases, noise strengths and the constant input are stored as they are used.

Learning rate: because every stored weight has unit RMS, the first Adam steps move each weight
tensor by ``lr`` relative to its RMS, exactly as for StyleGAN2's equalised-lr weights at init
(``benchmarks/mobilestylegan.py --lr-probe``: ||dW|| / ||W|| / lr = 1.00 for this port's conv,
affine and to_img weights and for a fresh StyleGAN2 alike; biases, stored as used, move less).
So learning rates carry over from StyleGAN2 fine-tuning; Adam at 3e-4 (PTI's value for StyleGAN2)
is the recommended default. Fitting one w to another face for 20 steps (MSE at 256 px) converges
at every rate from 1e-4 to 1e-2 (loss 0.56 -> 0.23, 0.11, 0.06, 0.03, 0.01), but the images of
other latents change more and more (MSE 0.05, 0.17, 0.19, 0.23, 0.28), and 1e-2 overshoots on its
first step: stay at or below 1e-3.

Speed: activations run in the channels_last memory format and 1x1 convolutions as batched matrix
products with the modulation folded into the weights; on one CPU thread the 1024 px forward runs
at about OpenVINO's speed (``benchmarks/mobilestylegan.py``).
"""

from __future__ import annotations

import math
import os
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, check_noise_mode, check_ws
from .fileutil import sha256_file
from .formats.errors import CheckpointError
from .stylegan2 import MappingNetwork

DEFAULT_CHANNELS = (512, 512, 512, 512, 512, 256, 128, 64)
LRELU_SLOPE = 0.2
HAAR_BANDS = 4  # LL, LH, HL, HH


# ----------------------------------------------------------------------------------------
# inverse Haar wavelet transform


def inverse_haar(coeffs: torch.Tensor) -> torch.Tensor:
    """One level of the inverse 2-D Haar transform (db1), MobileStyleGAN's channel layout.

    ``coeffs [B, 4C, h, w]`` holds the low band ``LL`` of all ``C`` channels first, then the three
    high bands of each channel in turn (``LH, HL, HH`` of channel 0, of channel 1, ...; ``LH`` is
    high-pass along the height). Returns ``[B, C, 2h, 2w]``; an orthonormal transform
    (``pixel(2i+a, 2j+b) = (LL + sa*LH + sb*HL + sa*sb*HH) / 2`` with ``s0 = 1, s1 = -1``).
    This is the readable reference; the network runs the same transform as a grouped transposed
    convolution (``haar_channel_order``, ``HaarUpsample``) and a test checks that they agree.

    >>> inverse_haar(torch.tensor([4.0, 0, 0, 0]).reshape(1, 4, 1, 1)).flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    batch, channels4, height, width = coeffs.shape
    if channels4 % HAAR_BANDS:
        raise ValueError(f"inverse_haar needs [B, 4*C, h, w] coefficients, got {channels4} channels")
    channels = channels4 // HAAR_BANDS
    ll = coeffs[:, :channels]
    lh, hl, hh = coeffs[:, channels:].reshape(batch, channels, 3, height, width).unbind(2)
    rows_even, rows_odd = ll + lh, ll - lh  # low-pass along the width, rows 2i and 2i+1
    high_even, high_odd = hl + hh, hl - hh  # high-pass along the width
    corners = torch.stack(
        [rows_even + high_even, rows_even - high_even, rows_odd + high_odd, rows_odd - high_odd], dim=2
    )  # [B, C, 4, h, w]: (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1)
    return F.pixel_shuffle(corners.reshape(batch, channels4, height, width) * 0.5, 2)


# Rows: the 4 output pixels (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1); columns: LL, LH, HL, HH.
HAAR_SYNTHESIS = 0.5 * torch.tensor([[1.0, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]])


def haar_channel_order(channels: int) -> torch.Tensor:
    """Permutation from MobileStyleGAN's coefficient layout to "each channel's 4 bands together".

    ``coeffs[:, order]`` lists ``LL, LH, HL, HH`` of channel 0, then of channel 1, ... (what a
    grouped convolution with ``groups=channels`` wants).

    >>> haar_channel_order(2).tolist()
    [0, 2, 3, 4, 1, 5, 6, 7]
    """
    bands = [[c] + [channels + 3 * c + k for k in range(3)] for c in range(channels)]
    return torch.tensor([i for group in bands for i in group])


def haar_kernel(channels: int) -> torch.Tensor:
    """Transposed-conv weight ``[4C, 1, 2, 2]`` of the inverse Haar transform (``groups=C``, stride 2)."""
    return HAAR_SYNTHESIS.t().reshape(1, HAAR_BANDS, 2, 2).repeat(channels, 1, 1, 1).reshape(-1, 1, 2, 2)


# ----------------------------------------------------------------------------------------
# layers
#
# Activations run in the channels_last memory format (NHWC): depthwise convolutions are several
# times faster in it, and a 1x1 convolution is then one batched matrix product. Shapes stay the
# usual logical [B, C, H, W]. Where autograd allows, fresh intermediates are updated in place:
# on CPU, writing a new large tensor costs about twice an in-place pass (page faults).


def _in_place_ok(x: torch.Tensor) -> bool:
    """May a fresh intermediate ``x`` be updated in place? Not when autograd records it: in-place
    ops on the channels_last views would make the backward pass copy whole tensors."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def _scale_channels(x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``x [B, C, H, W] * styles [B, C]`` (in place when allowed)."""
    styles = styles.to(x.dtype).reshape(*styles.shape, 1, 1)
    return x.mul_(styles) if _in_place_ok(x) else x * styles


class ScaledLinear(nn.Module):
    """``y = x @ (weight * weight_gain).T + bias``: a style affine with an equalised-lr gain buffer."""

    def __init__(
        self,
        in_features: int,  # Input features (w_dim).
        out_features: int,  # Output features (channels to modulate).
        bias_init: float = 1.0,  # Initial bias (1: modulations start at one).
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.register_buffer("weight_gain", torch.tensor(1 / math.sqrt(in_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.weight_gain, self.weight, self.bias)  # gain on the (small) input

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class NoiseInput(nn.Module):
    """Per-pixel noise ``noise_strength x map``, one map per image shared by all channels."""

    def __init__(
        self,
        resolution: int,  # Height = width of the feature map, pixels.
    ):
        super().__init__()
        self.resolution = resolution
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
        """The noise to add to ``x [B, C, R, R]``: ``[1 or B, 1, R, R]``, or ``None`` for 'none'."""
        if noise_mode == "none":
            return None
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
        else:
            # [R, R], or per-image maps [B, 1, R, R] swapped in by the anchors' noise optimisation
            noise = self.noise_const.to(x.dtype).reshape(-1, 1, self.resolution, self.resolution)
        return noise * self.noise_strength.to(x.dtype)


def modulated_pointwise(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """A 1x1 convolution of ``x * styles``: ``out[b] = (weight * styles[b]) @ x[b] + bias``.

    Scalar weight gains belong in ``styles`` (one small op instead of two).

    ``x [B, C, H, W]``, ``weight [O, C]``, ``styles [B, C]``, ``bias [O]`` -> ``[B, O, H, W]``
    (channels_last). The modulation goes into the small weight instead of the large activation.

    >>> x, wt, st = torch.randn(2, 3, 4, 4), torch.randn(5, 3), torch.randn(2, 3)
    >>> ref = F.conv2d(x * st[:, :, None, None], wt[:, :, None, None])
    >>> torch.allclose(modulated_pointwise(x, wt, st), ref, atol=1e-5)
    True
    """
    batch, channels, height, width = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view for channels_last x
    w = (weight.unsqueeze(0) * styles.unsqueeze(1)).transpose(1, 2).to(flat.dtype)  # [B, C, O]
    out = torch.bmm(flat, w)
    if bias is not None:  # in place: baddbmm would first copy the broadcast bias into a new tensor
        out = out.add_(bias.to(out.dtype))
    return out.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


class ModulatedConv(nn.Module):
    """A dense ``k x k`` convolution of modulated input: ``conv(x * affine(w), weight * weight_gain) + bias``.

    The demodulation of the original is a fixed per-channel factor folded into ``weight`` (see
    the module docstring).
    """

    def __init__(
        self,
        in_channels: int,  # Input channels.
        out_channels: int,  # Output channels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        kernel_size: int = 3,  # Square kernel size (odd; 'same' padding).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.affine = ScaledLinear(w_dim, in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("weight_gain", torch.tensor(1 / math.sqrt(in_channels * kernel_size**2)))
        self.padding = kernel_size // 2

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, out_order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``out_order`` permutes the output channels (the bias must already be in that order)."""
        styles = self.affine(w) * self.weight_gain
        x = x * styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
        x = F.conv2d(x, self.weight.to(x.dtype), padding=self.padding)
        if out_order is not None:  # at 4 px the activation is smaller than the weight
            x = x[:, out_order]
        return x if bias is None else x + bias.to(x.dtype).reshape(1, -1, 1, 1)


class ModulatedSeparableConv(nn.Module):
    """MobileStyleGAN's modulated depthwise-separable convolution.

    ``pointwise(depthwise(x * affine(w))) + bias``; the per-sample modulation commutes with the
    depthwise conv and is applied to the pointwise weight instead (same result, less memory traffic).
    """

    def __init__(
        self,
        in_channels: int,  # Input channels.
        out_channels: int,  # Output channels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        kernel_size: int = 3,  # Depthwise kernel size (odd; 'same' padding).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.affine = ScaledLinear(w_dim, in_channels)
        self.weight_dw = nn.Parameter(torch.randn(in_channels, 1, kernel_size, kernel_size))
        self.weight_pw = nn.Parameter(torch.randn(out_channels, in_channels))
        self.register_buffer("weight_dw_gain", torch.tensor(1 / kernel_size))
        self.register_buffer("weight_pw_gain", torch.tensor(1 / math.sqrt(in_channels)))
        self.padding = kernel_size // 2

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, out_order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``out_order`` permutes the output channels (the bias must already be in that order)."""
        styles = self.affine(w)
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, (self.weight_dw * self.weight_dw_gain).to(x.dtype), padding=self.padding, groups=x.shape[1])
        weight = self.weight_pw if out_order is None else self.weight_pw[out_order]
        return modulated_pointwise(x, weight, styles * self.weight_pw_gain, bias)


class StyledLayer(nn.Module):
    """Modulated conv (dense or separable) + noise + bias + leaky ReLU(0.2)."""

    def __init__(
        self,
        in_channels: int,  # Input channels.
        out_channels: int,  # Output channels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        resolution: int,  # Feature-map size (for the noise), pixels.
        separable: bool = True,  # Depthwise-separable conv (the blocks) or dense (the 4 px layer)?
        use_noise: bool = True,  # Add a noise input?
    ):
        super().__init__()
        conv_class = ModulatedSeparableConv if separable else ModulatedConv
        self.conv = conv_class(in_channels, out_channels, w_dim)
        self.noise = NoiseInput(resolution) if use_noise else None
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, out_order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``out_order`` permutes the output channels (for the next ``HaarUpsample``)."""
        bias = self.bias if out_order is None else self.bias[out_order]
        x = self.conv(x, w, bias=bias, out_order=out_order)  # a fresh tensor
        noise = self.noise(x, noise_mode) if self.noise is not None else None
        if _in_place_ok(x):
            x = x.add_(noise) if noise is not None else x
            return F.leaky_relu_(x, LRELU_SLOPE)
        x = x + noise if noise is not None else x
        return F.leaky_relu(x, LRELU_SLOPE)


class HaarUpsample(nn.Module):
    """Modulate ``4C`` channels, read them as Haar coefficients of ``C`` channels, invert: 2x resolution.

    ``forward`` takes the channels in ``haar_channel_order`` (the previous layer emits them so).
    Without autograd and with a batch of several images it scales ``x`` in place (``x`` is the
    previous layer's fresh output inside the network).
    """

    def __init__(
        self,
        in_channels: int,  # Input channels (a multiple of 4); the output has in_channels // 4.
        w_dim: int,  # Intermediate latent (W) dimensionality.
    ):
        super().__init__()
        if in_channels % HAAR_BANDS:
            raise ValueError(f"HaarUpsample needs a multiple of 4 input channels, got {in_channels}")
        self.affine = ScaledLinear(w_dim, in_channels)
        self.register_buffer("channel_order", haar_channel_order(in_channels // HAAR_BANDS), persistent=False)
        self.register_buffer("kernel", haar_kernel(in_channels // HAAR_BANDS), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)[:, self.channel_order]
        kernel = self.kernel
        if x.shape[0] == 1:  # one image: modulate the (tiny) kernel instead of the activation
            kernel = kernel * styles.reshape(-1, 1, 1, 1)
        else:
            x = _scale_channels(x, styles)
        return F.conv_transpose2d(x, kernel.to(x.dtype), stride=2, groups=kernel.shape[0] // HAAR_BANDS)


class ToWavelets(nn.Module):
    """Modulated 1x1 conv (no demodulation) + bias: the Haar coefficients of the image.

    ``forward`` returns the coefficients; ``to_image`` the image they describe (the inverse Haar
    transform folded into the 1x1 conv's weights: one matrix product and a pixel shuffle).
    """

    def __init__(
        self,
        in_channels: int,  # Input feature channels.
        img_channels: int,  # Image channels; the output has 4 * img_channels (LL, then LH/HL/HH each).
        w_dim: int,  # Intermediate latent (W) dimensionality.
    ):
        super().__init__()
        self.img_channels = img_channels
        self.affine = ScaledLinear(w_dim, in_channels)
        self.weight = nn.Parameter(torch.randn(HAAR_BANDS * img_channels, in_channels))
        self.register_buffer("weight_gain", torch.tensor(1 / math.sqrt(in_channels)))
        self.bias = nn.Parameter(torch.zeros(HAAR_BANDS * img_channels))
        self.register_buffer("channel_order", haar_channel_order(img_channels), persistent=False)
        self.register_buffer("synthesis_matrix", HAAR_SYNTHESIS.clone(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Coefficients ``[B, 4 * img_channels, R, R]`` (MobileStyleGAN's layout, see ``inverse_haar``)."""
        x = x.contiguous(memory_format=torch.channels_last)
        return modulated_pointwise(x, self.weight, self.affine(w) * self.weight_gain, self.bias)

    def to_image(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``inverse_haar(self(x, w))``: the image ``[B, img_channels, 2R, 2R]`` (contiguous NCHW)."""
        channels = self.img_channels
        per_channel = (channels, HAAR_BANDS, -1)  # rows grouped by image channel: LL, LH, HL, HH
        weight = torch.einsum(
            "pk,ckn->cpn", self.synthesis_matrix, self.weight[self.channel_order].reshape(per_channel)
        )
        bias = torch.einsum("pk,ck->cp", self.synthesis_matrix, self.bias[self.channel_order].reshape(per_channel[:2]))
        x = x.contiguous(memory_format=torch.channels_last)
        pixels = modulated_pointwise(x, weight.flatten(0, 1), self.affine(w) * self.weight_gain, bias.flatten())
        batch, _, height, width = pixels.shape  # channels (c, a, b): pixel (2i+a, 2j+b) of image channel c
        pixels = pixels.permute(0, 2, 3, 1).reshape(batch, height, width, channels, 2, 2)
        return pixels.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, 2 * height, 2 * width)


class MobileSynthesisBlock(nn.Module):
    """HaarUpsample (2x) then two styled separable convs; reads 3 ws."""

    num_ws = 3

    def __init__(
        self,
        in_channels: int,  # Channels of the previous block (a multiple of 4).
        out_channels: int,  # Channels of this block.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        resolution: int,  # Output resolution of this block, pixels.
        use_noise: bool = True,  # Noise inputs?
    ):
        super().__init__()
        self.up = HaarUpsample(in_channels, w_dim)
        self.conv0 = StyledLayer(in_channels // HAAR_BANDS, out_channels, w_dim, resolution, use_noise=use_noise)
        self.conv1 = StyledLayer(out_channels, out_channels, w_dim, resolution, use_noise=use_noise)

    def forward(
        self, x: torch.Tensor, ws: Sequence[torch.Tensor], noise_mode: str, out_order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` in ``haar_channel_order``; ``out_order`` permutes this block's output channels."""
        x = self.up(x, ws[0])
        x = self.conv0(x, ws[1], noise_mode)
        return self.conv1(x, ws[2], noise_mode, out_order=out_order)


class MobileSynthesisNetwork(nn.Module):
    """``ws [B, num_ws, w_dim]`` -> image ``[B, img_channels, R, R]`` through Haar wavelets."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        channels: Sequence[int] = DEFAULT_CHANNELS,  # Channels at 4 px, then of each 2x block (multiples of 4).
        img_channels: int = 3,  # Output image channels.
        use_noise: bool = True,  # Noise inputs?
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 1 or any(c < HAAR_BANDS or c % HAAR_BANDS for c in channels[:-1]) or channels[-1] < 1:
            raise ValueError(f"channels must be positive multiples of 4 (except the last), got {channels}")
        self.w_dim = w_dim
        self.img_channels = img_channels
        self.img_resolution = 4 * 2 ** len(channels)  # 4 px, one 2x per block, 2x by the final IDWT
        self.const = nn.Parameter(torch.randn(channels[0], 4, 4))
        self.b4 = StyledLayer(channels[0], channels[0], w_dim, 4, separable=False, use_noise=use_noise)
        self.block_resolutions = [4 * 2**i for i in range(1, len(channels))]
        self.ws_layers = ["b4.conv"]
        for res, c_in, c_out in zip(self.block_resolutions, channels[:-1], channels[1:]):
            setattr(self, f"b{res}", MobileSynthesisBlock(c_in, c_out, w_dim, res, use_noise=use_noise))
            self.ws_layers += [f"b{res}.up", f"b{res}.conv0", f"b{res}.conv1"]
        self.to_img = ToWavelets(channels[-1], img_channels, w_dim)
        self.ws_layers.append("to_img")
        self.num_ws = len(self.ws_layers)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Render ``ws [B, num_ws, w_dim]`` (layer order: ``self.ws_layers``)."""
        check_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        w_iter = iter(ws.float().unbind(dim=1))
        blocks = [getattr(self, f"b{res}") for res in self.block_resolutions]
        # Each layer that feeds a HaarUpsample emits its channels in the order the upsampler wants.
        orders = [block.up.channel_order for block in blocks] + [None]
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).contiguous(memory_format=torch.channels_last)
        x = self.b4(x, next(w_iter), noise_mode, out_order=orders[0])
        for block, order in zip(blocks, orders[1:]):
            x = block(x, [next(w_iter) for _ in range(block.num_ws)], noise_mode, out_order=order)
        return self.to_img.to_image(x, next(w_iter))


class MobileStyleGANGenerator(Generator):
    """MobileStyleGAN: StyleGAN2's mapping network and a wavelet-based mobile synthesis network.

    >>> G = MobileStyleGANGenerator(z_dim=16, w_dim=16, channels=(16, 8), mapping_layers=2)
    >>> G.num_ws, G.img_resolution, G(torch.randn(2, 16)).shape
    (5, 16, torch.Size([2, 3, 16, 16]))
    """

    family = "mobilestylegan"

    def __init__(
        self,
        z_dim: int = 512,  # Input latent (Z) dimensionality.
        w_dim: int = 512,  # Intermediate latent (W) dimensionality.
        channels: Sequence[int] = DEFAULT_CHANNELS,  # Channels at 4 px, then per 2x block; image = 4 * 2**len px.
        img_channels: int = 3,  # Output image channels.
        mapping_layers: int = 8,  # Number of mapping-network layers.
        mapping_lr_multiplier: float = 0.01,  # Learning-rate multiplier of the mapping network.
        use_noise: bool = True,  # Noise inputs in the styled convs?
    ):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_channels = img_channels
        self._config: dict[str, Any] = dict(
            z_dim=z_dim, w_dim=w_dim, channels=[int(c) for c in channels], img_channels=img_channels,
            mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier, use_noise=use_noise,
        )  # fmt: skip
        self.synthesis = MobileSynthesisNetwork(w_dim, channels, img_channels, use_noise=use_noise)
        self.num_ws = self.synthesis.num_ws
        self.img_resolution = self.synthesis.img_resolution
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers=mapping_layers, lr_multiplier=mapping_lr_multiplier)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def ws_resolutions(self) -> list[int]:
        """Resolution (pixels) of the layer each ``ws`` slot modulates (see ``ws_layers``): the
        block's output resolution ``R`` for ``bR.*``; ``to_img`` writes Haar coefficients at half
        the image resolution."""
        return [
            self.img_resolution // 2 if name == "to_img" else int(name.split(".")[0][1:])
            for name in self.synthesis.ws_layers
        ]


def upstream_ws_index(num_blocks: int = len(DEFAULT_CHANNELS) - 1) -> list[int]:
    """For each of our ws slots, the slot of upstream MobileStyleGAN's W+ layout that feeds it.

    Upstream reads ``3 * num_blocks + 2`` ws: 0 for the 4 px conv, ``3k+1`` for block k's up *and*
    conv0, ``3k+2`` for its conv1, ``3k+3`` for its (pruned) to_img; the last slot is unused.

    >>> upstream_ws_index(2)
    [0, 1, 1, 2, 4, 4, 5, 6]
    """
    index = [0]
    for k in range(num_blocks):
        index += [3 * k + 1, 3 * k + 1, 3 * k + 2]
    return index + [3 * num_blocks]


def ws_from_upstream(ws_upstream: torch.Tensor, num_blocks: int = len(DEFAULT_CHANNELS) - 1) -> torch.Tensor:
    """Upstream W+ ``[B, 3 * num_blocks + 2, w_dim]`` -> ours ``[B, 3 * num_blocks + 2, w_dim]``."""
    expected = 3 * num_blocks + 2
    if ws_upstream.ndim != 3 or ws_upstream.shape[1] != expected:
        raise ValueError(f"upstream ws must have shape [B, num_ws={expected}, w_dim], got {tuple(ws_upstream.shape)}")
    return ws_upstream[:, upstream_ws_index(num_blocks)]


# ----------------------------------------------------------------------------------------
# OpenVINO IR reader


IR_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8}
# Ops that only carry the exporter's shape bookkeeping; integer constants feeding them need no parameter.
IR_PLUMBING_OPS = frozenset(
    {"Reshape", "Concat", "Gather", "Unsqueeze", "Squeeze", "VariadicSplit", "Broadcast", "Tile", "ShapeOf"}
)


@dataclass
class IRLayer:
    id: str
    name: str
    type: str
    data: dict[str, str]


class IRGraph:
    """An OpenVINO IR (v10/v11) graph: layers, edges and constant tensors read from the ``.bin``."""

    def __init__(self, xml_path: Path, bin_path: Path):
        self.xml_path, self.bin_path = Path(xml_path), Path(bin_path)
        root = _parse_xml_safely(self.xml_path)
        layers, edges = root.find("layers"), root.find("edges")
        if root.tag != "net" or root.get("version") not in ("10", "11") or layers is None or edges is None:
            raise CheckpointError(
                f"{xml_path}: not an OpenVINO IR v10/v11 model (<net version=10|11> with layers and edges)"
            )
        self.layers: dict[str, IRLayer] = {}
        port_index: dict[tuple[str, str], int] = {}  # (layer, port id) -> position among its inputs
        for el in layers:
            data = el.find("data")
            self.layers[el.get("id")] = IRLayer(
                el.get("id"), el.get("name", ""), el.get("type"), dict(data.attrib) if data is not None else {}
            )
            for pos, port in enumerate(el.find("input") if el.find("input") is not None else []):
                port_index[(el.get("id"), port.get("id"))] = pos
        self.producer: dict[tuple[str, int], str] = {}  # (layer, input position) -> producing layer
        self.consumers: dict[str, list[tuple[str, int]]] = {lid: [] for lid in self.layers}
        for edge in edges:
            src, dst = edge.get("from-layer"), edge.get("to-layer")
            pos = port_index.get((dst, edge.get("to-port")))
            if src not in self.layers or pos is None:
                raise CheckpointError(f"{xml_path}: edge {edge.attrib} refers to an unknown layer or port")
            self.producer[(dst, pos)] = src
            self.consumers[src].append((dst, pos))
        self._bin_size = self.bin_path.stat().st_size

    def of_type(self, op_type: str) -> list[IRLayer]:
        return [layer for layer in self.layers.values() if layer.type == op_type]

    def by_name(self, name: str) -> IRLayer:
        found = [layer for layer in self.layers.values() if layer.name == name]
        if len(found) != 1:
            raise CheckpointError(f"{self.xml_path}: expected one layer named {name!r}, found {len(found)}")
        return found[0]

    def input(self, layer: IRLayer, pos: int) -> IRLayer:
        try:
            return self.layers[self.producer[(layer.id, pos)]]
        except KeyError:
            raise CheckpointError(f"{self.xml_path}: layer {layer.name!r} has no input {pos}") from None

    def users(self, layer: IRLayer, op_type: str | None = None) -> list[IRLayer]:
        found = [self.layers[dst] for dst, _ in self.consumers[layer.id]]
        return [u for u in found if op_type is None or u.type == op_type]

    def only_user(self, layer: IRLayer, op_type: str) -> IRLayer:
        found = self.users(layer, op_type)
        if len(found) != 1:
            raise CheckpointError(
                f"{self.xml_path}: expected {layer.name!r} to feed one {op_type}, found {[u.name for u in found]}"
            )
        return found[0]

    def const_value(self, layer: IRLayer) -> np.ndarray:
        """The tensor of a ``Const`` layer (a copy, native byte order)."""
        if layer.type != "Const":
            raise CheckpointError(f"{self.xml_path}: layer {layer.name!r} is a {layer.type}, not a Const")
        dtype = IR_DTYPES.get(layer.data.get("element_type", ""))
        if dtype is None:
            raise CheckpointError(
                f"{self.xml_path}: Const {layer.name!r} has unsupported type {layer.data.get('element_type')}"
            )
        shape_text = layer.data.get("shape", "").strip()
        shape = [int(s) for s in shape_text.split(",")] if shape_text else []
        offset, size = int(layer.data["offset"]), int(layer.data["size"])
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if size != expected or offset < 0 or offset + size > self._bin_size:
            raise CheckpointError(
                f"{self.bin_path}: Const {layer.name!r} (shape {shape}, {size} bytes at {offset}) does not fit "
                f"the {self._bin_size}-byte weights file"
            )
        little_endian = np.dtype(dtype).newbyteorder("<")
        values = np.fromfile(self.bin_path, dtype=little_endian, count=size // little_endian.itemsize, offset=offset)
        return values.astype(dtype).reshape(shape)


def _parse_xml_safely(path: Path) -> ET.Element:
    """Parse an IR ``.xml`` without DTDs (no entity expansion)."""
    text = Path(path).read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise CheckpointError(f"{path}: XML with a DOCTYPE/ENTITY declaration is refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise CheckpointError(f"{path}: not well-formed XML ({e})") from e


# ----------------------------------------------------------------------------------------
# IR -> state dict


class _ConstClaims:
    """Every f32 Const of a graph must be claimed (loaded or checked) exactly once."""

    def __init__(self, graph: IRGraph):
        self.graph = graph
        self.claimed: dict[str, str] = {}

    def take(self, layer: IRLayer, role: str) -> np.ndarray:
        if layer.type != "Const":
            raise CheckpointError(
                f"{self.graph.xml_path}: expected a Const for {role}, found {layer.type} {layer.name!r}"
            )
        if layer.id in self.claimed:
            raise CheckpointError(
                f"{self.graph.xml_path}: Const {layer.name!r} claimed twice ({self.claimed[layer.id]}, {role})"
            )
        self.claimed[layer.id] = role
        return self.graph.const_value(layer)

    def expect(self, layer: IRLayer, role: str, value: float | np.ndarray, rtol: float = 1e-6) -> None:
        """Claim a structural constant after checking its value."""
        actual = self.take(layer, role)
        close = (
            np.allclose(actual, value, rtol=rtol, atol=0) if actual.dtype.kind == "f" else np.array_equal(actual, value)
        )
        if not close:
            raise CheckpointError(
                f"{self.graph.xml_path}: {role}: Const {layer.name!r} = {actual.ravel()[:4]}, "
                f"expected {np.ravel(value)[:4]}"
            )

    def check_all_claimed(self) -> None:
        unclaimed = []
        for layer in self.graph.of_type("Const"):
            if layer.id in self.claimed:
                continue
            is_float = layer.data.get("element_type", "").startswith("f")
            users = self.graph.users(layer)
            if not is_float and users and all(u.type in IR_PLUMBING_OPS for u in users):
                continue  # integer shape/axis plumbing of the exporter
            unclaimed.append(f"{layer.name} ({layer.data.get('element_type')} [{layer.data.get('shape')}])")
        if unclaimed:
            raise CheckpointError(
                f"{self.graph.xml_path}: {len(unclaimed)} constants match no parameter of the MobileStyleGAN port: "
                + ", ".join(unclaimed[:10])
                + (" ..." if len(unclaimed) > 10 else "")
            )


def _check_op_counts(graph: IRGraph, expected: dict[str, int], plumbing: set[str]) -> None:
    """The graph must compute what the port computes: these op counts exactly, no other op types."""
    counts: dict[str, int] = {}
    for layer in graph.layers.values():
        counts[layer.type] = counts.get(layer.type, 0) + 1
    problems = [f"{op}: {counts.get(op, 0)} (expected {n})" for op, n in expected.items() if counts.get(op, 0) != n]
    unknown = sorted(set(counts) - set(expected) - plumbing - {"Const"})
    if unknown:
        problems.append(f"unexpected op types {unknown}")
    if problems:
        raise CheckpointError(
            f"{graph.xml_path}: not the MobileStyleGAN graph this port rebuilds: " + "; ".join(problems)
        )


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _unit_rms(array: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``array = weight * gain`` with ``weight`` of unit RMS: returns ``(weight, gain)``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    gain = tensor.square().mean().sqrt().clamp_min(1e-12)
    return (tensor / gain).float(), gain.float()


def _mapping_state(graph: IRGraph, lr_multiplier: float) -> tuple[dict[str, torch.Tensor], int, int]:
    """The mapping network's FC layers, in graph order; the equalised-lr gains divided back out."""
    claims = _ConstClaims(graph)
    state: dict[str, torch.Tensor] = {}
    matmuls = sorted(graph.of_type("MatMul"), key=lambda layer: int(layer.id))
    z_dim = None
    for idx, matmul in enumerate(matmuls):
        if matmul.data.get("transpose_b") != "true":
            raise CheckpointError(f"{graph.xml_path}: mapping MatMul {matmul.name!r} is not x @ W.T")
        weight = claims.take(graph.input(matmul, 1), f"fc{idx}.weight")
        in_dim = weight.shape[1]
        z_dim = in_dim if z_dim is None else z_dim
        add = graph.only_user(matmul, "Add")
        bias = claims.take(graph.input(graph.input(add, 1), 0), f"fc{idx}.bias")  # Const -> Reshape -> Add
        prelu = graph.only_user(add, "PReLU")
        claims.expect(graph.input(prelu, 1), f"fc{idx} leaky-ReLU slope", LRELU_SLOPE)
        gain = graph.only_user(prelu, "Multiply")
        claims.expect(graph.input(gain, 1), f"fc{idx} activation gain", math.sqrt(2))
        state[f"fc{idx}.weight"] = _to_tensor(weight.astype(np.float64) * math.sqrt(in_dim) / lr_multiplier)
        state[f"fc{idx}.bias"] = _to_tensor(bias.reshape(-1).astype(np.float64) / lr_multiplier)
    # The input's second-moment normalisation: x * 1 / (mean(x ** 2) + eps) ** 0.5.
    for power, value in zip(sorted(graph.of_type("Power"), key=lambda layer: int(layer.id)), (2.0, 0.5, -1.0)):
        claims.expect(graph.input(power, 1), "pixel-norm exponent", value)
    (reduce,) = graph.of_type("ReduceMean")
    claims.expect(graph.input(reduce, 1), "pixel-norm axis", [1])
    eps_add = graph.only_user(reduce, "Add")
    claims.expect(graph.input(eps_add, 1), "pixel-norm epsilon", 1e-8, rtol=1e-3)
    for mul in graph.of_type("Multiply"):
        if graph.input(mul, 0).type == "Const":  # 1 / sqrt(...): the reciprocal's numerator
            claims.expect(graph.input(mul, 0), "pixel-norm numerator", 1.0)
    claims.check_all_claimed()
    n = len(matmuls)
    expected = {"Parameter": 1, "Result": 1, "MatMul": n, "PReLU": n, "Power": 3, "ReduceMean": 1}
    _check_op_counts(graph, {**expected, "Add": n + 1, "Multiply": n + 2}, set(IR_PLUMBING_OPS))
    return state, n, z_dim


def _modulation(graph: IRGraph, claims: _ConstClaims, prefix: str, scale: float | None) -> dict[str, np.ndarray]:
    """``prefix.modulation.{weight,bias}`` and the check of the modulation scale that follows them."""
    weight_const = graph.by_name(f"{prefix}.modulation.weight")
    weight = claims.take(weight_const, f"{prefix}.modulation.weight")
    bias = claims.take(graph.by_name(f"{prefix}.modulation.bias"), f"{prefix}.modulation.bias").reshape(-1)
    if scale is not None:
        add = graph.only_user(graph.only_user(weight_const, "MatMul"), "Add")
        mul = graph.only_user(graph.only_user(add, "Reshape"), "Multiply")
        claims.expect(graph.input(mul, 1), f"{prefix} modulation scale", scale, rtol=1e-5)
    return {"weight": weight, "bias": bias}


def _styled_conv(graph: IRGraph, claims: _ConstClaims, prefix: str, separable: bool) -> dict[str, np.ndarray]:
    """Weights of one upstream StyledConv2d: modulation, conv weights, folded noise, bias."""
    bias_const = graph.by_name(f"{prefix}.bias")
    bias_add = graph.only_user(bias_const, "Add")
    noise_add = graph.input(bias_add, 0)
    conv = graph.input(noise_add, 0)
    if noise_add.type != "Add" or conv.type != "Convolution":
        raise CheckpointError(f"{graph.xml_path}: {prefix}: expected Convolution -> Add(noise) -> Add(bias)")
    prelu = graph.only_user(bias_add, "PReLU")
    claims.expect(graph.input(prelu, 1), f"{prefix} leaky-ReLU slope", LRELU_SLOPE)
    out = {
        "bias": claims.take(bias_const, f"{prefix}.bias").reshape(-1),
        "noise": claims.take(graph.input(noise_add, 1), f"{prefix} noise (strength x map)"),
        "weight": claims.take(graph.input(conv, 1), f"{prefix} conv weight (x demodulation)"),
    }
    if separable:
        depthwise = graph.input(conv, 0)
        dw_const = graph.by_name(f"{prefix}.conv.weight_dw")
        if depthwise.type != "GroupConvolution" or graph.input(depthwise, 1).id != dw_const.id:
            raise CheckpointError(
                f"{graph.xml_path}: {prefix}: expected GroupConvolution({prefix}.conv.weight_dw) -> Convolution"
            )
        out["weight_dw"] = claims.take(dw_const, f"{prefix}.conv.weight_dw")
        in_channels, kernel = out["weight_dw"].shape[0], out["weight_dw"].shape[-1]
    else:
        in_channels, kernel = out["weight"].shape[1], out["weight"].shape[-1]
    out["scale"] = 1 / math.sqrt(in_channels * kernel**2)  # upstream multiplies the styles by it
    out["modulation"] = _modulation(graph, claims, f"{prefix}.conv", scale=out["scale"])
    return out


def _claim_haar_filters(graph: IRGraph, claims: _ConstClaims) -> int:
    """Check the inverse-Haar transposed-conv filters: ``[1, 1] / sqrt2`` (low) or ``[1, -1] / sqrt2`` (high)."""
    low = np.array([1.0, 1.0]) / math.sqrt(2)
    count = 0
    for layer in graph.of_type("GroupConvolutionBackpropData"):
        const = graph.input(layer, 1)
        taps = graph.const_value(const)
        expected = low if np.allclose(taps.reshape(-1, 2), low, rtol=1e-6) else low * [1, -1]
        claims.expect(
            const, "inverse Haar filter taps", np.broadcast_to(expected, (taps.size // 2, 2)).reshape(taps.shape)
        )
        count += 1
    return count


def _synthesis_state(graph: IRGraph) -> tuple[dict[str, torch.Tensor], list[int]]:
    """The synthesis network's parameters by their exported names (``m.*``), in our layout."""
    claims = _ConstClaims(graph)
    state: dict[str, torch.Tensor] = {}

    def put_affine(dst: str, mod: dict[str, np.ndarray]) -> None:
        state[f"{dst}.affine.weight"], state[f"{dst}.affine.weight_gain"] = _unit_rms(mod["weight"])
        state[f"{dst}.affine.bias"] = _to_tensor(mod["bias"])

    def put_styled(dst: str, src: str, separable: bool) -> int:
        conv = _styled_conv(graph, claims, src, separable)
        put_affine(f"{dst}.conv", conv["modulation"])
        scale = conv["scale"]
        if separable:
            # runtime: pointwise(weight_pw) o depthwise(weight_dw) of (x * scale * style)
            weight_dw = conv["weight_dw"].reshape(conv["weight_dw"].shape[0], 1, *conv["weight_dw"].shape[-2:])
            state[f"{dst}.conv.weight_dw"], gain = _unit_rms(weight_dw * scale)
            state[f"{dst}.conv.weight_dw_gain"] = gain
            state[f"{dst}.conv.weight_pw"], state[f"{dst}.conv.weight_pw_gain"] = _unit_rms(conv["weight"][:, :, 0, 0])
        else:
            state[f"{dst}.conv.weight"], state[f"{dst}.conv.weight_gain"] = _unit_rms(conv["weight"] * scale)
        noise = conv["noise"].reshape(conv["noise"].shape[-2:])
        state[f"{dst}.noise.noise_const"], state[f"{dst}.noise.noise_strength"] = _unit_rms(noise)
        state[f"{dst}.bias"] = _to_tensor(conv["bias"])
        return conv["weight"].shape[0]

    const_input = claims.take(graph.by_name("m.input.input"), "m.input.input")
    state["const"] = _to_tensor(const_input[0])
    channels = [put_styled("b4", "m.conv1", separable=False)]
    num_blocks = 0
    while any(layer.name == f"m.layers.{num_blocks}.up.modulation.weight" for layer in graph.layers.values()):
        dst = f"b{8 * 2**num_blocks}"
        put_affine(f"{dst}.up", _modulation(graph, claims, f"m.layers.{num_blocks}.up", scale=None))
        put_styled(f"{dst}.conv0", f"m.layers.{num_blocks}.conv1", separable=True)
        channels.append(put_styled(f"{dst}.conv1", f"m.layers.{num_blocks}.conv2", separable=True))
        num_blocks += 1
    last = f"m.layers.{num_blocks - 1}.to_img"
    mod = _modulation(graph, claims, f"{last}.conv", scale=1 / math.sqrt(channels[-1]))
    put_affine("to_img", mod)
    weight = claims.take(graph.by_name(f"{last}.conv.weight"), f"{last}.conv.weight")[:, :, 0, 0]
    state["to_img.weight"], state["to_img.weight_gain"] = _unit_rms(weight / math.sqrt(channels[-1]))
    state["to_img.bias"] = _to_tensor(claims.take(graph.by_name(f"{last}.bias"), f"{last}.bias").reshape(-1))
    _claim_haar_filters(graph, claims)
    claims.check_all_claimed()
    styled = 1 + 2 * num_blocks
    expected = {
        "Parameter": 1, "Result": 1, "MatMul": styled + num_blocks + 1, "Convolution": styled + 1,
        "GroupConvolution": 2 * num_blocks, "PReLU": styled, "GroupConvolutionBackpropData": 6 * (num_blocks + 1),
    }  # fmt: skip
    _check_op_counts(graph, expected, set(IR_PLUMBING_OPS) | {"Add", "Multiply"})
    return state, channels


def _locate_ir(src: Path, stem: str) -> tuple[Path, Path]:
    for folder in (src, src / "random_face" / "data", src / "data"):
        xml_path, bin_path = folder / f"{stem}.xml", folder / f"{stem}.bin"
        if xml_path.is_file() and bin_path.is_file():
            return xml_path, bin_path
    raise FileNotFoundError(f"{src}: {stem}.xml and {stem}.bin not found (also looked in random_face/data/)")


def load_openvino_ir(src: str | os.PathLike, w_avg_samples: int = 10_000, seed: int = 0) -> MobileStyleGANGenerator:
    """Build a ``MobileStyleGANGenerator`` from the IR files in ``src`` (a folder or the random-face wheel).

    The folder holds ``MappingNetwork.{xml,bin}`` and ``SynthesisNetwork.{xml,bin}`` (directly or
    under ``random_face/data/``). ``w_avg`` is the mean of ``w_avg_samples`` mapped seeded ``z``.
    """
    src = Path(src).expanduser()
    if src.is_file() and zipfile.is_zipfile(src):
        with tempfile.TemporaryDirectory(prefix="mystyle-ir-") as tmp:
            with zipfile.ZipFile(src) as zf:
                for stem in ("MappingNetwork", "SynthesisNetwork"):
                    for ext in ("xml", "bin"):
                        member = f"random_face/data/{stem}.{ext}"
                        (Path(tmp) / f"{stem}.{ext}").write_bytes(zf.read(member))
            return load_openvino_ir(tmp, w_avg_samples=w_avg_samples, seed=seed)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: expected a folder with the MobileStyleGAN IR files or the random-face wheel")
    mapping_graph = IRGraph(*_locate_ir(src, "MappingNetwork"))
    synthesis_graph = IRGraph(*_locate_ir(src, "SynthesisNetwork"))
    lr_multiplier = 0.01
    mapping_state, mapping_layers, z_dim = _mapping_state(mapping_graph, lr_multiplier)
    synthesis_state, channels = _synthesis_state(synthesis_graph)
    w_dim = synthesis_state["b4.conv.affine.weight"].shape[1]
    generator = MobileStyleGANGenerator(
        z_dim=z_dim, w_dim=w_dim, channels=channels, mapping_layers=mapping_layers, mapping_lr_multiplier=lr_multiplier
    )
    state = {f"mapping.{k}": v for k, v in mapping_state.items()}
    state.update({f"synthesis.{k}": v for k, v in synthesis_state.items()})
    state["mapping.w_avg"] = torch.zeros(w_dim)
    from .formats.native import load_state_strict

    load_state_strict(generator, state, source=str(src))
    generator.eval()
    generator.mapping.w_avg.copy_(generator.estimate_w_avg(num_samples=w_avg_samples, seed=seed))
    return generator


def convert_openvino_ir(src_dir: str | os.PathLike, dst: str | os.PathLike, w_avg_samples: int = 10_000) -> Path:
    """Convert the MobileStyleGAN OpenVINO IR in ``src_dir`` to a native file at ``dst`` (atomic).

    ``src_dir``: a folder with ``MappingNetwork.{xml,bin}`` and ``SynthesisNetwork.{xml,bin}`` (the
    ``random_face/data/`` members of ``random-face==2021.7.21.1``; also accepted under
    ``random_face/data/``), or the wheel itself. Every constant of the IR is either loaded into a
    named parameter or checked as a known structural value; anything else raises ``CheckpointError``.
    """
    from .formats import native

    src = Path(src_dir).expanduser()
    generator = load_openvino_ir(src, w_avg_samples=w_avg_samples)
    provenance: dict[str, Any] = {"source": "MobileStyleGAN FFHQ 1024, OpenVINO IR (random-face 2021.7.21.1)"}
    if src.is_dir():
        provenance["source_sha256"] = {
            path.name: sha256_file(path)
            for stem in ("MappingNetwork", "SynthesisNetwork")
            for path in _locate_ir(src, stem)
        }
    provenance["w_avg"] = f"mean of mapping(z) over {w_avg_samples} seeded z (seed 0)"
    return native.save(generator, dst, extra_metadata=provenance)


__all__ = [
    "MobileStyleGANGenerator",
    "MobileSynthesisNetwork",
    "convert_openvino_ir",
    "inverse_haar",
    "load_openvino_ir",
    "upstream_ws_index",
    "ws_from_upstream",
]
