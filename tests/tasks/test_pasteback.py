"""Aligning a real photo for a task and pasting the result back (mystyle_pl.tasks.pasteback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mystyle_pl.data.io import read_image, write_image
from mystyle_pl.tasks.pasteback import NoFaceError, load_task_photo, paste_into_photo


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_square_input_is_taken_as_a_crop_and_resized():
    img = (np.arange(48 * 48 * 3) % 251).astype(np.uint8).reshape(48, 48, 3)
    photo = load_task_photo(img, size=24, name="x")
    assert photo.image.shape == (3, 24, 24) and photo.transform is None and photo.photo is None
    assert photo.image.min() >= -1 and photo.image.max() <= 1
    with pytest.raises(ValueError, match="already an aligned crop"):
        paste_into_photo(photo, photo.image)


def test_never_refuses_a_non_square_photo(tmp_path):
    path = write_image(tmp_path / "wide.png", np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(ValueError, match="wide.png.*not a square"):
        load_task_photo(path, size=32, align="never")
    with pytest.raises(ValueError, match="align must be one of"):
        load_task_photo(path, size=32, align="sometimes")


class _NoFaces:
    def analyze(self, image, describe=True):
        return []


def test_no_face_error_names_the_file(tmp_path):
    path = write_image(tmp_path / "wall.png", np.full((40, 60, 3), 128, np.uint8))
    with pytest.raises(NoFaceError, match="wall.png: no face found"):
        load_task_photo(path, size=32, analyzer=_NoFaces())


@pytest.fixture(scope="module")
def unaligned_photo(shared_data, tmp_path_factory):
    """The aligned 512 px gt.png placed off-centre and scaled in a larger, non-square canvas."""
    from PIL import Image

    face = Image.open(shared_data / "albums" / "00082" / "gt.png").convert("RGB").resize((320, 320), Image.LANCZOS)
    canvas = Image.new("RGB", (560, 420), (90, 110, 130))
    canvas.paste(face, (180, 60))
    path = tmp_path_factory.mktemp("photos") / "party.jpg"
    canvas.save(path, quality=95)
    return path


def test_paste_back_round_trip_on_a_real_photo(unaligned_photo):
    pytest.importorskip("dlib")
    photo = load_task_photo(unaligned_photo, size=256)
    assert photo.aligned_here and photo.image.shape == (3, 256, 256) and photo.name == "party"
    original = read_image(unaligned_photo)
    # Pasting the untouched crop back must reproduce the photo (up to two resamplings).
    pasted = paste_into_photo(photo, photo.image)
    assert pasted.shape == original.shape
    assert _psnr(pasted, original) > 30
    # Pasting a different crop changes the face region, not the background far away.
    grey = torch.zeros(3, 256, 256)
    changed = paste_into_photo(photo, grey)
    assert _psnr(changed, original) < 25
    np.testing.assert_array_equal(changed[:40, :40], original[:40, :40])
    # Super-resolution: the photo is up-sampled and the face pasted at the higher resolution.
    up = paste_into_photo(photo, photo.image, upscale=2)
    assert up.shape == (original.shape[0] * 2, original.shape[1] * 2, 3)
    down = up.reshape(original.shape[0], 2, original.shape[1], 2, 3).mean(axis=(1, 3))
    assert _psnr(down, original) > 28


def test_paste_back_with_a_mask_changes_only_the_masked_region(unaligned_photo):
    pytest.importorskip("dlib")
    photo = load_task_photo(unaligned_photo, size=128)
    original = read_image(unaligned_photo)
    region = torch.zeros(1, 128, 128)
    region[:, 60:90, 40:90] = 1.0  # e.g. an inpainting hole around the mouth
    pasted = paste_into_photo(photo, torch.zeros(3, 128, 128), mask=region)
    changed = np.abs(pasted.astype(int) - original.astype(int)).max(axis=2) > 8
    corners = photo.transform.to_source(np.array([[40, 60], [90, 60], [40, 90], [90, 90]], float), 128)
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    assert changed.any()
    outside = changed.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()  # nothing changed outside the hole's footprint
