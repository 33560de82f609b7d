import pytest
import torch

from mystyle_pl.generators import StyleGAN2Generator, load_generator, save_generator
from mystyle_pl.generators.ops import setup_filter, upfirdn2d, upsample2d

from ..helpers import make_tiny_stylegan2


def _ws(generator, batch=2, seed=1):
    z = torch.randn(batch, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.broadcast_w(generator.mapping(z))


@pytest.mark.parametrize("resolution", [8, 16, 64])
def test_output_shape_and_scale(resolution):
    generator = make_tiny_stylegan2(resolution)
    expected_num_ws = 2 * (resolution.bit_length() - 1) - 2
    assert generator.num_ws == expected_num_ws
    with torch.no_grad():
        img = generator(torch.randn(3, generator.z_dim))
    assert img.shape == (3, 3, resolution, resolution)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    # Equalised learning rate keeps activations O(1) through every block; a wrong gain explodes or vanishes.
    assert 0.05 < img.std().item() < 5


def test_config_f_layout():
    generator = StyleGAN2Generator(img_resolution=1024)
    assert generator.num_ws == 18
    assert generator.synthesis.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    n_params = sum(p.numel() for p in generator.parameters())
    assert 30_000_000 < n_params < 31_000_000  # config-f G: 30.0M parameters


def test_w_and_wplus_agree(tiny_generator):
    g = tiny_generator
    w = g.mapping(torch.randn(2, g.z_dim))
    ws_broadcast = g.broadcast_w(w)
    ws_explicit = torch.stack([w] * g.num_ws, dim=1).clone()
    with torch.no_grad():
        assert torch.equal(g.synthesis(ws_broadcast), g.synthesis(ws_explicit))
        # Every layer reads its own w: changing any single one changes the image.
        base = g.synthesis(ws_explicit)
        for layer in (0, g.num_ws // 2, g.num_ws - 1):
            ws = ws_explicit.clone()
            ws[:, layer] += 1.0
            assert (g.synthesis(ws) - base).abs().max() > 1e-4, f"layer {layer} has no effect"


def test_noise_modes(tiny_generator):
    ws = _ws(tiny_generator)
    with torch.no_grad():
        const_a = tiny_generator.synthesis(ws, noise_mode="const")
        const_b = tiny_generator.synthesis(ws, noise_mode="const")
        random_a = tiny_generator.synthesis(ws, noise_mode="random")
        random_b = tiny_generator.synthesis(ws, noise_mode="random")
        none = tiny_generator.synthesis(ws, noise_mode="none")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(random_a, random_b)
    assert not torch.allclose(const_a, none)
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_generator.synthesis(ws, noise_mode="bogus")


def test_truncation_pulls_towards_w_avg(tiny_generator):
    z = torch.randn(4, tiny_generator.z_dim)
    w = tiny_generator.mapping(z)
    w_avg = tiny_generator.w_avg
    assert torch.allclose(tiny_generator.mapping(z, truncation_psi=0.0), w_avg.expand_as(w), atol=1e-6)
    half = tiny_generator.mapping(z, truncation_psi=0.5)
    assert torch.allclose(half, w_avg + 0.5 * (w - w_avg), atol=1e-5)


def test_fused_and_unfused_modconv_agree(tiny_generator):
    ws = _ws(tiny_generator, batch=3)
    ws = ws + 0.3 * torch.randn_like(ws)  # W+
    with torch.no_grad():
        fused = tiny_generator.synthesis(ws, fused_modconv=True)
        unfused = tiny_generator.synthesis(ws, fused_modconv=False)
    assert (fused - unfused).abs().max() < 1e-4


def test_batch_items_are_independent(tiny_generator):
    ws = _ws(tiny_generator, batch=3)
    with torch.no_grad():
        batched = tiny_generator.synthesis(ws)
        single = tiny_generator.synthesis(ws[1:2])
    assert (batched[1:2] - single).abs().max() < 1e-5


def test_gradients_reach_ws_and_weights(tiny_generator):
    ws = _ws(tiny_generator).detach().requires_grad_(True)
    tiny_generator.train()
    tiny_generator.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert tiny_generator.synthesis.b4.const.grad.abs().sum() > 0
    assert tiny_generator.synthesis.b32.conv0.weight.grad.abs().sum() > 0


def test_bf16_autocast_close_to_fp32(tiny_generator):
    ws = _ws(tiny_generator)
    with torch.no_grad():
        ref = tiny_generator.synthesis(ws)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_generator.synthesis(ws)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


def test_wrong_ws_shape_names_expected_shape(tiny_generator):
    g = tiny_generator
    with pytest.raises(ValueError, match=rf"\[B, num_ws={g.num_ws}, w_dim={g.w_dim}\].*broadcast_w"):
        g.synthesis(torch.randn(2, g.w_dim))
    with pytest.raises(ValueError, match=f"num_ws={g.num_ws}"):
        g.synthesis(torch.randn(2, g.num_ws + 1, g.w_dim))
    with pytest.raises(ValueError, match=f"z_dim={g.z_dim}"):
        g.mapping(torch.randn(2, g.z_dim + 3))


def test_invalid_resolution():
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(img_resolution=48)


def test_native_round_trip_is_bit_exact(tiny_generator, tmp_path):
    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    loaded = load_generator(path).eval()
    assert loaded.config == tiny_generator.config
    for (name, a), (_, b) in zip(tiny_generator.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ws = _ws(tiny_generator)
    with torch.no_grad():
        assert torch.equal(tiny_generator.synthesis(ws), loaded.synthesis(ws))
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temp file"


def test_upsample_preserves_constant_image():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 6, 6), 0.7)
    y = upsample2d(x, f)
    assert y.shape == (1, 2, 12, 12)
    # Away from the zero-padded border a constant stays constant (DC gain 1).
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 0.7), atol=1e-6)


def test_upfirdn2d_impulse_response_is_the_filter():
    f = setup_filter([1, 2, 1])
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    y = upfirdn2d(x, f, padding=(1, 1, 1, 1))
    assert torch.allclose(y[0, 0, 1:4, 1:4], f)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_render_matches_cpu():
    """The same generator and w render the same image on CUDA as on the CPU (fp32, TF32 off)."""
    generator = make_tiny_stylegan2(resolution=64)
    ws = _ws(generator)
    matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu = generator.synthesis(ws, noise_mode="const")
            cuda = generator.to("cuda").synthesis(ws.to("cuda"), noise_mode="const").cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    assert cuda.shape == cpu.shape == (2, 3, 64, 64)
    torch.testing.assert_close(cuda, cpu, atol=1e-4, rtol=1e-4)
