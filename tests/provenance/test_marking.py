"""Where the mark goes and when it cannot: the minimum crop (said, not silently skipped), and the
photo of an inpainting, into which only the hole is pasted back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mystyle_pl.data.align import AlignTransform
from mystyle_pl.data.io import read_image, to_tensor, write_image
from mystyle_pl.predict.items import Prediction, TaskItem
from mystyle_pl.predict.writer import TaskWriter
from mystyle_pl.provenance import manifest, verify
from mystyle_pl.provenance.watermark import MARK_BOX, MIN_CROP_PX, find_watermark
from mystyle_pl.provenance.writing import Provenance
from mystyle_pl.tasks.inpaint import hole_image, paste_region
from mystyle_pl.tasks.pasteback import TaskPhoto

from .conftest import face_like, face_photo


def test_crops_under_the_minimum_are_left_unmarked_and_say_why():
    provenance = Provenance()
    big = face_like(MIN_CROP_PX, seed=3)
    marked, note = provenance.mark(big)
    assert note == f"marked (run {provenance.run_id:06x})" and not np.array_equal(marked, big)
    found = find_watermark(marked, search_faces=False)
    assert found.found and found.run_id == f"{provenance.run_id:06x}"
    small = face_like(MIN_CROP_PX - 1, seed=3)
    same, note = provenance.mark(small)
    assert same is small and note == f"skipped: crop {MIN_CROP_PX - 1} px < {MIN_CROP_PX} px minimum"
    # Tensors in [-1, 1] ([3, R, R] as tasks' outputs hold them) come back in the same form.
    t, note = provenance.mark(to_tensor(big)[0])
    assert t.shape == (3, MIN_CROP_PX, MIN_CROP_PX) and note.startswith("marked")
    off, note = Provenance(enabled=False).mark(big)
    assert off is big and note == "off"
    noise = np.random.default_rng(0).integers(0, 256, (MIN_CROP_PX, MIN_CROP_PX, 3), dtype=np.uint8)  # clipped noise
    same, note = provenance.mark(noise)
    assert same is noise and note.startswith("skipped: the mark does not read back from this image")


S = 256
X0 = Y0 = 112  # the crop is the photo's [112:368, 112:368], not resampled (an axis-aligned quad of side S)


def inpainting(tmp_path, hole: tuple[float, float, float, float]) -> tuple[Prediction, np.ndarray]:
    """A predict result of inpainting ``hole`` (left, top, right, bottom as fractions of the crop) in a
    photo aligned here, and the photo."""
    photo = face_photo(seed=4)
    src = write_image(tmp_path / "in" / "face.png", photo)
    crop = photo[Y0 : Y0 + S, X0 : X0 + S]
    l, t, r, b = (round(f * S) for f in hole)
    known = torch.ones(1, S, S)
    known[:, t:b, l:r] = 0
    blended = crop.copy()
    blended[t:b, l:r] = face_like(S, seed=7)[t:b, l:r]  # the "generated" hole
    quad = np.array([[X0, Y0], [X0, Y0 + S], [X0 + S, Y0 + S], [X0 + S, Y0]], dtype=float)  # TL, BL, BR, TR
    transform = AlignTransform(quad=quad, source_size=(photo.shape[1], photo.shape[0]), resolution=S)
    item = TaskItem(index=0, name="face", source=str(src), image=to_tensor(crop)[0],
                    photo=TaskPhoto(name="face", path=src, image=to_tensor(crop)[0], photo=photo, transform=transform))  # fmt: skip
    pred = Prediction(images={"crop": to_tensor(blended)[0], "mask": hole_image(known)}, paste={"photo": "crop"},
                      paste_mask=paste_region(known), record={"task": "inpaint", "settings": {}}, item=item)  # fmt: skip
    return pred, photo


def write(pred: Prediction, out) -> dict:
    writer = TaskWriter(output_dir=str(out))
    writer.root, writer._cap = out, None  # what setup() sets from the trainer
    folder = writer.write(pred)
    assert folder is not None, writer._failed
    return json.loads((folder / "record.json").read_text())


@pytest.mark.parametrize("covers", [True, False])
def test_inpainted_photo_is_labelled_like_a_restored_one(tmp_path, covers):
    """The photo of an inpainting carries its manifest and XMP, and the mark when the pasted hole holds
    the mark box; when it holds too little of it, the record, the manifest and verify say so."""
    box = (0.2, 0.3, 0.8, 0.85) if covers else (0.3, 0.35, 0.45, 0.45)  # the whole mark box / one eye
    assert covers == (box[0] < MARK_BOX[0] and box[1] < MARK_BOX[1] and box[2] > MARK_BOX[2] and box[3] > MARK_BOX[3])
    pred, photo = inpainting(tmp_path, box)
    record = write(pred, tmp_path / "out")
    run = record["content_credentials"]["run_id"]
    assert record["provenance"] == "on" and record["watermark"] == f"marked (run {run})"
    out = read_image(tmp_path / "out" / "face" / "photo.png")
    # Only the (grown) hole changed; 1 px more, where paste-back's bilinear warp of the mask reaches.
    pasted = torch.nn.functional.max_pool2d(pred.paste_mask[None], 3, stride=1, padding=1)[0, 0].numpy() > 0
    outside = np.ones(photo.shape[:2], bool)
    outside[Y0 : Y0 + S, X0 : X0 + S] = ~pasted
    assert np.array_equal(out[outside], photo[outside])
    m = manifest.read((tmp_path / "out" / "face" / "photo.png").read_bytes(), "png")
    assert m.state == "valid" and m.actions == ["c2pa.opened", "c2pa.edited"]
    assert m.ingredient_sha256 == manifest.sha256_bytes((tmp_path / "in" / "face.png").read_bytes())
    found = find_watermark(out[Y0 : Y0 + S, X0 : X0 + S], search_faces=False)
    if covers:
        assert "watermark_photo" not in record and m.generation["watermark"] == record["watermark"]
        assert found.found and found.run_id == run
    else:
        assert record["watermark_photo"].startswith("skipped: only ") and not found.found
        assert m.generation["watermark"] == record["watermark_photo"] and m.generation["watermark_run_id"] is None
        verdict = verify(tmp_path / "out" / "face" / "photo.png", search_faces=False).verdict
        assert "no mystyle-pl watermark (skipped when written: only " in verdict
    # crop.png (the whole blended crop) carries the mark either way.
    crop = find_watermark(read_image(tmp_path / "out" / "face" / "crop.png"), search_faces=False)
    assert crop.found and crop.run_id == run
