"""Only the person's faces in a photo of several people (mystyle_pl.group): the person's face is
processed and pasted back, every other pixel (other faces, background) stays byte for byte.

The tiny tests use synthetic faces found by a stand-in analyser (known boxes, landmarks and
descriptors), so they need neither dlib nor a real prior; the real test composes a photo of three
real people from ../shared/data/albums and finds and matches them with dlib.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.faces import FaceBox
from mystyle_pl.group import FaceOutput, NoPersonError, process_photo, select_faces, task_runner
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tasks.pasteback import NoFaceError

from .helpers import make_tiny_stylegan2, three_people_photo

R = 16
FAST = dict(steps=1, lpips_weight=0.0)
CENTRES = (80, 240, 400)  # x of the three synthetic faces; the person is the middle one
SIDE = 100


@pytest.fixture(scope="module")
def prior() -> PersonalPrior:
    g = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = g.mapping(torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(0)))
    return PersonalPrior(g, Anchors(w=w, names=[f"{i}.png" for i in range(4)]))


def synthetic_landmarks(cx: float, cy: float, side: float) -> np.ndarray:
    """68 points whose eyes and mouth corners (all that the FFHQ quad uses) frame a face of ``side`` px."""
    lm = np.tile([cx, cy], (68, 1)).astype(np.float64)
    lm[36:42] = [cx - 0.12 * side, cy - 0.05 * side]
    lm[42:48] = [cx + 0.12 * side, cy - 0.05 * side]
    lm[48] = [cx - 0.1 * side, cy + 0.2 * side]
    lm[54] = [cx + 0.1 * side, cy + 0.2 * side]
    return lm


class StandInAnalyzer:
    """Finds the synthetic faces at CENTRES: the person (descriptor 0) and two others (descriptors 1 and -1)."""

    def __init__(self, descriptors=((1.0,) * 4, (0.0,) * 4, (-1.0,) * 4), scores=(1.0, 0.5, 2.0)):
        self.descriptors, self.scores = descriptors, scores

    def analyze(self, image, describe=True):
        faces = []
        for cx, d, s in zip(CENTRES, self.descriptors, self.scores):
            box = FaceBox(cx - SIDE / 2, 50, cx + SIDE / 2, 50 + SIDE, s)
            faces.append(SimpleNamespace(box=box, landmarks=synthetic_landmarks(cx, 100, SIDE),
                                         descriptor=np.asarray(d) if describe else None))  # fmt: skip
        return sorted(faces, key=lambda f: -f.box.score)


@pytest.fixture(scope="module")
def group_photo() -> np.ndarray:
    """200 x 480: three textured 'faces' on a gradient."""
    rng = np.random.default_rng(0)
    photo = np.zeros((200, 480, 3), np.uint8)
    photo[:] = np.linspace(20, 200, 480, dtype=np.uint8)[None, :, None]
    for cx in CENTRES:
        photo[50:150, cx - 50 : cx + 50] = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    return photo


def boxes_identical(a: np.ndarray, b: np.ndarray, cx: int) -> bool:
    return np.array_equal(a[40:160, cx - 60 : cx + 60], b[40:160, cx - 60 : cx + 60])


def test_only_the_person_changes_in_a_group_photo(prior, group_photo):
    run, size, upscale = task_runner(prior, "invert", **FAST)
    result = process_photo(group_photo, run, size, identity=[0.05] * 4, analyzer=StandInAnalyzer())
    out = result.photo
    assert out.shape == group_photo.shape and result.crops.shape == (1, 3, R, R)
    assert [f.selected for f in result.faces] == [False, True, False]
    left, person, right = result.faces
    assert person.action == "processed" and person.distance == pytest.approx(0.1)
    assert "not the person (distance 1.90 >= 0.58)" in left.action
    # Outside the pasted region, every pixel is the input's; the other faces are untouched.
    assert np.array_equal(out[~result.changed], group_photo[~result.changed])
    assert boxes_identical(out, group_photo, CENTRES[0]) and boxes_identical(out, group_photo, CENTRES[2])
    changed = np.abs(out.astype(int) - group_photo).max(axis=2) > 0
    x0, y0, x1, y1 = person.region
    assert changed.any() and not changed[:, :x0].any() and not changed[:, x1:].any()
    assert 150 < x0 < 240 < x1 < 330  # the region is the middle face's
    record = result.record()
    assert [f["selected"] for f in record["faces"]] == [False, True, False] and record["faces_mode"] == "person"
    assert record["task"]["task"] == "invert" and record["task"]["steps_used"] == 1


def test_a_photo_without_the_person_is_reported_and_skipped(prior, group_photo):
    run, size, _ = task_runner(prior, "invert", **FAST)
    called = []

    def task(work):
        called.append(work)
        return run(work)

    with pytest.raises(NoPersonError, match=r"photo: no face of the person: closest 1\.90, threshold 0\.60"):
        process_photo(group_photo, task, size, identity=[1.95] * 4, threshold=0.6, analyzer=StandInAnalyzer())
    assert not called  # nothing was restored
    with pytest.raises(NoFaceError, match="no face found"):
        process_photo(group_photo, task, size, identity=[0.0] * 4, detected=[])


def test_faces_all_largest_and_unknown_identity(prior, group_photo):
    def paint(work):  # a stand-in task: every crop turns white
        return FaceOutput(torch.ones(work.crops.shape[0], 3, R, R))

    every = process_photo(group_photo, paint, R, identity=[0.0] * 4, faces="all", analyzer=StandInAnalyzer())
    assert all(f.selected for f in every.faces) and every.crops.shape[0] == 3
    for cx in CENTRES:
        assert (every.photo[95:105, cx - 5 : cx + 5] == 255).all()
    # Unknown identity: the most confident face (the right one, score 2), said in the note.
    unknown = process_photo(group_photo, paint, R, identity=None, analyzer=StandInAnalyzer())
    assert [f.selected for f in unknown.faces] == [False, False, True]
    assert "identity is unknown: took the most confident face" in unknown.selection.note
    assert boxes_identical(unknown.photo, group_photo, CENTRES[0]) and boxes_identical(unknown.photo, group_photo, CENTRES[1])
    with pytest.raises(ValueError, match="faces must be one of person, all, largest"):
        select_faces(StandInAnalyzer().analyze(group_photo), "photo", mode="everyone")


def test_inpaint_and_super_resolution_in_a_group_photo(prior, group_photo):
    hole = np.zeros(group_photo.shape[:2], bool)
    hole[90:110, 230:250] = True  # on the person's face
    run, size, _ = task_runner(prior, "inpaint", hole=hole, **FAST)
    result = process_photo(group_photo, run, size, identity=[0.0] * 4, analyzer=StandInAnalyzer())
    changed = np.abs(result.photo.astype(int) - group_photo).max(axis=2) > 0
    assert changed[90:110, 230:250].mean() > 0.5 and not changed[:, :190].any() and not changed[:, 290:].any()
    assert np.array_equal(result.photo[~result.changed], group_photo[~result.changed])
    hole_off_face = np.zeros_like(hole)
    hole_off_face[0:10, 0:10] = True
    run, size, _ = task_runner(prior, "inpaint", hole=hole_off_face, **FAST)
    with pytest.raises(ValueError, match="does not touch the person's face"):
        process_photo(group_photo, run, size, identity=[0.0] * 4, analyzer=StandInAnalyzer())

    run, size, upscale = task_runner(prior, "super_resolve", factor=2, **FAST)
    result = process_photo(group_photo, run, size, identity=[0.0] * 4, upscale=upscale, analyzer=StandInAnalyzer())
    assert upscale == 2 and result.photo.shape == (400, 960, 3) and result.crops.shape == (1, 3, R // 2, R // 2)
    enlarged = np.asarray(Image.fromarray(group_photo).resize((960, 400), Image.Resampling.BICUBIC))
    assert np.array_equal(result.photo[~result.changed], enlarged[~result.changed])
    assert not result.changed[:, :380].any() and not result.changed[:, 580:].any()


def test_real_group_photo_changes_only_the_person(prior, shared_data, tmp_path):
    """Three real people side by side (albums 00027, 00001, 00049); the prior's identity is album
    00001's (the mean dlib descriptor of two of its reference photos)."""
    photo, centre, analyzer = three_people_photo(shared_data)
    run, size, _ = task_runner(prior, "invert", **FAST)
    result = process_photo(photo, run, size, identity=centre, analyzer=analyzer, label="group.png")
    assert [f.selected for f in result.faces] == [False, True, False], result.record()["faces"]
    distances = [round(f.distance, 2) for f in result.faces]
    print(f"distances to album 00001's identity, left to right: {distances}")
    assert np.array_equal(result.photo[:, :240], photo[:, :240]) and np.array_equal(result.photo[:, 480:], photo[:, 480:])
    assert np.array_equal(result.photo[~result.changed], photo[~result.changed]) and result.changed.any()
    # Without the person: reported and skipped.
    others = np.concatenate([photo[:, :240], photo[:, 480:]], axis=1)
    with pytest.raises(NoPersonError, match=r"others\.png: no face of the person: closest 0\.\d\d, threshold 0\.58"):
        process_photo(others, run, size, identity=centre, analyzer=analyzer, label="others.png")


def test_a_blurred_face_just_above_the_threshold_is_taken_when_clearly_the_closest():
    """Album 00001's real degraded.png beside two other people read 0.62 / 0.83 / 0.83 from the person
    (threshold 0.58): the closest face is taken when it is within DEGRADED_SLACK above the threshold and
    DEGRADED_MARGIN closer than every other face; otherwise the photo is refused with a hint."""
    from mystyle_pl.group_select import DEGRADED_MARGIN, DEGRADED_SLACK

    def face(x: float, distance: float) -> SimpleNamespace:  # identity at the origin: distance = descriptor norm
        return SimpleNamespace(box=FaceBox(x, 0, x + 100, 100, 1.0), descriptor=np.array([distance, 0.0]), landmarks=None)

    picked = select_faces([face(0, 0.83), face(200, 0.62), face(400, 0.83)], "group.jpg", identity=[0.0, 0.0])
    assert [f.selected for f in picked.faces] == [False, True, False]
    assert "closest to the person" in picked.note and "0.21 closer" in picked.note
    near = 0.58 + DEGRADED_SLACK + 0.01  # just outside the slack
    for faces in ([face(0, 0.62)], [face(0, 0.62), face(200, 0.62 + DEGRADED_MARGIN - 0.02)], [face(0, near), face(200, 1.2)]):
        with pytest.raises(NoPersonError, match=r"no face of the person: closest 0\.\d\d, threshold 0\.58 .*--data.identity_threshold"):
            select_faces(faces, "group.jpg", identity=[0.0, 0.0])
