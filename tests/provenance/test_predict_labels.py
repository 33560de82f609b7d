"""Provenance: manifests of predict's results, the altered-file check, the watermark, verify's one-liners,
the install key."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mystyle_pl.cli import dispatch
from mystyle_pl.data.align import AlignTransform, paste_back
from mystyle_pl.data.io import read_image, to_tensor, to_uint8, write_image
from mystyle_pl.provenance import manifest, verify
from mystyle_pl.provenance.watermark import MIN_CROP_PX, find_watermark, mark_crop, payload_bits, read_crop
from mystyle_pl.provenance.xmp import COMPOSITE, read_xmp, source_type_of

from ..helpers import REPO_ROOT
from .conftest import R, edit_one_pixel, face_like, jpeg


def predict_invert(prior_dir, tmp_path, seed: int, *extra: str, name: str = "face.png"):
    """``predict`` (invert) of one face-like photo ``in/<name>`` on the tiny prior -> (input path, output folder)."""
    src = tmp_path / "in" / name
    src.parent.mkdir()
    write_image(src, face_like(R, seed=seed))
    out = tmp_path / "out"
    assert dispatch([
        "predict", "--config", str(REPO_ROOT / "configs" / "predict" / "invert.yaml"), "--model.prior", str(prior_dir),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false", "--data.inputs", str(src), "--data.num_workers", "0",
        "--model.task.lpips_weight", "0", *extra,
    ]) == 0  # fmt: skip
    return src, out


def test_predict_output_carries_manifest_xmp_and_ingredient_hash(prior_dir, tmp_path):
    src, out = predict_invert(prior_dir, tmp_path, 1, "--model.task.steps", "3")
    crop = (out / "face" / "crop.png").read_bytes()
    report = manifest.read(crop, "png")
    assert report.state == "valid" and report.install_key and not report.trusted
    assert report.actions == ["c2pa.opened", "c2pa.edited"] and report.source_type == COMPOSITE
    assert report.ingredient_sha256 == manifest.sha256_bytes(src.read_bytes())
    assert report.generation["task"] == "invert" and "settings" in report.generation
    assert "face.png" not in json.dumps(report.generation)  # never the album's or the user's file names
    assert source_type_of(read_xmp(Image.open(io.BytesIO(crop)))) == COMPOSITE
    record = json.loads((out / "face" / "record.json").read_text())
    assert record["provenance"] == "on" and record["content_credentials"]["signer"] == "install"
    # A 32 px crop is below the mark's minimum: said in the record and in the manifest, not silently left out.
    assert record["watermark"] == f"skipped: crop {R} px < {MIN_CROP_PX} px minimum"
    assert report.generation["watermark"] == record["watermark"] and report.generation["watermark_run_id"] is None
    assert "skipped when written: crop 32 px" in verify(out / "face" / "crop.png", search_faces=False).verdict
    assert json.loads((out / "summary.json").read_text())["provenance"] == "on"
    # The user's input is written as it came: not labelled as made by the model.
    assert manifest.read((out / "face" / "input.png").read_bytes(), "png").state == "absent"

    # One pixel changed after writing: the manifest says the file was altered.
    edited = tmp_path / "edited.png"
    edited.write_bytes(edit_one_pixel(crop))
    assert not np.array_equal(read_image(edited), read_image(out / "face" / "crop.png"))
    assert verify(edited).manifest["state"] == "altered"
    assert "ALTERED" in verify(edited).verdict


def test_a_jpeg_photo_is_the_ingredient_of_its_result(prior_dir, tmp_path):
    """A JPEG input is declared as one in the manifest (C2PA refused a PNG ingredient with JPEG bytes)."""
    src, out = predict_invert(prior_dir, tmp_path, 3, "--model.task.steps", "1", name="face.jpg")
    report = manifest.read((out / "face" / "crop.png").read_bytes(), "png")
    assert report.state == "valid" and report.ingredient_sha256 == manifest.sha256_bytes(src.read_bytes())


def test_provenance_off_is_written_into_the_records_and_help_says_what_it_does(prior_dir, tmp_path, capsys):
    _, out = predict_invert(prior_dir, tmp_path, 2, "--model.task.steps", "1", "--provenance", "off")
    record = json.loads((out / "face" / "record.json").read_text())
    assert record["provenance"] == "off" and record["watermark"] == "off"
    assert json.loads((out / "summary.json").read_text())["provenance"] == "off"
    assert manifest.read((out / "face" / "crop.png").read_bytes(), "png").state == "absent"
    assert read_xmp(Image.open(out / "face" / "crop.png")) is None
    with pytest.raises(SystemExit):
        dispatch(["predict", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "--provenance {on,off}" in shown and "written unlabelled, for research runs only" in shown


def test_sample_is_created_with_trained_source_type(tmp_path):
    from mystyle_pl.provenance.keys import signing_key
    from mystyle_pl.provenance.label import labelled_bytes

    label = manifest.Label(kind="created", task="sample", settings={"n": 1})
    data = labelled_bytes(face_like(64), "png", label, signing_key(), "sample.png")
    report = manifest.read(data, "png")
    assert report.state == "valid" and report.actions == ["c2pa.created"]
    assert report.source_type.endswith("/trainedAlgorithmicMedia") and report.ingredient_sha256 is None


def test_watermark_survives_jpeg_and_resize_and_is_absent_from_unmarked():
    crop = face_like(512, seed=2)
    marked = mark_crop(crop, 0x5A17C3)
    x0, y0, x1, y1 = round(0.31 * 512), round(0.39 * 512), round(0.69 * 512), round(0.77 * 512)
    outside = np.ones(crop.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(marked[outside], crop[outside])  # only the mark box changes
    half = np.asarray(Image.fromarray(marked).resize((256, 256), Image.Resampling.BICUBIC))
    for attacked in (marked, jpeg(marked, 75), half):
        found = find_watermark(attacked, search_faces=False)
        assert found.found and found.run_id == "5a17c3"
    assert not find_watermark(crop, search_faces=False).found
    assert not find_watermark(face_like(512, seed=3), search_faces=False).found
    decoded, votes = read_crop(marked)
    assert decoded.corrected == 0 and np.array_equal(votes > 0.5, payload_bits(0x5A17C3).astype(bool))


def test_pasted_photo_is_unchanged_outside_the_face():
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 256, (300, 360, 3), dtype=np.uint8)
    quad = np.array([[80, 40], [80, 280], [320, 280], [320, 40]], dtype=float)  # TL, BL, BR, TR
    transform = AlignTransform(quad=quad, source_size=(360, 300), resolution=256)
    marked = mark_crop(face_like(256, seed=5), 0x000042)
    pasted, weight = paste_back(to_tensor(photo), to_tensor(marked), transform)
    out = to_uint8(pasted)[0]
    outside = weight[0, 0].numpy() == 0
    assert outside.mean() > 0.5 and np.array_equal(out[outside], photo[outside])
    assert not np.array_equal(out, photo)


def test_bad_files_are_one_line_each(tmp_path, capsys):
    from mystyle_pl.provenance.keys import signing_key
    from mystyle_pl.provenance.label import labelled_bytes

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = labelled_bytes(face_like(64), "png", manifest.Label("created", "sample"), signing_key(), "s.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[: len(good) // 3])
    forged = tmp_path / "forged.png"
    start = good.find(b"caBX") - 4  # the C2PA chunk: a manifest byte changed, the chunk's CRC made right again
    (length,) = struct.unpack(">I", good[start:start + 4])
    body = bytearray(good[start + 8:start + 8 + length])
    body[length // 2] ^= 0xFF
    chunk = struct.pack(">I", length) + b"caBX" + bytes(body) + struct.pack(">I", zlib.crc32(b"caBX" + bytes(body)))
    forged.write_bytes(good[:start] + chunk + good[start + 12 + length:])
    files = [text, truncated, tmp_path / "missing.png", tmp_path, forged]
    assert dispatch(["verify", "--no-faces", *map(str, files)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files) and all(line.startswith(str(f)) for line, f in zip(lines, files))
    assert "cannot check" in lines[0] and "cannot check" in lines[1] and "cannot check" in lines[2]
    assert "ALTERED" in lines[4] or "INVALID" in lines[4]


def _install_pair(_):
    from mystyle_pl.provenance.keys import install_key

    k = install_key()
    return k.cert_pem, k.key_pem


def test_processes_making_the_install_key_at_once_agree_on_one_pair():
    """The ranks of a DDP predict on a new install all ask for the key at once (a stranger's CI run
    once signed with one process's certificate and another's key): every process gets the same
    certificate and key, and the key is the certificate's."""
    import multiprocessing

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with multiprocessing.get_context("fork").Pool(4) as pool:
        pairs = pool.map(_install_pair, range(8))
    assert len(set(pairs)) == 1
    cert_pem, key_pem = pairs[0]
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*der) == key.public_key().public_bytes(*der)
