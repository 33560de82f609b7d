"""Metrics against hand-computed values: PSNR, SSIM, LPIPS sanity, identity math and failure counting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mystyle_pl.data.io import write_image
from mystyle_pl.metrics import (
    IdentityScore,
    IdentityScorer,
    album_centre,
    cosine_similarity,
    euclidean_distance,
    lpips_distance,
    psnr,
    same_person_share,
    ssim,
    summarize,
)

# ------------------------------------------------------------------ PSNR


def test_psnr_hand_computed_2x2():
    # In [0, 1]: x is 0.5 everywhere, y has one pixel (all 3 channels) at 1.0 -> MSE = 0.25 / 4.
    x = torch.zeros(2, 3, 2, 2)
    y = x.clone()
    y[0, :, 0, 0] = 1.0
    y[1, :, :, :] = -1.0  # image 2: every pixel 0.5 off -> MSE 0.25 -> 10 log10(4)
    value = psnr(x, y)
    assert value.shape == (2,)
    assert value[0].item() == pytest.approx(10 * math.log10(16), abs=1e-4)  # 12.0412 dB
    assert value[1].item() == pytest.approx(10 * math.log10(4), abs=1e-4)  # 6.0206 dB
    assert torch.isinf(psnr(x, x)).all()  # identical images


def test_psnr_clamps_to_the_image_range():
    x = torch.zeros(1, 3, 2, 2)
    assert psnr(x, torch.full_like(x, 5.0)).item() == pytest.approx(psnr(x, torch.ones_like(x)).item())


def test_psnr_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        psnr(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="must match"):
        psnr(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4))


# ------------------------------------------------------------------ SSIM


def _ssim_by_hand(x: np.ndarray, y: np.ndarray, k: int = 3) -> float:
    """Textbook SSIM with a uniform k x k window over reflection-padded single-channel images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    r = k // 2
    xp, yp = np.pad(x, r, mode="reflect"), np.pad(y, r, mode="reflect")
    values = []
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = xp[i : i + k, j : j + k].ravel(), yp[i : i + k, j : j + k].ravel()
            ma, mb = a.mean(), b.mean()
            va, vb = (a * a).mean() - ma**2, (b * b).mean() - mb**2
            cov = (a * b).mean() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_flat_images_is_the_luminance_term():
    a, b = 0.5, 0.75  # [0, 1] values of 0.0 and 0.5 in [-1, 1]
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    x, y = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)
    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-6)
    assert ssim(x, y, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(expected, abs=1e-6)


def test_ssim_4x4_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 4, 4, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(1, 1, 4, 4, generator=g)).clamp(-1, 1)
    x3, y3 = x.expand(1, 3, 4, 4), y.expand(1, 3, 4, 4)  # the same values in every channel
    expected = _ssim_by_hand(((x[0, 0] + 1) / 2).double().numpy(), ((y[0, 0] + 1) / 2).double().numpy())
    assert ssim(x3, y3, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(expected, abs=1e-6)
    assert ssim(x3, x3, gaussian_kernel=False, kernel_size=3).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_too_small_for_the_window():
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))  # the Gaussian window pads 5 px


def test_ssim_needs_no_torchvision():
    import sys

    ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)


def test_lpips_distance_is_zero_on_identical_images_and_symmetric():
    from mystyle_pl.losses import LPIPS

    net = LPIPS("alex", pretrained=False)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert lpips_distance(x, x, net).tolist() == [0.0, 0.0]
    d = lpips_distance(x, y, net)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(d, lpips_distance(y, x, net), atol=1e-6)


# ------------------------------------------------------------------ identity math


def test_cosine_and_euclidean_on_hand_made_vectors():
    assert cosine_similarity([1, 0], [0, 1]) == pytest.approx(0.0)
    assert euclidean_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(2))
    assert cosine_similarity([3, 4], [6, 8]) == pytest.approx(1.0)
    assert euclidean_distance([3, 4], [6, 8]) == pytest.approx(5.0)
    assert cosine_similarity([1, 2, 2], [-1, -2, -2]) == pytest.approx(-1.0)
    assert math.isnan(cosine_similarity(None, [1, 0])) and math.isnan(euclidean_distance([1, 0], None))
    assert math.isnan(cosine_similarity([0, 0], [1, 0]))  # a zero vector has no direction
    with pytest.raises(ValueError, match="differ in size"):
        euclidean_distance([1, 0], [1, 0, 0])


def test_same_person_share_counts_failures_as_different():
    assert same_person_share([0.1, 0.5, 0.7, 0.2]) == pytest.approx(0.75)
    assert same_person_share([0.1, float("nan"), None, 0.6]) == pytest.approx(0.25)  # 0.6 is not below 0.6
    assert same_person_share([0.65], threshold=0.7) == 1.0
    assert math.isnan(same_person_share([]))


def test_scorer_with_a_stub_descriptor_and_failure_record():
    vectors = {0: np.array([1.0, 0.0, 0.0]), 1: np.array([0.0, 1.0, 0.0])}

    def stub(image):  # the red value of the first pixel picks a "face"; 255 = no face
        return vectors.get(int(image[0, 0, 0]))

    scorer = IdentityScorer(descriptor_fn=stub, centre=[0.6, 0.8, 0.0])
    img = np.zeros((8, 8, 3), np.uint8)
    s = scorer.score(img, reference=[1.0, 0.0, 0.0])
    assert s.found and s.cos_gt == pytest.approx(1.0) and s.dist_gt == pytest.approx(0.0) and s.same_gt
    assert s.cos_centre == pytest.approx(0.6) and s.dist_centre == pytest.approx(math.sqrt(0.16 + 0.64))
    assert s.same_centre is False  # 0.894 >= 0.6

    none = img.copy()
    none[0, 0, 0] = 255
    f = scorer.score(none, reference=[1.0, 0.0, 0.0])
    assert not f.found and math.isnan(f.dist_gt) and math.isnan(f.cos_centre) and not f.same_gt and not f.same_centre

    # tensors in [-1, 1] are accepted too (converted to uint8 at the edge)
    t = torch.full((1, 3, 8, 8), -1.0)
    assert scorer.score(t, reference=[0.0, 1.0, 0.0]).dist_gt == pytest.approx(math.sqrt(2))

    summary = summarize([s, f, IdentityScore(True, 0.5, 0.4, threshold=0.6)])
    assert (summary["n"], summary["faces_found"], summary["failures"]) == (3, 2, 1)
    assert summary["same_person_gt"] == pytest.approx(2 / 3)  # the failure is in the denominator
    assert summary["dist_gt"]["mean"] == pytest.approx(0.2) and summary["dist_gt"]["n"] == 2
    assert summary["dist_gt"]["std"] == pytest.approx(math.sqrt(0.08))  # sample std of (0, 0.4)
    assert summary["cos_gt"]["mean"] == pytest.approx(0.75)


def test_summarize_all_failures():
    out = summarize([IdentityScore(False), IdentityScore(False)])
    assert out["faces_found"] == 0 and out["same_person_gt"] == 0.0 and out["dist_gt"]["mean"] is None


# ------------------------------------------------------------------ album centre


class _PriorInfo:
    def __init__(self, info):
        self.info = info


def test_album_centre_from_the_manifest(tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    manifest = {"format": "mystyle_pl.album", "identity": {"centre": [0.1, 0.2, 0.3]}, "files": []}
    (album / "manifest.json").write_text(json.dumps(manifest))
    centre, note = album_centre(_PriorInfo({"album": str(album)}))
    assert centre.tolist() == pytest.approx([0.1, 0.2, 0.3]) and "manifest" in note


def test_album_centre_from_reference_photos_then_none(tmp_path):
    refs = tmp_path / "refs"
    for i, red in enumerate([10, 12, 14, 200]):  # three photos of one "person", one of another
        img = np.zeros((8, 8, 3), np.uint8)
        img[..., 0] = red
        write_image(refs / f"{i}.png", img)

    def stub(image):
        return np.array([image[0, 0, 0] / 100.0, 0.0])

    centre, note = album_centre(
        _PriorInfo({"album": str(tmp_path / "missing")}), refs=refs, scorer=IdentityScorer(descriptor_fn=stub)
    )
    assert centre.tolist() == pytest.approx([0.12, 0.0]) and "4 of 4 reference photos" in note
    centre, note = album_centre(_PriorInfo({"album": str(tmp_path / "missing")}))
    assert centre is None and "no identity centre" in note
    centre, note = album_centre(_PriorInfo({}))
    assert centre is None and "names no album" in note


# ------------------------------------------------------------------ real dlib on real faces


def test_dlib_identity_on_a_real_held_out_photo(shared_data):
    from mystyle_pl.data.faces import FaceModelsUnavailable, check_face_models
    from mystyle_pl.data.io import read_image, to_tensor
    from mystyle_pl.tasks.superres import area_downsample

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    person = shared_data / "albums" / "00082"
    refs = sorted((person / "refs").glob("*.png"))[:2]
    scorer = IdentityScorer()
    descriptors = [scorer.describe(read_image(r)) for r in refs]
    assert all(d is not None and d.shape == (128,) for d in descriptors)
    scorer.centre = np.mean(descriptors, axis=0)
    gt = area_downsample(to_tensor(read_image(person / "gt.png")), 256)  # as evaluated: a 256 px crop
    ref = descriptors[0]
    score = scorer.score(gt, reference=ref)
    assert score.found
    assert score.dist_gt < 0.6 and score.same_gt  # a different photo of the same person
    assert score.dist_centre < 0.6 and score.cos_centre > 0.9
    flat = torch.zeros(1, 3, 256, 256)  # no face: a failure record, not an exception
    assert not scorer.score(flat, reference=ref).found
