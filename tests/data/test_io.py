"""Every image a user hands us goes through one reader (mystyle_pl.data.io): photos and masks, by
path, as PIL images and as numpy arrays; masks with transparency or colour; inputs that are read
but probably not as meant (a mask that leaves little of the face known, a square photo that is
not an aligned crop, a folder with no dominant person) warn."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.faces import FFHQ_DLIB_BOX, FaceAnalyzer, FaceBox, check_aligned_crop
from mystyle_pl.data.io import ImageReadError, InputWarning, read_image, read_image_size, read_mask, write_image
from mystyle_pl.tasks.inpaint import as_mask, check_mask, face_known_fraction, mask_from_png

S = 64  # side of the synthetic masks / crops


def _photo(h: int = S, w: int = S, seed: int = 0) -> np.ndarray:
    """A textured, colourful uint8 RGB image (many distinct colours, like a photo)."""
    yy, xx = np.mgrid[:h, :w]
    noise = np.random.default_rng(seed).integers(0, 40, (h, w, 3))
    base = np.stack([xx * 200 // max(w - 1, 1), yy * 200 // max(h - 1, 1), (xx + 2 * yy) * 3 % 200], axis=2)
    return (base + noise).clip(0, 255).astype(np.uint8)


def _box(h: int = S, w: int = S) -> np.ndarray:
    """The hole used throughout: a box over the lower middle of the face (bool, True = hole)."""
    hole = np.zeros((h, w), bool)
    hole[h // 2 : h * 3 // 4, w // 4 : w * 3 // 4] = True
    return hole


def _hole(known: torch.Tensor) -> np.ndarray:
    assert known.shape[:2] == (1, 1) and set(torch.unique(known).tolist()) <= {0.0, 1.0}
    return known[0, 0].numpy() == 0


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


# ----------------------------------------------------------------------------------------
# photos: one reader for paths, PIL images and arrays


def test_pil_images_get_the_same_conversions_as_files(tmp_path):
    rgb = _photo(40, 60)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "o.jpg", exif=exif, quality=95)
    from_file = read_image(path)
    with Image.open(path) as opened:  # what a user passes after Image.open: EXIF not applied yet
        from_pil = read_image(opened)
    assert from_file.shape == from_pil.shape == (60, 40, 3)
    assert np.array_equal(from_file, from_pil)
    assert read_image_size(path) == (40, 60)  # the size as read, not as stored
    # RGBA as a PIL image: alpha flattened onto white (PIL's convert("RGB") would give black)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = [255, 0, 0, 255]
    out = read_image(Image.fromarray(rgba, "RGBA"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[7, 7].tolist() == [255, 255, 255]
    # CMYK and palette PIL images
    assert np.abs(read_image(Image.fromarray(rgb).convert("CMYK")).astype(int) - rgb).mean() < 12
    assert read_image(Image.fromarray(rgb).convert("P")).shape == (40, 60, 3)


def test_arrays_of_every_dtype_and_layout():
    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    out = read_image(grey16)
    assert out.shape == (8, 8, 3) and out[..., 0].max() == round(63000 / 257)  # scaled, not clipped
    floats = np.linspace(0, 1, 48).reshape(4, 4, 3)
    assert np.array_equal(read_image(floats), np.rint(floats * 255).astype(np.uint8))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black -> white
    assert (read_image(rgba) == 255).all()
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 1] = 255  # opaque black
    assert (read_image(la) == 0).all()
    assert (read_image(np.ones((3, 3), bool)) == 255).all()
    with pytest.raises(ImageReadError, match=r"photo: .*channel-first"):
        read_image(np.zeros((3, 16, 16), np.uint8), name="photo")
    with pytest.raises(ImageReadError, match=r"float images must be in \[0, 1\]"):
        read_image(np.full((4, 4, 3), 200.0))
    with pytest.raises(ImageReadError, match="uint8"):
        read_image(np.full((4, 4, 3), -3, np.int32))
    with pytest.raises(TypeError, match="expected a file path, a PIL image or a numpy array"):
        read_image(3.5)


# ----------------------------------------------------------------------------------------
# masks: polarity, transparency, colour, modes


def test_grey_masks_white_is_hole_whatever_the_source(tmp_path):
    hole = _box()
    grey = hole.astype(np.uint8) * 255
    path = _save(Image.fromarray(grey), tmp_path / "m.png")
    for source in (path, str(path), Image.fromarray(grey), grey, np.dstack([grey] * 3)):
        assert np.array_equal(_hole(read_mask(source)), hole), type(source)
    # an alpha channel opaque everywhere says nothing: the grey levels decide
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    assert np.array_equal(_hole(read_mask(Image.fromarray(rgba, "RGBA"))), hole)


def test_rgba_drawing_on_a_transparent_layer_is_the_hole(tmp_path):
    """masks/m4.png of the case: an opaque white box on a transparent layer (e.g. a Gradio sketch)."""
    hole = _box()
    rgba = np.zeros((S, S, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, as m4 has it
    rgba[..., 3] = hole * 255
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "m4.png")
    assert np.array_equal(_hole(read_mask(path)), hole)  # alpha ignored would be "every pixel is a hole"
    # red strokes with soft (partly transparent) edges on a transparent layer, black-free
    soft = np.zeros((S, S, 4), np.uint8)
    soft[..., 0] = 230
    soft[..., 3] = hole * 255
    edge = np.zeros((S, S), bool)
    edge[S // 2 - 1, S // 4 : S * 3 // 4] = True  # a faint rim above the stroke
    soft[edge, 3] = 60
    assert np.array_equal(_hole(read_mask(Image.fromarray(soft, "RGBA"))), hole)
    # the same drawing as grey + alpha (LA) and as a palette image with a transparent index
    la = np.dstack([np.full((S, S), 255, np.uint8), (hole * 255).astype(np.uint8)])
    assert np.array_equal(_hole(read_mask(Image.fromarray(la, "LA"))), hole)
    pal = Image.fromarray(hole.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    path = _save(pal, tmp_path / "p.png", transparency=0)
    with Image.open(path) as reopened:
        assert reopened.mode == "P" and "transparency" in reopened.info
    assert np.array_equal(_hole(read_mask(path)), hole)


def test_rgba_erased_photo_transparent_is_the_hole(tmp_path):
    """masks/m5.png of the case: the photo with a transparent hole (Photoshop eraser, DALL-E edits)."""
    hole = _box()
    photo = _photo()
    rgba = np.dstack([photo, np.where(hole, 0, 255).astype(np.uint8)])
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "m5.png")
    got = _hole(read_mask(path))
    assert np.array_equal(got, hole)  # not the bright pixels of the photo
    assert np.array_equal(_hole(read_mask(rgba)), hole)  # the same rule for an RGBA array


def test_ambiguous_or_empty_transparency_is_refused_with_how_to_export(tmp_path):
    hole = _box()
    # black and white opaque pixels plus a transparent region: neither a drawing nor a photo
    rgba = np.zeros((S, S, 4), np.uint8)
    rgba[: S // 2, :, 3] = 255  # top half opaque: left black, right white
    rgba[: S // 2, S // 2 :, :3] = 255
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "two_tone.png")
    with pytest.raises(ImageReadError, match=r"two_tone.png: .*ambiguous.*without transparency, white = hole"):
        read_mask(path)
    clear = np.zeros((S, S, 4), np.uint8)
    with pytest.raises(ImageReadError, match="fully transparent"):
        read_mask(Image.fromarray(clear, "RGBA"), name="clear")
    assert hole.any()


def test_colour_masks_one_colour_on_black_or_refused(tmp_path):
    hole = _box()
    red = np.zeros((S, S, 3), np.uint8)
    red[hole] = [220, 20, 30]
    red[S // 2 - 1, S // 4 : S * 3 // 4] = [60, 5, 8]  # anti-aliased rim, darker than half: known
    assert np.array_equal(_hole(read_mask(red)), hole)  # PIL's "L" would call the red (lum 81) known
    on_white = np.full((S, S, 3), 255, np.uint8)
    on_white[hole] = [220, 20, 30]
    with pytest.raises(ImageReadError, match=r"strokes.png: a colour image, not a mask.*white = hole"):
        read_mask(_save(Image.fromarray(on_white), tmp_path / "strokes.png"))
    with pytest.raises(ImageReadError, match="a colour image, not a mask"):
        read_mask(_photo())  # the photo itself given as the mask


def test_mask_modes_16_bit_cmyk_exif_and_arrays(tmp_path):
    hole = _box()
    # 16-bit: 65535 = hole; a near-black 16-bit value (200 of 65535) is known, not "200 of 255"
    m16 = np.where(hole, 65535, 200).astype(np.uint16)
    path = _save(Image.fromarray(m16), tmp_path / "m16.png")
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")
    assert np.array_equal(_hole(read_mask(path)), hole)
    assert np.array_equal(_hole(read_mask(m16)), hole)
    # CMYK (print workflows): white (no ink) = hole
    cmyk = Image.fromarray(hole.astype(np.uint8) * 255).convert("RGB").convert("CMYK")
    assert np.array_equal(_hole(read_mask(_save(cmyk, tmp_path / "m.jpg", quality=100))), hole)
    # EXIF orientation applies to masks as to photos (a mask drawn on the displayed photo)
    tall = np.zeros((40, 30), np.uint8)
    tall[5:15, 2:10] = 255
    img = Image.fromarray(tall)
    exif = img.getexif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "turned.jpg", exif=exif, quality=100)
    got = _hole(read_mask(path))
    assert got.shape == (30, 40) and np.array_equal(got, np.rot90(tall >= 128, k=-1))
    # bool and float arrays are ambiguous as masks (image: white = hole; tensor: 1 = known)
    for arr in (hole, hole.astype(np.float32)):
        with pytest.raises(ImageReadError, match=r"ambiguous as a mask.*1 = known pixel, 0 = hole"):
            read_mask(arr)


def test_mask_from_png_and_as_mask_take_every_source(tmp_path):
    hole = _box()
    grey = hole.astype(np.uint8) * 255
    rgba = np.zeros((S, S, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, grey
    known = torch.from_numpy(~hole).float()[None, None]
    for source in (Image.fromarray(rgba, "RGBA"), grey, _save(Image.fromarray(grey), tmp_path / "m.png")):
        assert torch.equal(mask_from_png(source, S), known)
        assert torch.equal(as_mask(source, S), known)
    assert torch.equal(as_mask(known, S), known)  # tensors: 1 = known, as they are
    boxes = as_mask([(S // 4, S // 2, S * 3 // 4, S * 3 // 4)], S)
    assert torch.equal(boxes, known)
    with pytest.raises(ValueError, match=r"mask .*m.png is 64x64 \(WxH\), the image is 32x32: mask size mismatch"):
        mask_from_png(tmp_path / "m.png", 32)
    with pytest.raises(ValueError, match="expected an image file"):
        as_mask(3.0, S)


def test_a_mask_that_leaves_little_of_the_face_known_warns():
    images = torch.zeros(2, 3, S, S)
    mouth = np.zeros((S, S), bool)
    mouth[S * 5 // 8 : S * 6 // 8, S * 3 // 8 : S * 5 // 8] = True  # ~10% of the face
    good = torch.from_numpy(~mouth).float()[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        check_mask(good, images)  # most of the face is known: no warning
    inverted = 1 - good  # the classic mistake: the part to keep drawn white
    assert float(face_known_fraction(inverted)) < 0.25 < float(face_known_fraction(good))
    with pytest.warns(InputWarning, match=r"mask \(b.png\) leaves only \d+% of the face known.*polarity"):
        check_mask(torch.cat([good, inverted]), images, labels=["a.png", "b.png"])


def test_predict_reads_rgba_masks_by_the_rules(tmp_path):
    """The case: ``predict inpaint --data.mask masks/`` with m4 (drawing) and m5 (erased photo)."""
    from mystyle_pl.predict.data import PhotoDataset, TaskRequirements

    hole = _box()
    photo = _photo()
    inputs, masks = tmp_path / "inputs", tmp_path / "masks"
    inputs.mkdir(), masks.mkdir()
    drawing = np.zeros((S, S, 4), np.uint8)
    drawing[..., :3], drawing[..., 3] = 255, hole * 255
    erased = np.dstack([photo, np.where(hole, 0, 255).astype(np.uint8)])
    ambiguous = np.zeros((S, S, 4), np.uint8)
    ambiguous[: S // 2, :, 3] = 255
    ambiguous[: S // 2, S // 2 :, :3] = 255
    for name, m in [("m4", drawing), ("m5", erased), ("m6", ambiguous)]:
        write_image(inputs / f"{name}.png", photo)
        Image.fromarray(m, "RGBA").save(masks / f"{name}.png")
    req = TaskRequirements(task="inpaint", resolution=S, needs_mask=True)
    paths = sorted(inputs.iterdir())
    data = PhotoDataset(paths, [p.stem for p in paths], req, align="never", mask=str(masks))
    m4, m5, m6 = (data[i] for i in range(3))
    assert m4.error is None and m5.error is None
    assert np.array_equal(m4.mask[0].numpy() == 0, hole) and np.array_equal(m5.mask[0].numpy() == 0, hole)
    assert m6.error is not None and "m6.png" in m6.error and "ambiguous" in m6.error


def test_prior_api_reads_pil_and_array_inputs():
    from mystyle_pl.data.anchors_io import Anchors
    from mystyle_pl.prior import PersonalPrior

    from ..helpers import make_tiny_stylegan2

    generator = make_tiny_stylegan2(resolution=16)
    with torch.no_grad():
        w = generator.mapping(torch.randn(2, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    prior = PersonalPrior(generator, Anchors(w=w, names=["a.png", "b.png"]))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[:8, :, 3] = 255, 255  # top half opaque red, bottom transparent
    x = prior.as_images(Image.fromarray(rgba, "RGBA"))
    assert x.shape == (1, 3, 16, 16)
    assert x[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0] and x[0, :, 15, 15].tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(prior.as_images(rgba), x)
    hole = np.zeros((16, 16), bool)
    hole[8:12, 4:12] = True
    drawing = np.zeros((16, 16, 4), np.uint8)
    drawing[..., :3], drawing[..., 3] = 255, hole * 255
    mask = as_mask(Image.fromarray(drawing, "RGBA"), x.shape[-1])  # what prior.run(Inpaint(), img, mask) reads
    assert torch.equal(mask[0, 0] == 0, torch.from_numpy(hole))


# ----------------------------------------------------------------------------------------
# a square photo that is not an aligned crop


class _BoxDetector:
    """A detector returning one box at fixed fractions of the image's side (or none)."""

    def __init__(self, box: tuple[float, float, float, float] | None):
        self.box, self.calls = box, 0

    def detect(self, image):
        self.calls += 1
        if self.box is None:
            return []
        s = image.shape[0]
        return [FaceBox(*(v * s for v in self.box), score=1.0)]


def test_check_aligned_crop_places_the_face():
    image = _photo(256, 256)
    aligned = check_aligned_crop(image, _BoxDetector(FFHQ_DLIB_BOX))
    assert aligned.aligned is True
    off = check_aligned_crop(image, _BoxDetector((0.55, 0.1, 0.85, 0.4)))  # a small face, top right
    assert off.aligned is False and "aligned crop has it" in off.reason
    assert check_aligned_crop(image, _BoxDetector(None)).aligned is None  # no face: no evidence
    small = _BoxDetector((0.55, 0.1, 0.85, 0.4))
    assert check_aligned_crop(_photo(32, 32), small).aligned is None and small.calls == 0


class _TemplateLandmarker:
    """68 points inside the detector's box, eyes and mouth where a frontal face has them."""

    num_points = 68

    def landmarks(self, image, box):
        w, h = box.right - box.left, box.bottom - box.top
        lm = np.tile([box.left + w / 2, box.top + h / 2], (68, 1)).astype(np.float64)
        lm[36:42] = [box.left + 0.3 * w, box.top + 0.4 * h]
        lm[42:48] = [box.left + 0.7 * w, box.top + 0.4 * h]
        lm[48], lm[54] = [box.left + 0.35 * w, box.top + 0.8 * h], [box.left + 0.65 * w, box.top + 0.8 * h]
        return lm


def test_unaligned_square_input_is_aligned_with_a_warning(caplog):
    from mystyle_pl.tasks.pasteback import load_task_photo

    image = _photo(256, 256)
    off = FaceAnalyzer(detector=_BoxDetector((0.5, 0.1, 0.8, 0.4)), landmarker=_TemplateLandmarker(),
                       refine_iterations=0, retry_pad=0, retry_angles=())  # fmt: skip
    with caplog.at_level("WARNING"):
        photo = load_task_photo(image, size=64, analyzer=off, name="square")
    assert photo.aligned_here and photo.image.shape == (3, 64, 64)
    assert any("not one" in w and "align='never'" in w for w in photo.warnings), photo.warnings
    assert "is not one" in caplog.text
    # A square whose face is where the aligned crop has it is taken as it is, silently.
    at_place = FaceAnalyzer(detector=_BoxDetector(FFHQ_DLIB_BOX), landmarker=_TemplateLandmarker())
    caplog.clear()
    with caplog.at_level("WARNING"):
        crop = load_task_photo(image, size=64, analyzer=at_place, name="crop")
    assert not crop.aligned_here and not crop.warnings and caplog.text == ""
    # align="never" takes the square as it is without looking.
    never = _BoxDetector((0.5, 0.1, 0.8, 0.4))
    kept = load_task_photo(image, size=64, align="never",
                           analyzer=FaceAnalyzer(detector=never, landmarker=_TemplateLandmarker()))  # fmt: skip
    assert not kept.aligned_here and never.calls == 0


def test_real_unaligned_square_photo_is_detected(shared_data):
    """skimage's astronaut (a 512 px square photo, not an aligned crop) and a real aligned crop."""
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    from mystyle_pl.data.faces import FaceModelsUnavailable, check_face_models
    from mystyle_pl.tasks.pasteback import load_task_photo

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    photo = load_task_photo(skimage_data.astronaut(), size=64, name="astronaut")
    assert photo.aligned_here and any("not one" in w for w in photo.warnings)
    ref = sorted((shared_data / "albums" / "00001" / "refs").glob("*.png"))[0]
    crop = load_task_photo(ref, size=64)
    assert not crop.aligned_here and not crop.warnings


# ----------------------------------------------------------------------------------------
# prepare: a folder with no dominant person


class _MarkedDetector:
    """One face in the middle of every photo."""

    def detect(self, image):
        s = min(image.shape[:2])
        return [FaceBox(0.3 * s, 0.3 * s, 0.7 * s, 0.7 * s, score=1.0)]


class _MarkedDescriptor:
    """Identity = the person number written in the photo's top-left block; photos of one person
    differ by 0.2 (not duplicates), people by ~1.4."""

    dim = 16

    def describe(self, image, landmarks):
        person, shot = int(round(image[:4, :4, 0].mean() / 20)), int(round(image[:4, :4, 1].mean() / 20))
        d = np.zeros(self.dim, np.float32)
        d[person] = 1.0
        d[8 + shot % 8] += 0.2 / np.sqrt(2)
        return d


def _people_folder(folder: Path, people: list[int]) -> None:
    folder.mkdir()
    for i, person in enumerate(people):
        img = _photo(320, 320, seed=i)
        img[:4, :4, 0], img[:4, :4, 1] = 20 * person, 20 * i
        write_image(folder / f"{i:02d}_person{person}.png", img)


def _prepare(raw: Path, album: Path, messages: list[str]):
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    from mystyle_pl.data.curate import CurationSettings
    from mystyle_pl.data.faces import FaceModelsUnavailable
    from mystyle_pl.data.prepare import prepare_album

    analyzer = {"detector": _MarkedDetector(), "landmarker": _TemplateLandmarker(), "descriptor": _MarkedDescriptor(),
                "refine_iterations": 0}  # fmt: skip
    try:
        return prepare_album(raw, album, resolution=32, workers=0, progress=False, analyzer_kwargs=analyzer,
                             curation=CurationSettings(min_face=64), log=messages.append)  # fmt: skip
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))


def test_identity_warning_on_decisions():
    from mystyle_pl.data.curate import CurationSettings, FaceStats, PhotoStats, curate, identity_warning

    def face(person, shot):
        d = np.zeros(16)
        d[person], d[8 + shot] = 1.0, 0.15
        return FaceStats(400, 800, 300.0, d)

    six = [PhotoStats(f"{p}_{k}.jpg", [face(p, k)]) for p in range(6) for k in range(2)]
    decisions, _ = curate(six, CurationSettings())
    assert sum(d.kept for d in decisions) == 2
    assert "only 2 of the 12 photos" in (identity_warning(decisions) or "")
    one = [PhotoStats(f"a{k}.jpg", [face(0, k)]) for k in range(5)] + six[2:6]
    decisions, _ = curate(one, CurationSettings())
    assert identity_warning(decisions) is None  # 5 of 9: a dominant person


def test_prepare_warns_when_no_person_dominates(tmp_path):
    messages: list[str] = []
    _people_folder(tmp_path / "raw", [p for p in range(6) for _ in range(2)])  # 12 photos of 6 people
    result = _prepare(tmp_path / "raw", tmp_path / "album", messages)
    assert result.kept == 2
    assert any("no dominant person" in m and "2 of the 12" in m for m in messages), messages
    assert "warning: no dominant person" in result.summary()
    manifest = json.loads((tmp_path / "album" / "manifest.json").read_text())
    assert manifest["identity"]["share"] == {"person": 2, "usable": 12}
    assert "no dominant person" in manifest["identity"]["warning"] and manifest["summary"]["warnings"]
    # One person in most photos: no warning.
    quiet: list[str] = []
    _people_folder(tmp_path / "raw2", [0] * 6 + [1, 2])
    ok = _prepare(tmp_path / "raw2", tmp_path / "album2", quiet)
    assert ok.kept == 6 and not any("dominant" in m for m in quiet) and "warning" not in ok.summary()
