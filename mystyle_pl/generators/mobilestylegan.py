"""MobileStyleGAN (Belousov 2021, arXiv 2104.04767) in plain PyTorch, converted from OpenVINO IR.

MobileStyleGAN is a StyleGAN2 student: the teacher's mapping network, then a light synthesis
network that predicts Haar-wavelet coefficients instead of pixels and upsamples with inverse
wavelet transforms (IDWT). The FFHQ 1024 weights are public as an OpenVINO IR v10 export
(``MappingNetwork.{xml,bin}``, ``SynthesisNetwork.{xml,bin}`` inside the ``random-face`` wheel);
``formats.openvino_ir.convert_openvino_ir`` turns them into a native mystyle-pl file.

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
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, check_noise_mode, check_ws
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
        if x.shape[0] == 1 and _kernel_gradient_is_cheap(x, styles):
            # one image: modulate the (tiny) kernel instead of the activation
            kernel = kernel * styles.reshape(-1, 1, 1, 1)
        else:
            x = _scale_channels(x, styles)
        return F.conv_transpose2d(x, kernel.to(x.dtype), stride=2, groups=kernel.shape[0] // HAAR_BANDS)


def _kernel_gradient_is_cheap(x: torch.Tensor, styles: torch.Tensor) -> bool:
    """Whether a modulated kernel's gradient costs no more than scaling the activation: when no gradient
    reaches the styles, or when the transposed convolution runs in float32. On a CPU its kernel (weight)
    gradient in bfloat16 takes several times the float32 time: one W+ projection step of MobileStyleGAN at
    1024 px under bfloat16 autocast spent 0.37 s of 0.88 s there (2-core EPYC, torch 2.13; the three
    HaarUpsample layers from 64 to 512 px took 355, 178 and 69 ms forward and backward with the kernel
    modulated against 104, 38 and 17 ms with the activation scaled; in float32 the two are within 15%)."""
    if not (torch.is_grad_enabled() and styles.requires_grad):
        return True
    return _compute_dtype(x) == torch.float32


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of ``x`` runs in: autocast's where it is on for ``x``'s device, else ``x``'s."""
    device = x.device.type
    try:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
    except (TypeError, AttributeError):  # torch < 2.4 has no per-device autocast queries: the input's dtype
        pass  # (inside the network, the previous layer's output, already in autocast's dtype)
    return x.dtype


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


__all__ = [
    "MobileStyleGANGenerator",
    "MobileSynthesisNetwork",
    "inverse_haar",
    "upstream_ws_index",
    "ws_from_upstream",
]
