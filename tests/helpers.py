"""Helpers shared by the tests: tiny seeded generators, the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mystyle_pl.generators import StyleGAN2Generator

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MYSTYLE_SHARED_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("MYSTYLE_SHARED_DATA")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def make_tiny_stylegan2(resolution: int = 32, seed: int = 0, **overrides) -> StyleGAN2Generator:
    """A small, seeded StyleGAN2 with non-zero noise strengths and biases (so every path matters)."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=32, w_dim=32, img_resolution=resolution, channel_base=16 * resolution, channel_max=32)
    kwargs.update(overrides)
    return activate_every_path(StyleGAN2Generator(**kwargs))


def activate_every_path(generator):
    """Give noise strengths, biases and ``w_avg`` random values (they start at zero), in eval mode."""
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                param.normal_(0, 0.1)
        generator.mapping.w_avg.normal_()
    return generator.eval()


def three_people_photo(shared_data: Path):
    """Albums 00027, 00001, 00049's held-out faces side by side (uint8 ``[240, 720, 3]``), album
    00001's identity centre (the mean dlib descriptor of two of its reference photos) and the face
    analyzer; skips the test when dlib, its models or the albums are missing."""
    import numpy as np
    import pytest
    from PIL import Image

    pytest.importorskip("dlib", reason="face detection needs dlib")
    from mystyle_pl.data.faces import FaceAnalyzer, FaceModelsUnavailable, check_face_models
    from mystyle_pl.data.io import read_image

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    albums = shared_data / "albums"
    if not all((albums / a / "gt.png").is_file() for a in ("00001", "00027", "00049")):
        pytest.skip(f"albums 00001, 00027 and 00049 are not all in {albums}")
    analyzer = FaceAnalyzer(refine_iterations=1)
    key = str(albums.resolve())
    if key not in _THREE_PEOPLE:  # computed once per session (dlib on two photos); each caller gets its own copies
        refs = sorted((albums / "00001" / "refs").glob("*.png"))[:2]
        centre = np.mean([analyzer.analyze(read_image(p))[0].descriptor for p in refs], axis=0)
        photo = np.full((240, 720, 3), 128, np.uint8)
        for k, album in enumerate(("00027", "00001", "00049")):
            face = Image.open(albums / album / "gt.png").convert("RGB").resize((240, 240), Image.Resampling.LANCZOS)
            photo[:, 240 * k : 240 * (k + 1)] = np.asarray(face)
        _THREE_PEOPLE[key] = (photo, centre)
    photo, centre = _THREE_PEOPLE[key]
    return photo.copy(), centre.copy(), analyzer


_THREE_PEOPLE: dict = {}  # albums folder -> (photo, centre) of three_people_photo
