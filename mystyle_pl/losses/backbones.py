"""The LPIPS feature trunks: AlexNet and VGG16 convolutions, with torchvision's parameter names.

:class:`AlexNetFeatures` and :class:`VGG16Features` hold torchvision's ``features.<i>.weight`` /
``features.<i>.bias`` state-dict keys and return the five LPIPS tap layers (AlexNet
``relu1..relu5``; VGG16 ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``). Their weights are
read by :mod:`mystyle_pl.losses.lpips_weights`; the distance is :mod:`mystyle_pl.losses.lpips`.

>>> import torch
>>> [tuple(f.shape) for f in AlexNetFeatures()(torch.zeros(1, 3, 64, 64))][:2]
[(1, 64, 15, 15), (1, 192, 7, 7)]
>>> VGG16Features().min_input_size
16
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_NET_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def canonical_net(net: str) -> str:
    """``"alex"`` or ``"vgg"`` for any accepted spelling (``"alexnet"``, ``"vgg16"``); ``ValueError`` otherwise."""
    try:
        return _NET_ALIASES[net]
    except (KeyError, TypeError):
        raise ValueError(f"net must be one of 'alex', 'vgg' (or 'alexnet', 'vgg16'); got {net!r}") from None


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


def backbone_class(net: str) -> type[_TapFeatures]:
    """The feature-extractor class of ``net`` (``"alex"`` or ``"vgg"``)."""
    return AlexNetFeatures if canonical_net(net) == "alex" else VGG16Features


def build_backbone(net: str) -> _TapFeatures:
    """An untrained feature extractor for ``net`` (``"alex"`` or ``"vgg"``)."""
    return backbone_class(net)()


def _meta_backbone(net: str) -> _TapFeatures:
    """The ``net`` trunk on the meta device: names and shapes without allocating or initialising."""
    with torch.device("meta"):
        return build_backbone(net)


def conv_keys(net: str) -> list[str]:
    """The torchvision ``features.<i>`` prefixes of the convolutions of ``net``, in order."""
    features = _meta_backbone(net).features
    return [f"features.{i}" for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the ``net`` trunk (torchvision keys)."""
    return {name: tuple(t.shape) for name, t in _meta_backbone(net).state_dict().items()}


__all__ = ["AlexNetFeatures", "VGG16Features", "backbone_class", "build_backbone", "canonical_net", "conv_keys", "expected_shapes"]
