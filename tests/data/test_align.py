"""FFHQ alignment: the geometry is exact, real faces come out as FFHQ crops, and the round trip
(warp a real aligned face into a canvas, prepare it, paste it back) reproduces the originals.

``python -m tests.data.test_align`` runs the round trip on every reference photo of the shared albums
and prints the per-photo table (the figures quoted in the README).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.align import AlignTransform, align_face, face_mask, ffhq_quad, paste_back
from mystyle_pl.data.io import read_image, to_tensor, to_uint8

from ..helpers import shared_data_dir


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    err = (a - b) ** 2
    mse = err[mask].mean() if mask is not None else err.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def synthetic_landmarks(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54] = eye_l, eye_r, mouth_l, mouth_r
    return lm


def dlib_or_skip():
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    from mystyle_pl.data.faces import FaceAnalyzer, FaceModelsUnavailable, check_face_models

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    return FaceAnalyzer()


# ----------------------------------------------------------------------------------------
# geometry (no models needed)


def test_quad_is_an_upright_square_for_a_level_face():
    lm = synthetic_landmarks([100, 100], [140, 100], [105, 150], [135, 150])
    quad = ffhq_quad(lm)
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    assert np.allclose(sides, sides[0]) and sides[0] == pytest.approx(180.0)  # 2 * 1.8 * |eye-to-mouth|
    assert quad[0].tolist() == pytest.approx([30.0, 15.0])  # centre = eyes + 0.1 * eye-to-mouth = (120, 105)


def test_quad_follows_rotation_and_scale():
    lm = synthetic_landmarks([100, 100], [140, 100], [105, 150], [135, 150])
    theta, s, t = math.radians(30), 1.7, np.array([50.0, -20.0])
    rot = s * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = lm @ rot.T + t
    assert np.allclose(ffhq_quad(moved), ffhq_quad(lm) @ rot.T + t, atol=1e-9)
    tr = AlignTransform(ffhq_quad(moved), (400, 300), 256)
    assert tr.rotation_degrees == pytest.approx(30.0)
    assert tr.face_size == pytest.approx(180.0 * s)


@pytest.mark.parametrize("resolution", [64, 256, 1024])
def test_aligned_pixels_show_the_mapped_source_points(resolution):
    """Blobs drawn at ``to_source(p)`` appear at ``p`` in the aligned image (to 0.05 px)."""
    height, width = 600, 800
    lm = synthetic_landmarks([300, 240], [380, 220], [320, 340], [380, 330])  # a tilted face
    transform = AlignTransform(ffhq_quad(lm), (width, height), resolution)
    targets = np.array([[0.3, 0.25], [0.7, 0.6], [0.5, 0.8]]) * resolution
    yy, xx = np.mgrid[:height, :width]
    canvas = np.zeros((height, width))
    for x, y in transform.to_source(targets):
        canvas += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2))
    src = np.repeat(np.clip(canvas * 200, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    aligned, tr = align_face(src, lm, resolution)
    assert aligned.shape == (resolution, resolution, 3) and tr.resolution == resolution
    gray = aligned[..., 0].astype(np.float64)
    for tx, ty in targets:
        r = int(0.08 * resolution)
        x0, y0 = int(tx), int(ty)
        patch = gray[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        py, px = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        centroid = np.array([(patch * px).sum(), (patch * py).sum()]) / patch.sum()
        assert np.abs(centroid - [tx, ty]).max() < 0.05


def test_transform_round_trips_points_and_json():
    lm = synthetic_landmarks([300, 240], [380, 220], [320, 340], [380, 330])
    tr = AlignTransform(ffhq_quad(lm), (800, 600), 512, source_file="a/b.jpg")
    back = AlignTransform.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert back.source_file == "a/b.jpg" and back.source_size == (800, 600) and back.resolution == 512
    pts = np.random.default_rng(0).uniform(0, 512, (10, 2))
    assert np.allclose(back.to_aligned(back.to_source(pts)), pts, atol=1e-3)
    # The aligned image at another resolution covers the same quad.
    # The aligned image at another resolution covers the same quad (pixel centres scale about the edges).
    assert np.allclose(tr.to_source(pts, 512), tr.to_source((pts + 0.5) * 2 - 0.5, 1024), atol=1e-6)


def test_padding_fills_outside_the_photo_smoothly():
    """A face near the photo's corner: the quad leaves the photo and is filled by blurred reflection."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    lm = synthetic_landmarks([20, 20], [60, 20], [25, 70], [55, 70])
    aligned, _ = align_face(img, lm, 128)
    assert aligned.shape == (128, 128, 3)
    assert aligned[:10, :10].std() < img.std() / 3  # padding is blurred, not noise
    plain, _ = align_face(img, lm, 128, enable_padding=False)
    assert plain[:10, :10].max() == 0  # without padding, outside is black


def test_align_accepts_tensors_and_rejects_bad_input():
    img = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    lm = synthetic_landmarks([60, 50], [100, 50], [65, 90], [95, 90])
    arr, _ = align_face(img, lm, 32)
    ten, _ = align_face(to_tensor(img), lm, 32)
    assert tuple(ten.shape) == (1, 3, 32, 32) and np.array_equal(to_uint8(ten)[0], arr)
    with pytest.raises(ValueError, match="68 landmarks"):
        align_face(img, lm[:5], 32)
    with pytest.raises(ValueError, match="degenerate"):
        align_face(img, np.zeros((68, 2)), 32)


def test_face_mask_covers_the_face_and_is_feathered():
    m = face_mask(256)[0, 0]
    assert m[int(0.47 * 256), int(0.37 * 256)] == 1 and m[int(0.75 * 256), 128] == 1  # eye, mouth
    assert m[5, 5] == 0 and m[250, 10] == 0
    edge = m[int(0.58 * 256), :]
    assert ((edge > 0.05) & (edge < 0.95)).sum() >= 4  # a soft edge, several pixels wide


def test_paste_back_reproduces_the_source_inside_the_mask():
    yy, xx = np.mgrid[:300, :400]
    src = np.stack([128 + 60 * np.sin(xx / 9.0), 128 + 60 * np.cos(yy / 7.0), (xx + yy) % 256], axis=2).astype(np.uint8)
    lm = synthetic_landmarks([170, 120], [220, 110], [180, 180], [220, 175])
    aligned, tr = align_face(src, lm, 512)
    source = to_tensor(src)
    out, weight = paste_back(source, to_tensor(aligned), tr)
    assert out.shape == source.shape and weight.shape == (1, 1, 300, 400)
    inside = weight[0, 0].numpy() > 0.99
    assert inside.sum() > 5000
    assert psnr(to_uint8(out)[0], src, inside) > 35
    assert torch.equal(out[..., weight[0, 0] == 0], source[..., weight[0, 0] == 0])  # untouched outside
    # A different result lands only inside the mask.
    white = torch.ones(1, 3, 64, 64)
    out2, w2 = paste_back(source, white, tr)
    assert torch.allclose(out2, source + (white.mean() - source) * w2, atol=1e-5)  # a blend through the weight
    assert (w2 == 1).sum() > 5000 and torch.allclose(out2[0, :, w2[0, 0] == 1], torch.tensor(1.0))
    with pytest.raises(ValueError, match="made on a"):
        paste_back(source[..., :200], white, tr)


# ----------------------------------------------------------------------------------------
# real faces


@pytest.fixture(scope="module")
def analyzer():
    return dlib_or_skip()


def test_astronaut_crop_is_an_ffhq_crop(analyzer, tmp_path):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    img = skimage_data.astronaut()
    faces = analyzer.analyze(img)
    assert faces, "no face found in skimage.data.astronaut()"
    face = max(faces, key=lambda f: f.box.size)
    assert 150 < (face.box.left + face.box.right) / 2 < 300 and 50 < (face.box.top + face.box.bottom) / 2 < 200
    aligned, tr = align_face(img, face.landmarks, 256)
    lm = tr.to_aligned(face.landmarks)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    # FFHQ layout: eyes level, the face centred, eyes ~47% down, mouth ~75% down.
    assert abs(math.degrees(math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))) < 1.0
    assert abs((eye_l[0] + eye_r[0]) / 2 - 128) < 256 * 0.03
    assert 0.42 < (eye_l[1] + eye_r[1]) / 2 / 256 < 0.52 and 0.64 < mouth[1] / 256 < 0.80
    assert 0.18 < (eye_r[0] - eye_l[0]) / 256 < 0.32
    assert aligned.std() > 30  # a real image, not a flat fill
    assert abs(tr.rotation_degrees) < 10  # the astronaut's head is nearly upright


def make_canvas(ref: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Warp ``ref`` into a larger gray canvas with a random rotation (+-25 deg), scale (0.5-1.5) and offset."""
    angle, scale = rng.uniform(-25, 25), rng.uniform(0.5, 1.5)
    theta = math.radians(angle)
    side = ref.shape[0] * scale * (abs(math.cos(theta)) + abs(math.sin(theta)))
    width, height = (int(side + m) for m in rng.uniform(60, 400, 2))
    centre = np.array([width, height]) / 2 + rng.uniform(-20, 20, 2)
    fwd = scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(fwd)
    offset = np.array(ref.shape[1::-1]) / 2 - inv @ centre  # PIL wants canvas -> ref (continuous coords)
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    canvas = Image.fromarray(ref).transform((width, height), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC,
                                            fillcolor=(128, 128, 128))  # fmt: skip
    return np.asarray(canvas), {"angle": angle, "scale": scale, "size": (width, height)}


def round_trip(refs: list[Path], workdir: Path, seed: int = 0, resolution: int = 256, workers: int = 0,
               self_check: bool = False) -> list[dict]:  # fmt: skip
    """Canvas each ref, ``prepare`` the canvases, compare with the refs and paste back.

    ``self_check``: also align each unwarped ref with our own landmarks and compare (``psnr_self``):
    how much the alignment depends on the photo's rotation, scale and position.
    """
    from mystyle_pl.data.curate import CurationSettings
    from mystyle_pl.data.prepare import prepare_album

    rng = np.random.default_rng(seed)
    raw, album = workdir / "raw", workdir / "album"
    raw.mkdir(parents=True, exist_ok=True)
    info = {}
    for ref_path in refs:
        name = f"{ref_path.parent.parent.name}_{ref_path.stem}.png"
        canvas, info[name] = make_canvas(read_image(ref_path), rng)
        Image.fromarray(canvas).save(raw / name)
        info[name]["ref"] = ref_path
    # Albums mix identities here on purpose: identity and duplicate rules are switched off.
    curation = CurationSettings(min_face=64, identity_threshold=10.0, duplicate_threshold=0.0)
    result = prepare_album(raw, album, resolution=resolution, workers=workers, curation=curation, progress=False)
    rows = []
    for entry in result.manifest["files"]:
        row = {"file": entry["file"], "status": entry["status"], "reason": entry["reason"], **info[entry["file"]]}
        if entry["status"] == "kept":
            aligned = read_image(album / entry["output"])
            ref = resize(read_image(row["ref"]), resolution)
            tr = AlignTransform.from_dict(entry["transform"])
            canvas = read_image(raw / entry["file"])
            out, weight = paste_back(to_tensor(canvas), to_tensor(aligned), tr)
            inside = weight[0, 0].numpy() > 0.99
            face = face_mask(resolution)[0, 0].numpy() > 0.5
            row.update(psnr=psnr(aligned, ref), psnr_face=psnr(aligned, ref, face),
                       paste_psnr=psnr(to_uint8(out)[0], canvas, inside),
                       paste_max=int(np.abs(to_uint8(out)[0].astype(int) - canvas)[inside].max()))  # fmt: skip
            if self_check:
                from mystyle_pl.data.faces import FaceAnalyzer

                ref_full = read_image(row["ref"])
                face = max(FaceAnalyzer().analyze(ref_full), key=lambda f: f.box.size)
                row["psnr_self"] = psnr(aligned, align_face(ref_full, face.landmarks, resolution)[0])
        rows.append(row)
    return rows


def test_round_trip_on_real_faces(shared_data, tmp_path):
    dlib_or_skip()
    refs = sorted((shared_data / "albums").glob("*/refs/*.png"))
    if not refs:
        pytest.skip("no reference photos in the shared albums")
    by_album: dict[str, list[Path]] = {}
    for r in refs:
        by_album.setdefault(r.parent.parent.name, []).append(r)
    chosen = [p for album in sorted(by_album) for p in sorted(by_album[album])[:2]]  # 8 photos, 2 per person
    rows = round_trip(chosen, tmp_path, seed=0, resolution=256)
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == len(chosen), [(r["file"], r["reason"]) for r in rows if r["status"] != "kept"]
    scores = sorted(r["psnr"] for r in kept)
    # Landmark noise (ours and that of whoever aligned the refs) limits the match; a wrong
    # rotation, scale or offset convention lands near 12 dB.
    assert np.median(scores) >= 24.0, scores
    assert np.median([r["psnr_face"] for r in kept]) >= 24.0
    # Pasting the crop back through the saved inverse reproduces the canvas inside the mask
    # (up to the resampling of a 256 px crop).
    assert min(r["paste_psnr"] for r in kept) >= 27.0, [r["paste_psnr"] for r in kept]


if __name__ == "__main__":  # the full table: python -m tests.data.test_align
    import argparse
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("shared data not found (../shared/data or $MYSTYLE_SHARED_DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = round_trip(sorted((data / "albums").glob("*/refs/*.png")), Path(tmp), args.seed, args.resolution, args.workers,
                          self_check=True)  # fmt: skip
    print(f"{'file':<20} {'angle':>6} {'scale':>5} {'psnr':>6} {'face':>6} {'self':>6} {'paste':>6} {'max':>4}")
    for r in rows:
        if r["status"] != "kept":
            print(f"{r['file']:<20} {r['angle']:6.1f} {r['scale']:5.2f}  rejected: {r['reason']}")
            continue
        print(f"{r['file']:<20} {r['angle']:6.1f} {r['scale']:5.2f} {r['psnr']:6.2f} {r['psnr_face']:6.2f} {r['psnr_self']:6.2f} "
              f"{r['paste_psnr']:6.2f} {r['paste_max']:4d}")  # fmt: skip
    kept = [r for r in rows if r["status"] == "kept"]
    print(f"kept {len(kept)}/{len(rows)}; median PSNR at {args.resolution} px: whole crop {np.median([r['psnr'] for r in kept]):.2f} dB, "
          f"face mask {np.median([r['psnr_face'] for r in kept]):.2f} dB, vs our alignment of the unwarped ref "
          f"{np.median([r['psnr_self'] for r in kept]):.2f} dB; paste-back inside the mask: median "
          f"{np.median([r['paste_psnr'] for r in kept]):.2f} dB, min {min(r['paste_psnr'] for r in kept):.2f} dB")  # fmt: skip
