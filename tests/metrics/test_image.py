"""Image metrics against hand-computed values: PSNR, SSIM, LPIPS sanity (``metrics/image.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mystyle_pl.metrics import lpips_distance, psnr, ssim


def test_psnr_hand_computed_2x2():
    # In [0, 1]: x is 0.5 everywhere, y has one pixel (all 3 channels) at 1.0 -> MSE = 0.25 / 4.
    x = torch.zeros(2, 3, 2, 2)
    y = x.clone()
    y[0, :, 0, 0] = 1.0
    y[1, :, :, :] = -1.0  # image 2: every pixel 0.5 off -> MSE 0.25 -> 10 log10(4)
    value = psnr(x, y)
    assert value.shape == (2,)
    assert value[0].item() == pytest.approx(10 * math.log10(16), abs=1e-4)  # 12.0412 dB
    assert value[1].item() == pytest.approx(10 * math.log10(4), abs=1e-4)  # 6.0206 dB
    assert torch.isinf(psnr(x, x)).all()  # identical images


def test_psnr_clamps_to_the_image_range():
    x = torch.zeros(1, 3, 2, 2)
    assert psnr(x, torch.full_like(x, 5.0)).item() == pytest.approx(psnr(x, torch.ones_like(x)).item())


def test_psnr_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        psnr(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="must match"):
        psnr(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4))


# ------------------------------------------------------------------ SSIM


def _ssim_by_hand(x: np.ndarray, y: np.ndarray, k: int = 3) -> float:
    """Textbook SSIM with a uniform k x k window over reflection-padded single-channel images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    r = k // 2
    xp, yp = np.pad(x, r, mode="reflect"), np.pad(y, r, mode="reflect")
    values = []
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = xp[i : i + k, j : j + k].ravel(), yp[i : i + k, j : j + k].ravel()
            ma, mb = a.mean(), b.mean()
            va, vb = (a * a).mean() - ma**2, (b * b).mean() - mb**2
            cov = (a * b).mean() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_flat_images_is_the_luminance_term():
    a, b = 0.5, 0.75  # [0, 1] values of 0.0 and 0.5 in [-1, 1]
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    x, y = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)
    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-6)
    assert ssim(x, y, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(expected, abs=1e-6)


def test_ssim_4x4_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 4, 4, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(1, 1, 4, 4, generator=g)).clamp(-1, 1)
    x3, y3 = x.expand(1, 3, 4, 4), y.expand(1, 3, 4, 4)  # the same values in every channel
    expected = _ssim_by_hand(((x[0, 0] + 1) / 2).double().numpy(), ((y[0, 0] + 1) / 2).double().numpy())
    assert ssim(x3, y3, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(expected, abs=1e-6)
    assert ssim(x3, x3, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_too_small_for_the_window():
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))  # the Gaussian window pads 5 px


def test_ssim_needs_no_torchvision():
    import sys

    ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)


def test_lpips_distance_is_zero_on_identical_images_and_symmetric():
    from mystyle_pl.losses import LPIPS

    net = LPIPS("alex", pretrained=False)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert lpips_distance(x, x, net).tolist() == [0.0, 0.0]
    d = lpips_distance(x, y, net)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(d, lpips_distance(y, x, net), atol=1e-6)
