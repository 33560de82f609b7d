"""rosinality/stylegan2-pytorch checkpoints (``formats/rosinality.py``).

The fixtures write rosinality-layout checkpoints from our generator with an inverse
mapping written here from rosinality's ``model.py`` layout (not with the loader's table),
and a small re-implementation of rosinality's forward pass renders them, so the
converter is proven against rosinality's math, not only against itself.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from mystyle_pl.generators import CheckpointError, StyleGAN2Generator, detect_format, load_generator
from mystyle_pl.generators.formats import rosinality

from ...helpers import make_tiny_stylegan2

# ----------------------------------------------------------------------------------------
# Writing rosinality checkpoints (inverse of the documented layout)
# ----------------------------------------------------------------------------------------


def make_kernel(taps=(1.0, 3.0, 3.0, 1.0)):
    """rosinality model.make_kernel: outer product, normalised to sum 1."""
    k = torch.tensor(taps)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def to_rosinality(G: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """Our generator's weights in rosinality's ``Generator.state_dict()`` layout."""
    sd: dict[str, torch.Tensor] = {}
    up_kernel = make_kernel() * 4  # Blur(upsample_factor=2) and Upsample(factor=2) both scale by 4

    def styled_conv(prefix, layer, upsample):
        sd[f"{prefix}.conv.weight"] = layer.weight[None]
        sd[f"{prefix}.conv.modulation.weight"] = layer.affine.weight
        sd[f"{prefix}.conv.modulation.bias"] = layer.affine.bias
        if upsample:
            sd[f"{prefix}.conv.blur.kernel"] = up_kernel.clone()
        sd[f"{prefix}.noise.weight"] = layer.noise_strength.reshape(1)
        sd[f"{prefix}.activate.bias"] = layer.bias

    def to_rgb(prefix, layer, upsample):
        if upsample:
            sd[f"{prefix}.upsample.kernel"] = up_kernel.clone()
        sd[f"{prefix}.conv.weight"] = layer.weight[None]
        sd[f"{prefix}.conv.modulation.weight"] = layer.affine.weight
        sd[f"{prefix}.conv.modulation.bias"] = layer.affine.bias
        sd[f"{prefix}.bias"] = layer.bias.reshape(1, -1, 1, 1)

    for i in range(G.mapping.num_layers):  # style.0 is PixelNorm
        fc = getattr(G.mapping, f"fc{i}")
        sd[f"style.{i + 1}.weight"], sd[f"style.{i + 1}.bias"] = fc.weight, fc.bias
    b4 = G.synthesis.b4
    sd["input.input"] = b4.const[None]
    styled_conv("conv1", b4.conv1, False)
    to_rgb("to_rgb1", b4.torgb, False)
    noises = [b4.conv1.noise_const]
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        block = getattr(G.synthesis, f"b{res}")
        styled_conv(f"convs.{2 * k}", block.conv0, True)
        styled_conv(f"convs.{2 * k + 1}", block.conv1, False)
        to_rgb(f"to_rgbs.{k}", block.torgb, True)
        noises += [block.conv0.noise_const, block.conv1.noise_const]
    for j, noise in enumerate(noises):
        sd[f"noises.noise_{j}"] = noise[None, None]
    return {k: v.detach().clone() for k, v in sd.items()}


# ----------------------------------------------------------------------------------------
# rosinality's forward pass, re-implemented from model.py (plain loops, no fused kernels)
# ----------------------------------------------------------------------------------------


def _upfirdn(x, kernel, up, pad0, pad1):
    """upfirdn2d_native with down=1 and the same padding on both axes."""
    if up > 1:
        y = x.new_zeros(x.shape[0], x.shape[1], x.shape[2] * up, x.shape[3] * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = torch.flip(kernel, [0, 1])[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(x, k, groups=x.shape[1])


def _equal_linear(x, weight, bias, lr_mul, fused_lrelu):
    out = F.linear(x, weight * (lr_mul / math.sqrt(weight.shape[1])))
    if fused_lrelu:
        return F.leaky_relu(out + bias * lr_mul, 0.2) * math.sqrt(2)
    return out + bias * lr_mul


def _modulated_conv(x, sd, prefix, style, demodulate, upsample):
    weight = sd[f"{prefix}.conv.weight"][0]
    out_ch, in_ch, k, _ = weight.shape
    s = _equal_linear(style, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"], 1, False)
    outs = []
    for b in range(x.shape[0]):
        w = (1 / math.sqrt(in_ch * k * k)) * weight * s[b].view(1, in_ch, 1, 1)
        if demodulate:
            w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3]) + 1e-8).view(out_ch, 1, 1, 1)
        if upsample:
            o = F.conv_transpose2d(x[b : b + 1], w.transpose(0, 1), stride=2, padding=0)
            outs.append(_upfirdn(o, sd[f"{prefix}.conv.blur.kernel"], 1, 1, 1))
        else:
            outs.append(F.conv2d(x[b : b + 1], w, padding=k // 2))
    return torch.cat(outs)


def _styled_conv(x, sd, prefix, style, noise, upsample):
    out = _modulated_conv(x, sd, prefix, style, True, upsample)
    if noise is not None:
        out = out + sd[f"{prefix}.noise.weight"] * noise
    return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def _to_rgb(x, sd, prefix, style, skip):
    out = _modulated_conv(x, sd, prefix, style, False, False) + sd[f"{prefix}.bias"]
    if skip is not None:
        out = out + _upfirdn(skip, sd[f"{prefix}.upsample.kernel"], 2, 2, 1)
    return out


def rosinality_mapping(sd, z, lr_mlp=0.01):
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        x = _equal_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mlp, True)
        i += 1
    return x


def rosinality_synthesis(sd, latent, use_noise=True):
    """``Generator.forward(input_is_latent=True, randomize_noise=False)``; ``use_noise=False``: no noise."""
    n_noises = sum(1 for k in sd if k.startswith("noises."))
    noise = [sd[f"noises.noise_{j}"] if use_noise else None for j in range(n_noises)]
    n_rgbs = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    out = sd["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = _styled_conv(out, sd, "conv1", latent[:, 0], noise[0], False)
    skip = _to_rgb(out, sd, "to_rgb1", latent[:, 1], None)
    i = 1
    for k in range(n_rgbs):
        out = _styled_conv(out, sd, f"convs.{2 * k}", latent[:, i], noise[2 * k + 1], True)
        out = _styled_conv(out, sd, f"convs.{2 * k + 1}", latent[:, i + 1], noise[2 * k + 2], False)
        skip = _to_rgb(out, sd, f"to_rgbs.{k}", latent[:, i + 2], skip)
        i += 2
    return skip


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def tiny(resolution=32, **overrides):
    kwargs = dict(channel_base=512, channel_max=64)
    kwargs.update(overrides)
    return make_tiny_stylegan2(resolution, **kwargs).requires_grad_(False)


def save_ckpt(path, obj, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def latents(G, seed=3, batch=2):
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return z, G.broadcast_w(G.mapping(z))


def same_weights(a, b, skip=("mapping.w_avg",)):
    """Every tensor equal (rendering parity is proven by the tests above; this is the cheap check)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    return all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


def render_diff(a, b, noise_mode):
    a.eval(), b.eval()
    _, ws = latents(a)
    with torch.no_grad():
        return (a.synthesis(ws, noise_mode=noise_mode) - b.synthesis(ws, noise_mode=noise_mode)).abs().max().item()


# ----------------------------------------------------------------------------------------
# Round trips and parity with rosinality's math
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-torch-save"])
def test_converted_checkpoint_renders_identically(tmp_path, legacy):
    G = tiny()
    latent_avg = torch.randn(G.w_dim)
    path = save_ckpt(tmp_path / "550000.pt", {"g_ema": to_rosinality(G), "latent_avg": latent_avg}, legacy)
    assert detect_format(path) == "rosinality"
    loaded = load_generator(path)
    assert isinstance(loaded, StyleGAN2Generator)
    assert loaded.config == G.config
    assert torch.equal(loaded.w_avg, latent_avg)  # latent_avg -> w_avg
    for noise_mode in ("const", "none"):
        assert render_diff(G, loaded, noise_mode) < 1e-5


def test_matches_rosinality_forward_pass(tmp_path):
    """Our generator with the converted weights renders what rosinality's model.py renders."""
    G = tiny()
    sd = to_rosinality(G)
    loaded = rosinality.load(save_ckpt(tmp_path / "ckpt.pt", {"g_ema": sd})).eval()
    z, _ = latents(G)
    with torch.no_grad():
        w_ours = loaded.mapping(z)
        w_ref = rosinality_mapping(sd, z)
        assert (w_ours - w_ref).abs().max() < 1e-5
        ws = loaded.broadcast_w(w_ref)
        for noise_mode, use_noise in (("const", True), ("none", False)):
            ours = loaded.synthesis(ws, noise_mode=noise_mode)
            reference = rosinality_synthesis(sd, ws, use_noise=use_noise)
            assert ours.shape == reference.shape == (2, 3, 32, 32)
            assert (ours - reference).abs().max() < 1e-5, noise_mode


@pytest.mark.parametrize(
    "resolution,overrides,expected_channels",
    [
        (32, dict(channel_base=512, channel_max=64), {4: 64, 8: 64, 16: 32, 32: 16}),
        (16, dict(channel_base=128, channel_max=16, mapping_layers=3, w_dim=24), {4: 16, 8: 16, 16: 8}),
        (16, dict(channel_base=1024, channel_max=8, mapping_layers=2), {4: 8, 8: 8, 16: 8}),
    ],
)
def test_architecture_is_inferred(tmp_path, resolution, overrides, expected_channels):
    G = tiny(resolution, **overrides)
    assert G.synthesis.channels == expected_channels
    sd = to_rosinality(G)
    config = rosinality.infer_config(sd, source="sd")
    rebuilt = StyleGAN2Generator(**config)
    assert rebuilt.synthesis.channels == expected_channels
    assert (config["img_resolution"], config["mapping_layers"], config["w_dim"]) == (
        resolution, G.mapping.num_layers, G.w_dim,
    )  # fmt: skip
    loaded = load_generator(save_ckpt(tmp_path / "g.pt", {"g_ema": sd}))
    assert same_weights(G, loaded)


def test_rosinality_channel_table_and_overrides(tmp_path):
    """rosinality's table min(16384 * channel_multiplier // res, 512); size= / channel_multiplier= checked."""
    G = make_tiny_stylegan2(8, channel_base=32768, channel_max=512).requires_grad_(False)  # config-f at 8 px
    path = save_ckpt(tmp_path / "f.pt", {"g_ema": to_rosinality(G)})
    loaded = load_generator(path, size=8, channel_multiplier=2)
    assert (loaded.config["channel_base"], loaded.config["channel_max"]) == (32768, 512)
    assert loaded.synthesis.channels == {4: 512, 8: 512}
    with pytest.raises(CheckpointError, match=r"f\.pt.*size=16.*8 px"):
        load_generator(path, size=16)
    small = save_ckpt(tmp_path / "small.pt", {"g_ema": to_rosinality(tiny())})
    with pytest.raises(CheckpointError, match=r"small\.pt.*channel schedule.*--size SIZE --channel-multiplier M"):
        load_generator(small, channel_multiplier=2)


def test_channel_schedule_that_cannot_be_expressed(tmp_path):
    sd = to_rosinality(tiny())
    sd["input.input"] = torch.randn(1, 16, 4, 4)  # narrower at 4 px than at 8 px
    sd["conv1.conv.weight"] = torch.randn(1, 16, 16, 3, 3)
    with pytest.raises(CheckpointError, match=r"odd\.pt.*size=, channel_multiplier="):
        load_generator(save_ckpt(tmp_path / "odd.pt", {"g_ema": sd}))


def test_missing_latent_avg_is_estimated(tmp_path):
    G = tiny()
    loaded = load_generator(save_ckpt(tmp_path / "no_avg.pt", {"g_ema": to_rosinality(G)}))
    assert torch.allclose(loaded.w_avg, G.estimate_w_avg(), atol=1e-6)


def test_training_checkpoint_and_key_selection(tmp_path):
    """train.py's dict: g, d, g_ema, optimiser states, args (argparse.Namespace), ada_aug_p."""
    G_ema, G_train = tiny(seed=0), tiny(seed=1)
    param = torch.nn.Parameter(torch.zeros(3))
    optim = torch.optim.Adam([param], lr=0.002, betas=(0.0, 0.99))
    param.grad = torch.ones(3)
    optim.step()  # so the optimiser state holds tensors and step counts
    ckpt = {
        "g": to_rosinality(G_train),
        "d": {"convs.0.0.weight": torch.randn(8, 3, 1, 1)},
        "g_ema": to_rosinality(G_ema),
        "g_optim": optim.state_dict(),
        "d_optim": optim.state_dict(),
        "args": argparse.Namespace(size=32, n_mlp=8, channel_multiplier=2, path="/data/lmdb", r1=10.0),
        "ada_aug_p": 0.25,
    }
    path = save_ckpt(tmp_path / "001000.pt", ckpt)
    assert same_weights(G_ema, load_generator(path))
    assert same_weights(G_train, load_generator(path, key="g"))
    with pytest.raises(CheckpointError, match=r"001000\.pt.*'g_emma'.*'g'.*'g_ema'.*--key g\b.*key='g'"):
        load_generator(path, key="g_emma")


def test_bare_state_dict(tmp_path):
    G = tiny()
    loaded = load_generator(save_ckpt(tmp_path / "bare.pt", to_rosinality(G)))
    assert same_weights(G, loaded)


# ----------------------------------------------------------------------------------------
# Generators inside other projects' checkpoints (pSp / e4e / ReStyle: the decoder)
# ----------------------------------------------------------------------------------------


def psp_checkpoint(G: StyleGAN2Generator, latent_avg: torch.Tensor | None = None, seed: int = 0) -> dict:
    """A pSp / e4e / ReStyle ``coach.py`` save dict: encoder and decoder in one ``state_dict``, the
    decoder's average latent repeated per layer (``[num_ws, w_dim]``), ``opts`` as a plain dict."""
    g = torch.Generator().manual_seed(seed)
    encoder = {
        "encoder.input_layer.0.weight": torch.randn(8, 3, 3, 3, generator=g),
        "encoder.styles.0.convs.0.bias": torch.randn(8, generator=g),
    }
    decoder = {f"decoder.{k}": v for k, v in to_rosinality(G).items()}
    if latent_avg is None:
        latent_avg = G.w_avg.detach().clone()[None].repeat(G.num_ws, 1)
    return {
        "state_dict": {**encoder, **decoder},
        "latent_avg": latent_avg,
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": G.img_resolution, "start_from_latent_avg": True},
    }


def test_psp_e4e_checkpoint_loads_its_decoder(tmp_path):
    G = tiny()
    path = save_ckpt(tmp_path / "e4e_ffhq_encode.pt", psp_checkpoint(G))
    assert detect_format(path) == "rosinality"
    loaded = load_generator(path)
    assert loaded.config == G.config and same_weights(G, loaded, skip=())
    assert torch.equal(loaded.w_avg, G.w_avg)  # latent_avg [num_ws, w_dim] of equal rows -> w_avg
    assert render_diff(G, loaded, "const") < 1e-5
    assert same_weights(G, load_generator(path, key="state_dict.decoder"), skip=())  # the name the errors give
    [found] = rosinality.find_generators(torch.load(path, weights_only=True))
    assert found.key == "state_dict.decoder" and "input.input" in found.state


def test_psp_checkpoint_with_a_per_layer_latent_avg_estimates_w_avg(tmp_path):
    """A W+ average (rows differ) is not StyleGAN's w_avg: warned, and w_avg comes from the mapping network."""
    G = tiny()
    path = save_ckpt(tmp_path / "restyle.pt", psp_checkpoint(G, latent_avg=torch.randn(G.num_ws, G.w_dim)))
    with pytest.warns(UserWarning, match=r"restyle\.pt.*latent_avg.*different rows"):
        loaded = load_generator(path)
    assert torch.allclose(loaded.w_avg, G.estimate_w_avg(), atol=1e-6)


def test_several_generators_are_listed_with_a_remedy_that_works(tmp_path, capsys):
    """No g_ema among several generators: the error names each and the --key / key= that picks it; both work."""
    from mystyle_pl.cli import main

    G_a, G_b = tiny(seed=0), tiny(seed=1)
    ckpt = {"generator": to_rosinality(G_a), "state_dict": {f"decoder.{k}": v for k, v in to_rosinality(G_b).items()}}
    path = save_ckpt(tmp_path / "two.pt", ckpt)
    with pytest.raises(CheckpointError, match=r"two\.pt.*several generators.*'generator'.*'state_dict\.decoder'") as err:
        load_generator(path)
    message = str(err.value)
    assert f"mystyle-pl convert {path} OUT.safetensors --key generator" in message
    assert "key='generator'" in message
    assert same_weights(G_a, load_generator(path, key="generator"))
    assert same_weights(G_b, load_generator(path, key="state_dict.decoder"))
    # The CLI route the message names: convert with --key, then info on the result.
    assert main(["info", str(path)]) == 2 and "--key generator" in capsys.readouterr().err
    out = tmp_path / "b.safetensors"
    assert main(["convert", str(path), str(out), "--key", "state_dict.decoder"]) == 0
    assert same_weights(G_b, load_generator(out))
    assert main(["info", str(path), "--key", "generator", "--json"]) == 0
    assert f'"num_ws": {G_a.num_ws}' in capsys.readouterr().out


def test_key_on_other_formats_is_refused_by_name(tmp_path, capsys):
    from mystyle_pl.cli import main
    from mystyle_pl.generators import save_generator

    native = save_generator(tiny(), tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match=r"g\.safetensors.*key.*only to torch \.pt.*'native'.*drop"):
        load_generator(native, key="g_ema")
    assert main(["info", str(native), "--key", "g_ema"]) == 2
    assert "drop them" in capsys.readouterr().err


def test_lightning_fit_checkpoint_points_to_export(tmp_path):
    """A mystyle-pl fit .ckpt is not a generator: the error says how to get a prior out of it."""
    synthesis = {f"generator.synthesis.{k}": v for k, v in tiny().synthesis.state_dict().items()}
    path = save_ckpt(tmp_path / "last.ckpt", {"pytorch-lightning_version": "2.5.0", "epoch": 3, "state_dict": synthesis})
    with pytest.raises(CheckpointError, match=r"last\.ckpt.*fit checkpoint.*mystyle-pl export .*last\.ckpt PRIOR_DIR"):
        load_generator(path)


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def test_unexpected_tensor_is_named(tmp_path):
    sd = to_rosinality(tiny())
    sd["convs.1.conv.lora_scale"] = torch.ones(1)
    with pytest.raises(CheckpointError, match=r"extra\.pt.*convs\.1\.conv\.lora_scale"):
        load_generator(save_ckpt(tmp_path / "extra.pt", {"g_ema": sd}))


def test_missing_tensor_is_named(tmp_path):
    sd = to_rosinality(tiny())
    del sd["noises.noise_3"]
    with pytest.raises(CheckpointError, match=r"gap\.pt.*missing.*synthesis\.b16\.conv0\.noise_const"):
        load_generator(save_ckpt(tmp_path / "gap.pt", {"g_ema": sd}))


def test_other_blur_kernels_are_refused(tmp_path):
    sd = to_rosinality(tiny())
    sd["convs.2.conv.blur.kernel"] = torch.ones(4, 4) / 4
    with pytest.raises(CheckpointError, match=r"blur\.pt.*convs\.2\.conv\.blur\.kernel.*\[1, 3, 3, 1\]"):
        load_generator(save_ckpt(tmp_path / "blur.pt", {"g_ema": sd}))


def test_bad_latent_avg(tmp_path):
    ckpt = {"g_ema": to_rosinality(tiny()), "latent_avg": torch.zeros(18, 32)}
    with pytest.raises(CheckpointError, match=r"avg\.pt.*latent_avg.*w_dim=32"):
        load_generator(save_ckpt(tmp_path / "avg.pt", ckpt))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-torch-save"])
def test_truncated_checkpoint(tmp_path, legacy):
    data = save_ckpt(tmp_path / "full.pt", {"g_ema": to_rosinality(tiny())}, legacy).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*truncated or corrupt"):
        load_generator(path)
    with pytest.raises(CheckpointError, match=r"cut\.pt.*truncated or corrupt"):
        rosinality.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_generator(tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        rosinality.load(tmp_path / "absent.pt")


def test_unknown_bytes(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match=r"weights\.pt.*unrecognised"):
        detect_format(path)
    with pytest.raises(CheckpointError, match=r"weights\.pt"):
        load_generator(path)


def test_not_a_generator(tmp_path):
    path = save_ckpt(tmp_path / "other.pt", {"g_ema": {"fc.weight": torch.zeros(2, 2)}})
    with pytest.raises(CheckpointError, match=r"other\.pt.*no rosinality StyleGAN2 generator found.*top-level keys: \[.g_ema.\]"):
        load_generator(path)


def test_malicious_torch_file_is_refused(tmp_path):
    """A legacy torch.save header followed by a pickle that would run a command."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(Evil(), protocol=2))
    assert detect_format(path) == "rosinality"
    with pytest.raises(CheckpointError, match=rf"evil\.pt.*'{os.system.__module__}\.system'"):
        load_generator(path)
    with pytest.raises(CheckpointError, match=rf"evil\.pt.*'{os.system.__module__}\.system'"):
        rosinality.load(path)
    assert not marker.exists()


def test_detect_format_on_torch_files(tmp_path):
    buffer = io.BytesIO()
    torch.save({"g_ema": {}}, buffer)
    zipped = tmp_path / "a.pt"
    zipped.write_bytes(buffer.getvalue())
    legacy = save_ckpt(tmp_path / "b.pkl", {"g_ema": {}}, legacy=True)
    assert detect_format(zipped) == "rosinality"
    assert detect_format(legacy) == "rosinality"  # the torch header wins over the .pkl suffix
