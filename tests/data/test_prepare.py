"""``prepare``: robust image reading, curation rules, and the whole pipeline on real photos."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from mystyle_pl.data.curate import (
    REASONS,
    CurationSettings,
    FaceStats,
    PhotoStats,
    curate,
    dominant_identity,
    find_duplicates,
    laplacian_variance,
)
from mystyle_pl.data.io import ImageReadError, decode_image, read_image, to_tensor, to_uint8, write_image

# ----------------------------------------------------------------------------------------
# reading and writing images


def _photo(h=48, w=64) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], axis=2).astype(np.uint8)


def _png16_rgb(arr16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")])
def test_reads_common_formats(tmp_path, fmt, suffix):
    rgb = _photo()
    path = tmp_path / f"p.{suffix}"
    Image.fromarray(rgb).save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_modes_become_rgb(tmp_path):
    rgb = _photo()
    gray = Image.fromarray(rgb).convert("L")
    cases = {
        "gray.png": gray,
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "bilevel.png": gray.convert("1"),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        out = read_image(tmp_path / name)
        assert out.shape == (48, 64, 3), name
    assert np.array_equal(read_image(tmp_path / "gray.png")[..., 0], np.asarray(gray))
    cmyk = read_image(tmp_path / "cmyk.jpg").astype(int)
    assert np.abs(cmyk - rgb).mean() < 12  # colours survive the CMYK round trip
    # 16-bit grayscale and 16-bit RGB are scaled to 8 bits, not clipped.
    g16 = (np.asarray(gray).astype(np.uint16) * 257)
    Image.fromarray(g16).save(tmp_path / "g16.png")  # mode I;16
    assert np.abs(read_image(tmp_path / "g16.png")[..., 0].astype(int) - np.asarray(gray)).max() <= 1
    (tmp_path / "rgb16.png").write_bytes(_png16_rgb(rgb.astype(np.uint16) * 257))
    assert np.abs(read_image(tmp_path / "rgb16.png").astype(int) - rgb).max() <= 1


def test_alpha_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[7, 7].tolist() == [255, 255, 255]
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = read_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [10, 200, 30] and out[3, 3].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    rgb = _photo(40, 60)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "o.jpg")
    assert out.shape == (60, 40, 3)
    assert np.abs(out.astype(int) - np.rot90(rgb, k=-1)).mean() < 4


def test_heic_when_pillow_heif_is_installed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="optional: pip install pillow-heif")
    try:
        pillow_heif.from_pillow(Image.fromarray(_photo())).save(tmp_path / "p.heic", quality=95)
    except Exception as e:  # an encoder-less build can still read
        pytest.skip(f"this pillow-heif cannot write HEIC: {e}")
    out = read_image(tmp_path / "p.heic")  # the opener is registered on demand
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - _photo()).mean() < 8


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"hello, not an image"), "not a recognised image format"),
        (lambda p: p.write_bytes(_jpeg_bytes()[: len(_jpeg_bytes()) // 2]), "cannot decode the image data"),
        (lambda p: p.write_bytes(_jpeg_bytes()[:300]), "corrupt or unsupported image header"),
        (lambda p: None, "file not found"),
    ],
    ids=["zero-byte", "garbage", "truncated", "truncated-header", "missing"],
)
def test_unreadable_files_raise_a_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value) and info.value.reason


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_photo(128, 128)).save(buf, "JPEG")
    return buf.getvalue()


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buf, "PNG")  # a few kB claiming 9 MP
    with pytest.raises(ImageReadError, match="decompression bomb"):
        decode_image(buf.getvalue(), "bomb.png", max_pixels=1_000_000)
    # PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS) is reported the same way.
    from PIL import Image as PILImage

    old = PILImage.MAX_IMAGE_PIXELS
    try:
        PILImage.MAX_IMAGE_PIXELS = 1_000_000
        with pytest.raises(ImageReadError, match="decompression bomb"):
            decode_image(buf.getvalue(), "bomb.png", max_pixels=None)
    finally:
        PILImage.MAX_IMAGE_PIXELS = old


def test_write_image_is_atomic_and_round_trips(tmp_path):
    rgb = _photo()
    path = write_image(tmp_path / "sub" / "x.png", rgb)
    assert np.array_equal(read_image(path), rgb)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temp files left
    x = to_tensor(rgb)
    assert x.shape == (1, 3, 48, 64) and x.min() >= -1 and x.max() <= 1
    write_image(tmp_path / "t.png", x[0])
    assert np.array_equal(read_image(tmp_path / "t.png"), rgb)
    assert np.array_equal(to_uint8(to_tensor(np.stack([rgb, rgb])))[1], rgb)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        to_uint8(torch.zeros(3, 4, 4))


# ----------------------------------------------------------------------------------------
# curation rules (pure functions, no models)


def test_laplacian_variance_ranks_blur():
    rng = np.random.default_rng(0)
    sharp = np.asarray(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256), Image.Resampling.BICUBIC))
    scores = [laplacian_variance(np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(s)))) for s in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 20 * scores[-1]
    mask = np.zeros((256, 256), bool)
    mask[100:150, 100:150] = True
    assert laplacian_variance(np.full((256, 256), 7.0), mask) == 0.0


def _desc(seed: int, base: np.ndarray | None = None, spread: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, 128)
    v = v / np.linalg.norm(v) * (spread if base is not None else 1.0)
    return (base + v) if base is not None else v


def test_dominant_identity_prefers_the_larger_group_and_picks_the_face_in_group_photos():
    a, b = _desc(1), _desc(2)  # two people, ~1.4 apart
    photos = [[_desc(10 + i, a, 0.25)] for i in range(5)] + [[_desc(20 + i, b, 0.25)] for i in range(3)]
    photos.append([_desc(30, b, 0.25), _desc(31, a, 0.25)])  # a group photo: person b first
    photos.append([])  # no face
    centre, picks = dominant_identity([np.stack(p) if p else np.zeros((0, 128)) for p in photos], threshold=0.58)
    assert np.linalg.norm(centre - a) < 0.2
    assert all(picks[i][1] < 0.58 for i in range(5)) and all(picks[i][1] > 1.0 for i in range(5, 8))
    assert picks[8][0] == 1 and picks[8][1] < 0.58  # the face of person a
    assert picks[9] == (None, None)
    assert dominant_identity([np.zeros((0, 128))] * 2) == (None, [(None, None), (None, None)])


def test_find_duplicates_keeps_the_best_copy():
    a = _desc(1)
    descs = np.stack([a, _desc(2, a, 0.05), _desc(3), _desc(4, a, 0.5)])
    dups = find_duplicates(descs, quality=[(100,), (300,), (50,), (10,)], threshold=0.14)
    assert list(dups) == [0] and dups[0][0] == 1  # the larger copy (index 1) is kept
    assert find_duplicates(descs, quality=[(1,)] * 4, threshold=0.14) == {1: (0, pytest.approx(0.05, abs=1e-3))}


def test_curate_gives_the_first_failing_rule():
    a, b = _desc(1), _desc(2)
    ok = lambda seed, size=400, sharp=300.0, base=a: FaceStats(size, size * 2, sharp, _desc(seed, base, 0.25))
    copy_of_a1 = FaceStats(300, 600, 300.0, _desc(10, a, 0.25) + 0.001)  # a1's face, smaller
    photos = [
        PhotoStats("a1.jpg", [ok(10)]),
        PhotoStats("a2.jpg", [ok(11)]),
        PhotoStats("a3.jpg", [ok(12)]),
        PhotoStats("bad.jpg", error="empty file (0 bytes)"),
        PhotoStats("empty_room.jpg", []),
        PhotoStats("tiny.jpg", [ok(13, size=80)]),
        PhotoStats("soft.jpg", [ok(14, sharp=3.0)]),
        PhotoStats("tiny_and_soft.jpg", [ok(15, size=80, sharp=3.0)]),  # too small wins over blurry
        PhotoStats("stranger.jpg", [ok(16, base=b)]),
        PhotoStats("copy.jpg", [copy_of_a1]),
        PhotoStats("group.jpg", [ok(17, base=b, size=500), ok(18, size=250)]),
    ]
    decisions, _ = curate(photos, CurationSettings())
    got = {d.name: d.reason for d in decisions}
    assert got == {
        "a1.jpg": None, "a2.jpg": None, "a3.jpg": None, "bad.jpg": "unreadable", "empty_room.jpg": "no_face",
        "tiny.jpg": "face_too_small", "soft.jpg": "blurry", "tiny_and_soft.jpg": "face_too_small",
        "stranger.jpg": "other_person", "copy.jpg": "duplicate", "group.jpg": None,
    }  # fmt: skip
    by_name = {d.name: d for d in decisions}
    assert by_name["copy.jpg"].duplicate_of == "a1.jpg"  # a1's face is larger (400 > 300)
    assert by_name["group.jpg"].face_index == 1  # the dominant person's face, not the larger stranger
    assert "lower --min-face" in by_name["tiny.jpg"].detail
    assert set(got.values()) - {None} == set(REASONS)
    # Lowering --min-face accepts the small faces.
    decisions, _ = curate(photos, CurationSettings(min_face=64))
    assert {d.name: d.reason for d in decisions}["tiny.jpg"] is None


# ----------------------------------------------------------------------------------------
# the pipeline on real photos


def _dlib_or_skip():
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    from mystyle_pl.data.faces import FaceModelsUnavailable, check_face_models

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))


def _snapshot(folder: Path) -> dict[str, tuple]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def mixed_folder(shared_data, tmp_path_factory) -> Path:
    """Two people's photos plus a duplicate, a re-encoded copy, a blurred copy, a small copy, a group
    photo, a photo without a face, a corrupt file, a zero-byte file and a text file."""
    _dlib_or_skip()
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    raw = tmp_path_factory.mktemp("raw")
    refs = sorted((shared_data / "albums" / "00001" / "refs").glob("*.png"))
    main, in_group = refs[:4], refs[4:5]
    other = sorted((shared_data / "albums" / "00082" / "refs").glob("*.png"))[:2]
    if len(in_group) < 1 or len(other) < 2:
        pytest.skip("shared albums 00001/00082 are incomplete")
    for p in main:
        (raw / p.name).write_bytes(p.read_bytes())
    (raw / "friends").mkdir()
    for p in other:
        (raw / "friends" / p.name).write_bytes(p.read_bytes())
    (raw / "copy_of_1.png").write_bytes(main[0].read_bytes())
    first = Image.open(main[1]).convert("RGB")
    first.resize((480, 480), Image.Resampling.LANCZOS).save(raw / "reencoded.jpg", quality=80)
    first.filter(ImageFilter.GaussianBlur(4)).save(raw / "blurred.png")
    Image.open(main[2]).convert("RGB").resize((160, 160), Image.Resampling.LANCZOS).save(raw / "small.png")
    group = Image.new("RGB", (1024, 512))
    group.paste(Image.open(other[1]).convert("RGB"), (0, 0))
    group.paste(Image.open(in_group[0]).convert("RGB"), (512, 0))
    group.save(raw / "group.jpg", quality=95)
    Image.fromarray(skimage_data.coffee()).save(raw / "coffee.jpg")
    (raw / "corrupt.jpg").write_bytes((raw / "coffee.jpg").read_bytes()[:2000])
    (raw / "zero.png").write_bytes(b"")
    (raw / "notes.txt").write_text("not a photo")
    (raw / ".hidden.png").write_bytes(main[0].read_bytes())  # hidden files are ignored
    return raw


EXPECTED = {
    "00001_1.png": None,
    "00001_10.png": None,
    "00001_11.png": None,
    "00001_12.png": None,
    "friends/00082_1.png": "other_person",
    "friends/00082_10.png": "other_person",
    "copy_of_1.png": "duplicate",
    "reencoded.jpg": "duplicate",
    "blurred.png": "blurry",
    "small.png": "face_too_small",
    "group.jpg": None,
    "coffee.jpg": "no_face",
    "corrupt.jpg": "unreadable",
    "zero.png": "unreadable",
    "notes.txt": "unreadable",
}


@pytest.fixture(scope="module")
def prepared(mixed_folder, tmp_path_factory):
    """``mystyle-pl prepare`` run once on the mixed folder (two worker processes)."""
    import contextlib

    from mystyle_pl.cli import main

    before = _snapshot(mixed_folder)
    album = tmp_path_factory.mktemp("album") / "album"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["prepare", "--input", str(mixed_folder), "--output", str(album), "--resolution", "64",
                     "--workers", "2", "--no-progress"])  # fmt: skip
    return {"code": code, "out": stdout.getvalue(), "album": album, "before": before,
            "manifest": json.loads((album / "manifest.json").read_text())}  # fmt: skip


def test_prepare_curates_a_mixed_folder(mixed_folder, prepared):
    from mystyle_pl.data.align import AlignTransform
    from mystyle_pl.data.prepare import album_transforms

    album, manifest = prepared["album"], prepared["manifest"]
    assert prepared["code"] == 0
    assert "15 files, 5 kept, 10 rejected" in prepared["out"], prepared["out"]
    assert _snapshot(mixed_folder) == prepared["before"]  # the raw folder is untouched

    reasons = {e["file"]: e["reason"] for e in manifest["files"]}
    assert reasons == EXPECTED, {k: (reasons.get(k), v) for k, v in EXPECTED.items() if reasons.get(k) != v}
    entries = {e["file"]: e for e in manifest["files"]}
    assert entries["copy_of_1.png"]["duplicate_of"] == "00001_1.png"
    assert entries["reencoded.jpg"]["duplicate_of"] == "00001_10.png"
    assert "empty file" in entries["zero.png"]["detail"] and "truncated" in entries["corrupt.jpg"]["detail"]
    # The group photo uses the dominant person's face (the right half), not the other person's.
    group = entries["group.jpg"]
    assert len(group["faces"]) == 2 and group["distance"] < 0.58
    assert np.mean(np.asarray(group["transform"]["quad"])[:, 0]) > 512
    assert min(f["distance"] for f in group["faces"]) == group["distance"]
    # Outputs: sorted stable names, one per kept photo, each with its transform and landmarks.
    names = ["00001_1.png", "00001_10.png", "00001_11.png", "00001_12.png", "group.png"]
    assert sorted(p.name for p in (album / "images").iterdir()) == names
    for f in (f for f, r in EXPECTED.items() if r is None):
        e = entries[f]
        assert (album / e["output"]).is_file() and len(e["landmarks"]) == 68
        tr = AlignTransform.from_dict(e["transform"])
        assert tr.resolution == 64 and tr.source_file == f and tr.source_size == tuple(e["image_size"])
        assert read_image(album / e["output"]).shape == (64, 64, 3)
    assert sorted(album_transforms(album)) == names
    assert manifest["settings"]["curation"]["min_face"] == 200 and manifest["version"] == 1
    assert manifest["summary"]["rejected"] == {"unreadable": 3, "no_face": 1, "face_too_small": 1, "blurry": 1,
                                               "other_person": 2, "duplicate": 2}  # fmt: skip


def test_rerun_processes_only_new_or_changed_files(mixed_folder, prepared, shared_data):
    """(Runs after the test above: it changes the shared raw folder and album.)"""
    import shutil

    from mystyle_pl.data.prepare import prepare_album

    raw, album = mixed_folder, prepared["album"]
    again = prepare_album(raw, album, resolution=64, workers=0, progress=False)
    assert (again.analysed, again.reused, again.aligned) == (0, 15, 0)
    assert again.manifest["files"] == prepared["manifest"]["files"]

    (raw / "notes.txt").unlink()  # a rejected file goes away
    (raw / "00001_11.png").unlink()  # a kept file goes away: its output is removed
    shutil.copy(raw / "small.png", raw / "zero.png")  # a changed file
    shutil.copy(sorted((shared_data / "albums" / "00001" / "refs").glob("*.png"))[5], raw / "new.png")  # a new file
    second = prepare_album(raw, album, resolution=64, workers=0, progress=False)
    assert (second.analysed, second.reused, second.aligned) == (2, 12, 1)
    assert sorted(p.name for p in (album / "images").iterdir()) == ["00001_1.png", "00001_10.png", "00001_12.png", "group.png", "new.png"]
    files = {e["file"]: e for e in second.manifest["files"]}
    assert "notes.txt" not in files and files["zero.png"]["reason"] == "face_too_small"
    # A new resolution rewrites every image but analyses nothing.
    third = prepare_album(raw, album, resolution=32, workers=0, progress=False)
    assert (third.analysed, third.aligned) == (0, 5)
    assert read_image(album / "images" / "new.png").shape == (32, 32, 3)


def test_prepare_refuses_to_write_into_the_input(tmp_path, capsys):
    from mystyle_pl.cli import main

    raw = tmp_path / "raw"
    raw.mkdir()
    assert main(["prepare", "--input", str(raw), "--output", str(raw / "album"), "--no-progress"]) == 2
    assert "must not be inside the input folder" in capsys.readouterr().err
    assert main(["prepare", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "a"), "--no-progress"]) == 2
    assert list(raw.iterdir()) == []


def test_lowres_album_needs_a_lower_min_face(shared_data, tmp_path):
    """The real 112 px photos: rejected as too small by default, kept with --min-face lowered."""
    _dlib_or_skip()
    from mystyle_pl.data.prepare import prepare_album

    photos = sorted((shared_data / "lowres_album" / "barack_obama").glob("*.png"), key=lambda p: int(p.stem))[:6]
    if not photos:
        pytest.skip("lowres_album/barack_obama is missing")
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in photos:
        (raw / p.name).write_bytes(p.read_bytes())
    album = tmp_path / "album"
    default = prepare_album(raw, album, resolution=64, workers=0, progress=False)
    reasons = [e["reason"] for e in default.manifest["files"]]
    assert default.kept == 0 and reasons.count("face_too_small") >= 4, reasons
    lowered = prepare_album(raw, album, resolution=64, workers=0, progress=False, curation=CurationSettings(min_face=48))
    assert lowered.analysed == 0  # the analysis is reused; only the rules changed
    assert lowered.kept >= 4, [(e["file"], e["reason"], e["detail"]) for e in lowered.manifest["files"]]
