"""StyleGAN2 (Karras et al., CVPR 2020) in plain PyTorch.

Module and parameter names and shapes follow NVIDIA's stylegan2-ada-pytorch
``training/networks.py`` so that the state of its ``G_ema`` maps one to one onto
``StyleGAN2Generator`` (``mapping.fc0.weight``, ``synthesis.b64.conv0.affine.bias``, ...).
Only the unconditional generator with the "skip" output architecture is implemented
(that is what every public FFHQ checkpoint uses).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from .base import Generator, check_noise_mode, check_ws, check_z
from .ops import bias_act, modulated_conv2d, normalize_2nd_moment, setup_filter, upsample2d

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


class FullyConnectedLayer(nn.Module):
    """A linear layer with equalised learning rate (weights stored unscaled, scaled at run time)."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        bias: bool = True,  # Add a learned bias?
        activation: str = "linear",  # 'linear' or 'lrelu'.
        lr_multiplier: float = 1.0,  # Learning-rate multiplier (0.01 in the mapping network).
        bias_init: float = 0.0,  # Initial bias value (1 for style affines: styles start at one).
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = x.matmul(w.t().to(x.dtype))
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z -> w: second-moment normalisation then ``num_layers`` equalised-lr FC layers."""

    def __init__(
        self,
        z_dim: int,  # Input latent (Z) dimensionality.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        num_layers: int = 8,  # Number of FC layers.
        layer_features: int | None = None,  # Hidden width; None = w_dim.
        activation: str = "lrelu",  # Activation of every layer.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of every layer.
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got num_layers={num_layers}")
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim] + [layer_features] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """``z [B, z_dim]`` -> ``w [B, w_dim]``; ``truncation_psi < 1`` pulls w towards ``w_avg``."""
        check_z(z, self.z_dim)
        x = normalize_2nd_moment(z.float())
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if truncation_psi != 1:
            x = self.w_avg.to(x.dtype).lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally doubling resolution) + noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        resolution: int,  # Output resolution of this layer.
        kernel_size: int = 3,  # Convolution kernel size.
        up: int = 1,  # 2 = double the resolution first.
        use_noise: bool = True,  # Add per-pixel noise with a learned strength?
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,  # FIR taps for up-sampling.
        conv_clamp: float | None = None,  # Clamp outputs to +-this; None = no clamping.
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused: bool = True) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, noise=noise, up=self.up, resample_filter=self.resample_filter, fused=fused
        )
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to RGB, no demodulation."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of image channels (3).
        w_dim: int,  # Intermediate latent (W) dimensionality.
        kernel_size: int = 1,  # Convolution kernel size.
        conv_clamp: float | None = None,  # Clamp outputs to +-this; None = no clamping.
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 up) -> conv1 -> toRGB added to the up-sampled image."""

    def __init__(
        self,
        in_channels: int,  # Input channels; 0 = the first block (starts from a learned constant).
        out_channels: int,  # Output channels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        resolution: int,  # Resolution of this block.
        img_channels: int,  # Number of output image channels.
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,  # FIR taps for up-sampling.
        conv_clamp: float | None = None,  # Clamp outputs to +-this; None = no clamping.
        use_noise: bool = True,  # Per-pixel noise inputs?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise,
            )  # fmt: skip
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, use_noise=use_noise
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str, fused: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        y = self.torgb(x, next(w_iter), fused=fused)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, img_channels, R, R]."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        img_resolution: int,  # Output resolution, a power of two in [8, 1024] (larger also works).
        img_channels: int = 3,  # Number of output channels.
        channel_base: int = 32768,  # Channels at resolution r are min(channel_base // r, channel_max).
        channel_max: int = 512,  # Maximum channels in any layer.
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,  # FIR taps for up-sampling.
        conv_clamp: float | None = None,  # Clamp conv outputs to +-this; None = off (256 in ADA configs).
        use_noise: bool = True,  # Per-pixel noise inputs?
    ):
        super().__init__()
        log2 = math.log2(img_resolution) if img_resolution > 0 else -1
        if img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(log2) + 1)]
        self.channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        if min(self.channels.values()) < 1:
            raise ValueError(f"channel_base={channel_base} gives no channels at {img_resolution} px")
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, self.channels[res], w_dim, res, img_channels,
                resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise,
            )  # fmt: skip
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's toRGB

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None) -> torch.Tensor:
        """Render ``ws [B, num_ws, w_dim]``; ``noise_mode`` is 'const', 'random' or 'none'.

        ``fused_modconv=None`` picks the faster form: fused grouped convolutions for inference
        or batch 1, shared convolutions otherwise (same result up to float rounding).
        """
        check_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        fused = (not self.training or ws.shape[0] == 1) if fused_modconv is None else fused_modconv
        ws = ws.float()
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # Each block reads its convs' ws plus the next one for its toRGB (shared with the next block).
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused=fused)
            w_idx += block.num_conv
        return img


class StyleGAN2Generator(Generator):
    """The StyleGAN2 generator (config-f at ``channel_base=32768, channel_max=512``).

    >>> G = StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=16, channel_base=256, channel_max=32)
    >>> G.num_ws, G(torch.randn(2, 32)).shape
    (6, torch.Size([2, 3, 16, 16]))
    """

    family = "stylegan2"

    def __init__(
        self,
        z_dim: int = 512,  # Input latent (Z) dimensionality.
        w_dim: int = 512,  # Intermediate latent (W) dimensionality.
        img_resolution: int = 1024,  # Output resolution (power of two).
        img_channels: int = 3,  # Number of output channels.
        channel_base: int = 32768,  # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max: int = 512,  # Maximum number of channels.
        mapping_layers: int = 8,  # Number of mapping-network layers.
        mapping_lr_multiplier: float = 0.01,  # Learning-rate multiplier of the mapping network.
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,  # FIR taps for up-sampling.
        conv_clamp: float | None = None,  # Clamp conv outputs to +-this; None = off.
        use_noise: bool = True,  # Per-pixel noise inputs?
    ):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self._config: dict[str, Any] = dict(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, mapping_layers=mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier, resample_filter=[float(t) for t in resample_filter],
            conv_clamp=conv_clamp, use_noise=use_noise,
        )  # fmt: skip
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
            resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise,
        )  # fmt: skip
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers=mapping_layers, lr_multiplier=mapping_lr_multiplier)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)
