"""Identity metrics: identity math, failure counting, the album centre, real dlib (``metrics/identity.py``)."""

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
    same_person_share,
    summarize,
)


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
