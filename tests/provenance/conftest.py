"""Fixtures and images of the provenance tests: a fresh ``MYSTYLE_HOME`` per test (its own install
key), tiny priors (32 px: under the watermark's minimum; 256 px: over it), face-like images and a
stand-in face analyser (one face at a known place, no dlib)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.faces import FaceBox
from mystyle_pl.prior import PersonalPrior

from ..helpers import make_tiny_stylegan2

R = 32  # the small prior: under the watermark's minimum crop (its results are labelled, not marked)
BIG = 256  # the large prior: its results carry the mark


@pytest.fixture(autouse=True)
def fresh_home(monkeypatch, tmp_path):
    """Each test its own MYSTYLE_HOME: the install key is made in it (no order, no cache)."""
    monkeypatch.setenv("MYSTYLE_HOME", str(tmp_path / "home"))
    for name in ("MYSTYLE_C2PA_CERT", "MYSTYLE_C2PA_KEY", "MYSTYLE_TRUST_ANCHORS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])


def save_prior(folder: Path, resolution: int) -> Path:
    """A tiny prior whose pictures are not saturated: its toRGB layers scaled by 0.3 (a random
    generator's raw output is clipped noise, from which no mark reads back; measured: every one of
    three 256 px samples carries the mark at 0.3)."""
    generator = make_tiny_stylegan2(resolution=resolution, seed=0)
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if ".torgb.weight" in name or ".torgb.bias" in name:
                param.mul_(0.3)
        w = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    return PersonalPrior(generator, Anchors(w=w, names=[f"{i}.png" for i in range(4)])).save(folder / "prior")


@pytest.fixture(scope="package")
def prior_dir(tmp_path_factory) -> Path:
    return save_prior(tmp_path_factory.mktemp("prior"), R)


@pytest.fixture(scope="package")
def big_prior_dir(tmp_path_factory) -> Path:
    return save_prior(tmp_path_factory.mktemp("big_prior"), BIG)


def face_like(size: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth, textured uint8 RGB image (the watermark needs no real face when read as a crop)."""
    rng = np.random.default_rng(seed)
    shade = rng.uniform(0.55, 1.1, (max(2, size // 16),) * 2).astype(np.float32)  # light and shadow
    shade = np.asarray(Image.fromarray(shade, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    skin = np.array([205, 160, 135], np.float32) + rng.uniform(-20, 20, 3)  # one skin tone: faces' colour is smooth
    img = shade[..., None] * skin + rng.integers(-3, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def edit_one_pixel(png: bytes) -> bytes:
    """Change one pixel of a PNG and keep every other chunk (the C2PA one included) as it was."""
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        chunks.append((kind, body))
        pos += 12 + length
    raw = bytearray(zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT")))
    raw[1] ^= 0x01  # row 0, first byte after the filter byte: pixel (0, 0), red
    out, wrote = [png[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if wrote:
                continue
            body, wrote = zlib.compress(bytes(raw)), True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


# One synthetic face of side SIDE centred at CENTRE in a PHOTO x PHOTO photo: its FFHQ quad is 0.96 x SIDE
# = 288 px, so a 256 px result pasted there keeps the mark (over the 192 px minimum).
PHOTO, CENTRE, SIDE = 480, (240.0, 230.0), 300.0


def face_photo(seed: int = 0) -> np.ndarray:
    """``uint8 [PHOTO, PHOTO, 3]``: a noisy background with a face-like patch where the stand-in finds the face."""
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, (PHOTO, PHOTO, 3), dtype=np.uint8)
    x, y, half = int(CENTRE[0]), int(CENTRE[1]), int(SIDE // 2)
    photo[y - half : y + half, x - half : x + half] = face_like(2 * half, seed=seed + 1)
    return photo


class OneFace:
    """A stand-in FaceAnalyzer: one face at CENTRE (landmarks framing SIDE px; descriptor 0), whatever the image."""

    def analyze(self, image, describe=True):
        cx, cy = CENTRE
        lm = np.tile([cx, cy], (68, 1)).astype(np.float64)
        lm[36:42] = [cx - 0.12 * SIDE, cy - 0.05 * SIDE]
        lm[42:48] = [cx + 0.12 * SIDE, cy - 0.05 * SIDE]
        lm[48], lm[54] = [cx - 0.1 * SIDE, cy + 0.2 * SIDE], [cx + 0.1 * SIDE, cy + 0.2 * SIDE]
        box = FaceBox(cx - SIDE / 2, cy - SIDE / 2, cx + SIDE / 2, cy + SIDE / 2, 2.0)
        return [SimpleNamespace(box=box, landmarks=lm, descriptor=np.zeros(4) if describe else None)]
