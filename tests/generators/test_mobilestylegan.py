"""MobileStyleGAN: the PyTorch port on tiny seeded models.

The converted FFHQ weights (against OpenVINO) are tested in ``formats/test_openvino_ir.py``.
"""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.generators import load_generator, save_generator
from mystyle_pl.generators.formats import native
from mystyle_pl.generators.mobilestylegan import (
    HaarUpsample,
    MobileStyleGANGenerator,
    haar_channel_order,
    inverse_haar,
    ws_from_upstream,
)

from ..helpers import activate_every_path


def make_tiny(seed: int = 0, **overrides) -> MobileStyleGANGenerator:
    """A small seeded MobileStyleGAN (32 px) whose noise strengths and biases are non-zero."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=32, w_dim=32, channels=(32, 16, 8), mapping_layers=2)
    kwargs.update(overrides)
    return activate_every_path(MobileStyleGANGenerator(**kwargs))


def _ws(generator: MobileStyleGANGenerator, batch: int = 2, seed: int = 1) -> torch.Tensor:
    z = torch.randn(batch, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.broadcast_w(generator.mapping(z))


# ----------------------------------------------------------------------------------------
# the port, on tiny models


def test_layout_and_shapes():
    generator = make_tiny()
    assert generator.num_ws == 3 * 3 - 1 == len(generator.synthesis.ws_layers)
    assert generator.synthesis.ws_layers == [
        "b4.conv", "b8.up", "b8.conv0", "b8.conv1", "b16.up", "b16.conv0", "b16.conv1", "to_img",
    ]  # fmt: skip
    with torch.no_grad():
        img = generator(torch.randn(3, generator.z_dim), truncation_psi=0.7)
    assert img.shape == (3, 3, 32, 32) and img.is_contiguous() and torch.isfinite(img).all()
    assert 0.05 < img.std().item() < 5


def test_ffhq_layout():
    generator = MobileStyleGANGenerator()
    assert (generator.num_ws, generator.img_resolution, generator.w_dim) == (23, 1024, 512)
    assert sum(p.numel() for p in generator.synthesis.parameters()) == 7_306_395


def test_batch_matches_single_images():
    generator = make_tiny()
    ws = _ws(generator, batch=3) + 0.3 * torch.randn(3, generator.num_ws, generator.w_dim)
    with torch.no_grad():
        batch = generator.synthesis(ws)
        singles = torch.cat([generator.synthesis(ws[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)


def test_w_and_wplus_agree():
    generator = make_tiny()
    ws_broadcast = _ws(generator)
    ws_explicit = ws_broadcast.clone().contiguous()
    with torch.no_grad():
        base = generator.synthesis(ws_explicit)
        torch.testing.assert_close(generator.synthesis(ws_broadcast), base, atol=0, rtol=0)
        for layer in range(generator.num_ws):  # every style input reaches the image
            ws = ws_explicit.clone()
            ws[:, layer] += 1.0
            assert (generator.synthesis(ws) - base).abs().max() > 1e-5, generator.synthesis.ws_layers[layer]


def test_noise_modes():
    generator = make_tiny()
    ws = _ws(generator)
    with torch.no_grad():
        const_a, const_b = generator.synthesis(ws, noise_mode="const"), generator.synthesis(ws, noise_mode="const")
        random_a, random_b = generator.synthesis(ws, noise_mode="random"), generator.synthesis(ws, noise_mode="random")
        none = generator.synthesis(ws, noise_mode="none")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(random_a, random_b)
    assert not torch.allclose(const_a, none)
    with pytest.raises(ValueError, match="noise_mode"):
        generator.synthesis(ws, noise_mode="bogus")


def test_gradients_reach_every_synthesis_parameter():
    generator = make_tiny().train()
    ws = _ws(generator, batch=2).requires_grad_(True)
    generator.synthesis(ws, noise_mode="const").square().mean().backward()
    missing = [n for n, p in generator.synthesis.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert ws.grad.abs().sum() > 0


def test_bf16_autocast_close_to_fp32():
    generator = make_tiny()
    ws = _ws(generator)
    with torch.no_grad():
        reference = generator.synthesis(ws)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = generator.synthesis(ws)
    assert low.shape == reference.shape and torch.isfinite(low).all()
    assert (low.float() - reference).abs().max() < 0.05 * reference.abs().max()


def test_native_roundtrip_is_bit_exact(tmp_path):
    generator = make_tiny()
    path = save_generator(generator, tmp_path / "tiny.safetensors")
    assert native.read_metadata(path)["family"] == "mobilestylegan"
    loaded = load_generator(path).eval()
    assert isinstance(loaded, MobileStyleGANGenerator) and loaded.config == generator.config
    for name, tensor in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    ws = _ws(generator)
    with torch.no_grad():
        assert torch.equal(loaded.synthesis(ws), generator.synthesis(ws))


@pytest.mark.parametrize("shape", [(2, 32), (2, 7, 32), (2, 8, 31), (8, 32, 2)])
def test_bad_ws_shape_is_refused(shape):
    generator = make_tiny()
    with pytest.raises(ValueError, match=r"num_ws=8, w_dim=32"):
        generator.synthesis(torch.zeros(shape))


def test_inverse_haar_fast_paths_match_reference():
    torch.manual_seed(0)
    coeffs = torch.randn(2, 16, 5, 5, dtype=torch.float64)
    up = HaarUpsample(16, w_dim=8).double()
    w = torch.randn(2, 8, dtype=torch.float64)
    reference = inverse_haar(coeffs * up.affine(w)[:, :, None, None])
    ordered = coeffs[:, haar_channel_order(4)]
    for batch in (1, 2):  # batch 1 modulates the kernel, larger batches the activation
        torch.testing.assert_close(up(ordered[:batch].clone(), w[:batch]), reference[:batch])
    to_img = make_tiny().synthesis.to_img.double()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(to_img.to_image(x, w.new_ones(2, 32)), inverse_haar(to_img(x, w.new_ones(2, 32))))
    # Orthonormal: a constant LL band of 2 gives a constant image of 1; energy is preserved.
    flat = torch.zeros(1, 4, 3, 3, dtype=torch.float64)
    flat[:, 0] = 2
    assert torch.equal(inverse_haar(flat), torch.ones(1, 1, 6, 6, dtype=torch.float64))
    torch.testing.assert_close(inverse_haar(coeffs).square().sum(), coeffs.square().sum())


def test_haar_upsample_modulates_where_the_gradient_is_cheap(monkeypatch):
    """One image modulates the kernel unless a bfloat16 gradient must reach the styles (the kernel's
    gradient is slow there on a CPU); both ways give the same image and the same gradients."""
    import mystyle_pl.generators.mobilestylegan as msg

    torch.manual_seed(0)
    up = HaarUpsample(16, w_dim=8)
    x0, w0 = torch.randn(1, 16, 5, 5), torch.randn(1, 8)
    reference = inverse_haar(x0 * up.affine(w0)[:, :, None, None]).detach()
    results = {}
    for path in ("kernel", "activation"):
        monkeypatch.setattr(msg, "_kernel_gradient_is_cheap", lambda x, s, path=path: path == "kernel")
        x, w = x0[:, haar_channel_order(4)].clone().requires_grad_(True), w0.clone().requires_grad_(True)
        out = up(x, w)
        out.square().sum().backward()
        results[path] = (out.detach(), x.grad, w.grad)
    torch.testing.assert_close(results["kernel"][0], reference)
    for a, b in zip(results["kernel"], results["activation"]):
        torch.testing.assert_close(a, b)
    monkeypatch.undo()
    styles = up.affine(w0.requires_grad_(True))
    assert msg._kernel_gradient_is_cheap(x0, styles)  # float32: the kernel's gradient is as cheap
    assert msg._kernel_gradient_is_cheap(x0.bfloat16(), styles.detach())  # no gradient to the styles
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not msg._kernel_gradient_is_cheap(x0, styles)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert msg._kernel_gradient_is_cheap(x0, up.affine(w0))
    # torch < 2.4 (is_autocast_enabled takes no device): the input's dtype decides
    def is_autocast_enabled_before_2_4(*args):
        if args:
            raise TypeError("is_autocast_enabled() takes 0 positional arguments")
        return False

    with torch.autocast("cpu", dtype=torch.bfloat16), monkeypatch.context() as old_torch:
        old_torch.setattr(torch, "is_autocast_enabled", is_autocast_enabled_before_2_4)
        assert not msg._kernel_gradient_is_cheap(x0.bfloat16(), styles)
        assert msg._kernel_gradient_is_cheap(x0, styles)


def test_ws_from_upstream_layout():
    upstream = torch.arange(23.0).reshape(1, 23, 1).expand(2, 23, 4)
    ours = ws_from_upstream(upstream)
    assert ours[0, :, 0].tolist() == [0, 1, 1, 2, 4, 4, 5, 7, 7, 8, 10, 10, 11, 13, 13, 14, 16, 16, 17, 19, 19, 20, 21]
    with pytest.raises(ValueError, match="num_ws=23"):
        ws_from_upstream(torch.zeros(1, 18, 4))
