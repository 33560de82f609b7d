"""The Python API labels what it saves by default: ``GroupResult.save`` (``process_photo`` /
``run_photo``) and ``mystyle_pl.save_result``; ``provenance=False`` opts out."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import mystyle_pl
from mystyle_pl.data.io import read_image, to_tensor, write_image
from mystyle_pl.group import FaceOutput, process_photo
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.provenance import manifest
from mystyle_pl.provenance.watermark import find_watermark
from mystyle_pl.provenance.xmp import COMPOSITE, TRAINED, read_xmp, source_type_of

from .conftest import BIG, OneFace, face_like, face_photo


def painter(work) -> FaceOutput:
    """A stand-in task: a new face-like texture for every crop (at the crops' size)."""
    k, s = work.crops.shape[0], work.crops.shape[-1]
    return FaceOutput(images=to_tensor([face_like(s, seed=20 + i) for i in range(k)]), record={"task": "restore", "steps": 1})


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("provenance", [True, False])
def test_group_result_save_is_labelled_unless_turned_off(tmp_path, provenance):
    photo = face_photo(seed=6)
    source = write_image(tmp_path / "group.png", photo)
    result = process_photo(source, painter, BIG, identity=np.zeros(4), analyzer=OneFace(), provenance=provenance)
    path = result.save(tmp_path / "restored.png")
    saved = read_image(path)
    assert np.array_equal(saved[~result.changed], photo[~result.changed])  # outside the face: the photo's own
    found = find_watermark(saved, analyzer=OneFace())  # read back through the face, as verify does
    report = manifest.read(path.read_bytes(), "png")
    record = result.record()
    if provenance:
        assert record["provenance"] == "on" and record["watermark"] == f"marked (run {found.run_id})"
        assert found.found and found.where == "face 0"
        assert report.state == "valid" and report.actions == ["c2pa.opened", "c2pa.edited"]
        assert report.ingredient_sha256 == manifest.sha256_bytes(source.read_bytes())  # the user's file, by hash
        assert report.generation["task"] == "restore" and report.generation["watermark_run_id"] == found.run_id
        assert source_type_of(read_xmp(Image.open(path))) == COMPOSITE
    else:
        assert record["provenance"] == "off" and record["watermark"] == "off"
        assert not found.found and report.state == "absent" and read_xmp(Image.open(path)) is None


def test_run_photo_labels_by_default(prior_dir, tmp_path):
    prior = PersonalPrior.load(prior_dir)
    photo = face_photo(seed=8)
    kw = dict(identity=np.zeros(4), analyzer=OneFace(), steps=1, lpips_weight=0.0)
    labelled = mystyle_pl.run_photo(prior, photo, "invert", **kw)
    assert labelled.record()["provenance"] == "on"
    assert labelled.watermark == "skipped: crop 32 px < 192 px minimum"  # the tiny prior's results: too small to mark
    report = manifest.read(labelled.save(tmp_path / "on.png").read_bytes(), "png")
    assert report.state == "valid" and report.generation["watermark"] == labelled.watermark
    assert report.ingredient_sha256 == manifest.sha256_bytes(png_of(photo))  # in-memory input: its pixels as PNG
    assert report.generation["prior_sha256"] == manifest.sha256_bytes((prior_dir / "prior.json").read_bytes())
    plain = mystyle_pl.run_photo(prior, photo, "invert", provenance=False, **kw)
    assert plain.record()["provenance"] == "off"
    assert manifest.read(plain.save(tmp_path / "off.png").read_bytes(), "png").state == "absent"


def test_save_result_labels_a_crop(tmp_path):
    source = write_image(tmp_path / "small.png", face_like(64, seed=9))
    crop = to_tensor(face_like(BIG, seed=10))  # [1, 3, R, R] in [-1, 1], as prior.super_resolve(...).images[:1]
    path = mystyle_pl.save_result(tmp_path / "sr.png", crop, "superres", source=source)
    report = manifest.read(path.read_bytes(), "png")
    found = find_watermark(read_image(path), search_faces=False)
    assert found.found and report.state == "valid" and report.generation["watermark_run_id"] == found.run_id
    assert report.actions == ["c2pa.opened", "c2pa.edited"] and report.source_type == COMPOSITE
    assert report.ingredient_sha256 == manifest.sha256_bytes(source.read_bytes())
    jpg = mystyle_pl.save_result(tmp_path / "sample.jpg", face_like(BIG, seed=11), "sample")
    sample = manifest.read(jpg.read_bytes(), "jpg")
    assert sample.actions == ["c2pa.created"] and sample.source_type == TRAINED and sample.ingredient_sha256 is None
    plain = mystyle_pl.save_result(tmp_path / "plain.png", crop, "superres", provenance=False)
    assert manifest.read(plain.read_bytes(), "png").state == "absent"
    assert not find_watermark(read_image(plain), search_faces=False).found
    with pytest.raises(ValueError, match="a superres result is an edited photo; give its source"):
        mystyle_pl.save_result(tmp_path / "x.png", crop, "superres")
    with pytest.raises(ValueError, match="saves one image, got a batch of 2"):
        mystyle_pl.save_result(tmp_path / "x.png", torch.cat([crop, crop]), "sample")


def test_a_result_whose_settings_hold_an_infinite_psnr_is_signed(tmp_path):
    """A back-projected result can reproduce its input exactly (consistency PSNR = inf); c2pa-rs reads
    the manifest as strict JSON and refused it ("expected value"): the app's restore failed on it."""
    import math

    from mystyle_pl.provenance.keys import signing_key
    from mystyle_pl.provenance.label import write_labelled
    from mystyle_pl.provenance.manifest import Label, read

    image = np.full((64, 64, 3), 128, np.uint8)
    original = io.BytesIO()
    Image.fromarray(image).save(original, format="PNG")
    label = Label(kind="edited", task="restore", settings={"consistency_db": [math.inf], "psnr": math.nan})
    path = write_labelled(tmp_path / "r.png", image, label, signing_key(), ingredient=original.getvalue())
    report = read(path.read_bytes(), "png")
    assert report.state == "valid", report.problems
    assert report.generation["settings"] == {"consistency_db": ["inf"], "psnr": "nan"}
