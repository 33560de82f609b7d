"""Image-quality metrics between a result and its ground truth: PSNR, SSIM (torchmetrics) and LPIPS.

Inputs follow the project convention: float ``[B, 3, H, W]`` in ``[-1, 1]``. PSNR and SSIM are
computed on the images mapped to ``[0, 1]`` (``data_range = 1``), clamped first, in float64, per image:
every function returns one value per image ``[B]`` (float32), so means and spreads can be taken
over a set of images. Only the functional API of torchmetrics is used
(``torchmetrics.functional.image``): it needs neither torchvision nor the ``torchmetrics[image]``
extras.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ..losses import lpips as functional_lpips

__all__ = ["image_metrics", "lpips_distance", "psnr", "ssim", "to_unit_range"]


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != 3:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: {label} must be a tensor [B, 3, H, W] in [-1, 1], got {shape}")
    if x.shape != y.shape:
        raise ValueError(f"{name}: x has shape {tuple(x.shape)}, y has {tuple(y.shape)}; they must match [B, 3, H, W]")


def to_unit_range(images: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]`` (float32, clamped).

    >>> to_unit_range(torch.tensor([-2.0, -1.0, 0.0, 1.0])).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    return ((images.detach().float() + 1.0) / 2.0).clamp(0.0, 1.0)


def psnr(x: Tensor, y: Tensor, mask: Tensor | None = None, clamp: bool = True) -> Tensor:
    """Peak signal-to-noise ratio in dB per image ``[B]``: ``10 log10(1 / MSE)`` with both images in
    ``[0, 1]`` (over all channels and pixels). Identical images give ``inf``. ``x, y`` are
    ``[B, 3, H, W]`` in ``[-1, 1]``; ``mask [B or 1, 1, H, W]`` (1 = counted pixel, e.g. the known
    region of an inpainting input) restricts the MSE to those pixels. ``clamp=False`` measures the
    images as they are (a generator's raw output may leave ``[-1, 1]``; the training logs use it)
    instead of clamping them to the image range first. Raises ``ValueError`` for other shapes.

    A mid-grey 2x2 image against the same image with one pixel white: MSE = 0.5^2 / 4 = 1/16,
    PSNR = 10 log10(16) = 12.04 dB.

    >>> x = torch.zeros(1, 3, 2, 2)
    >>> y = x.clone(); y[..., 0, 0] = 1.0
    >>> round(float(psnr(x, y)[0]), 4)
    12.0412
    >>> round(float(psnr(x, y, mask=torch.tensor([[[[0.0, 1], [1, 1]]]]))[0]), 1)
    inf
    """
    _check_pair(x, y, "psnr")
    if clamp:
        x01, y01 = to_unit_range(x).double(), to_unit_range(y).double()
    else:
        x01, y01 = (x.detach().double() + 1) / 2, (y.detach().double() + 1) / 2
    if mask is None:
        return peak_signal_noise_ratio(x01, y01, data_range=1.0, reduction="none", dim=(1, 2, 3)).float()
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, x.shape[0]) or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"psnr: mask must be [B or 1, 1, H, W] matching {tuple(x.shape)}, got {tuple(mask.shape)}")
    m = mask.double().expand(x.shape[0], 1, *x.shape[2:])
    mse = ((x01 - y01).square() * m).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2, 3)) * x.shape[1]).clamp_min(1e-12)
    return (10 * torch.log10(1.0 / mse)).float()


def ssim(
    x: Tensor,
    y: Tensor,
    gaussian_kernel: bool = True,  # Gaussian window (sigma) or a uniform one (kernel_size)
    sigma: float = 1.5,  # std of the Gaussian window in px (the standard SSIM setting)
    kernel_size: int = 11,  # side of the uniform window (odd); ignored with the Gaussian window
) -> Tensor:
    """Structural similarity per image ``[B]`` (torchmetrics: reflection padding, local statistics in
    a sliding window, mean over channels and pixels; ``k1 = 0.01``, ``k2 = 0.03``, images in ``[0, 1]``).

    Two flat images ``a`` and ``b`` have no variance, so SSIM is the luminance term
    ``(2ab + C1) / (a^2 + b^2 + C1)`` with ``C1 = 0.01^2``; for ``a = 0.5`` and ``b = 0.75``:

    >>> a, b = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)  # 0.5 and 0.75 in [0, 1]
    >>> round(float(ssim(a, b)[0]), 5), round((2 * 0.375 + 1e-4) / (0.25 + 0.5625 + 1e-4), 5)
    (0.92309, 0.92309)
    """
    _check_pair(x, y, "ssim")
    pad = (int(3.5 * sigma + 0.5) * 2 + 1) // 2 if gaussian_kernel else (kernel_size - 1) // 2
    if min(x.shape[-2:]) <= pad:
        raise ValueError(
            f"ssim: images of {x.shape[-2]}x{x.shape[-1]} are too small for the window (padding {pad} px); "
            "use a smaller sigma or a uniform kernel_size"
        )
    # float64: in float32 the local variances of flat regions do not cancel exactly (E[x^2] - E[x]^2).
    return structural_similarity_index_measure(
        to_unit_range(x).double(),
        to_unit_range(y).double(),
        gaussian_kernel=gaussian_kernel,
        sigma=sigma,
        kernel_size=kernel_size,
        data_range=1.0,
        reduction="none",
    ).float()


def lpips_distance(x: Tensor, y: Tensor, lpips: nn.Module | None = None, net: str = "alex") -> Tensor:
    """LPIPS distance per image ``[B]`` with the project's own :class:`~mystyle_pl.losses.LPIPS`
    (``lpips``: a ready module; None = the shared pretrained ``net`` module, built once).

    >>> from mystyle_pl.losses import LPIPS
    >>> x = torch.rand(2, 3, 32, 32) * 2 - 1
    >>> lpips_distance(x, x, LPIPS("alex", pretrained=False)).tolist()
    [0.0, 0.0]
    """
    _check_pair(x, y, "lpips")
    with torch.no_grad():
        if lpips is None:
            return functional_lpips(x.float(), y.float(), net=net).float()
        lpips = lpips.to(x.device)
        return lpips(x.float(), y.to(x.device).float()).float()


def image_metrics(x: Tensor, y: Tensor, lpips: nn.Module | None = None, net: str = "alex") -> dict[str, Tensor]:
    """``{"lpips", "psnr", "ssim"}``, each ``[B]``, of results ``x`` against ground truths ``y``."""
    return {"lpips": lpips_distance(x, y, lpips, net).cpu(), "psnr": psnr(x, y).cpu(), "ssim": ssim(x, y).cpu()}
