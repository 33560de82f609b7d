"""``predict --data.faces person|all|largest`` on photos of several people (mystyle_pl.predict.faces,
mystyle_pl.group): only the chosen faces change, every other pixel stays the input's byte for byte,
a photo without the person is reported and skipped, and the batch goes on.

The first test finds its faces with a stand-in analyser (three synthetic faces with known
descriptors), so it needs neither dlib nor shared data; the second composes a photo of three real
people from the shared albums and finds and matches them with dlib. A tiny prior has no meaningful
identity, so, as in ``tests/test_group.py``, the person's identity is given: stored in the tiny
prior's ``prior.json`` (where ``predict`` reads it), taken from album 00001's reference photos.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mystyle_pl.cli import dispatch
from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data import faces as data_faces
from mystyle_pl.data.faces import FaceBox
from mystyle_pl.data.io import read_image, write_image
from mystyle_pl.prior import PersonalPrior

from .helpers import REPO_ROOT, make_tiny_stylegan2, three_people_photo

R = 32
FAST = ["--model.task.steps", "2", "--model.task.lpips_weight", "0"]
CENTRES = (60, 180, 300)  # x of the three stand-in faces: a stranger, the person, a larger stranger
SIDES = (60, 60, 80)


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])


def tiny_prior(path: Path, identity) -> Path:
    g = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = g.mapping(torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(0)))
    info = {"identity": {"centre": [float(v) for v in identity], "source": "test"}}
    return PersonalPrior(g, Anchors(w=w, names=[f"{i}.png" for i in range(4)]), info=info).save(path)


def predict(task: str, prior_dir: Path, out: Path, *args: str) -> Path:
    argv = ["predict", "--config", str(REPO_ROOT / "configs" / "predict" / f"{task}.yaml"), "--model.prior", str(prior_dir),
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", *FAST, *args]  # fmt: skip
    assert dispatch(argv) == 0
    return out


def landmarks(cx: float, cy: float, side: float) -> np.ndarray:
    """68 points whose eyes and mouth corners (all that the FFHQ quad uses) frame a face of ``side`` px."""
    lm = np.tile([cx, cy], (68, 1)).astype(np.float64)
    lm[36:42] = [cx - 0.12 * side, cy - 0.05 * side]
    lm[42:48] = [cx + 0.12 * side, cy - 0.05 * side]
    lm[48], lm[54] = [cx - 0.1 * side, cy + 0.2 * side], [cx + 0.1 * side, cy + 0.2 * side]
    return lm


class ThreeFaces:
    """Three faces on a 360 px wide photo (descriptors: 1 = stranger, 0 = the person, -1 = stranger);
    on a 240 px wide one, the two strangers only."""

    def analyze(self, image, describe=True):
        width = image.shape[1]
        faces = []
        for cx, side, d in zip(CENTRES, SIDES, (1.0, 0.0, -1.0)):
            if width == 240 and d == 0.0:
                continue
            cx = cx if width == 360 else (60 if d > 0 else 180)
            box = FaceBox(cx - side / 2, 80 - side / 2, cx + side / 2, 80 + side / 2, 1.0 + d)
            faces.append(SimpleNamespace(box=box, landmarks=landmarks(cx, 80, side),
                                         descriptor=np.full(4, d) if describe else None))  # fmt: skip
        return faces


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 0


def test_faces_person_all_largest_with_stand_in_faces(tmp_path, monkeypatch):
    monkeypatch.setattr(data_faces, "_ANALYZER", {"default": ThreeFaces()})  # the default analyser
    prior = tiny_prior(tmp_path / "prior", identity=[0.05] * 4)
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    group = write_image(folder / "group.png", rng.integers(0, 255, (160, 360, 3), dtype=np.uint8))
    write_image(folder / "strangers.png", rng.integers(0, 255, (160, 240, 3), dtype=np.uint8))
    source = read_image(group)

    out = predict("invert", prior, tmp_path / "person", "--data.inputs", str(folder))  # data.faces person: the default
    record = json.loads((out / "group" / "record.json").read_text())
    assert record["faces_mode"] == "person" and len(record["faces"]) == 3
    assert [f["selected"] for f in record["faces"]] == [False, True, False]
    assert [f["distance"] for f in record["faces"]] == [pytest.approx(1.9), pytest.approx(0.1), pytest.approx(2.1)]
    assert record["faces"][1]["action"] == "processed" and "not the person" in record["faces"][0]["action"]
    photo = read_image(out / "group" / "photo.png")
    diff = changed(photo, source)
    x0, y0, x1, y1 = record["faces"][1]["region"]
    assert diff.any() and diff.sum() <= record["changed_pixels"] and not diff[:, :x0].any() and not diff[:, x1:].any()
    assert 100 < x0 < 180 < x1 < 260  # the person's face, in the middle; the strangers' are untouched
    assert {"crop.png", "input.png", "photo.png"} <= set(record["files"])
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "strangers" and "no face of the person: closest 1.90, threshold 0.58" in failed["error"]
    assert str(folder / "strangers.png") in failed["error"]

    out = predict("invert", prior, tmp_path / "all", "--data.inputs", str(folder), "--data.faces", "all")
    record = json.loads((out / "group" / "record.json").read_text())
    assert all(f["selected"] for f in record["faces"]) and all("steps_used" in f["result"] for f in record["faces"])
    assert {f"crop_face{i}.png" for i in range(3)} <= set(record["files"]) and "input_face2.png" in record["files"]
    diff = changed(read_image(out / "group" / "photo.png"), source)
    assert all(diff[:, cx - 5 : cx + 5].any() for cx in CENTRES)
    union = np.zeros_like(diff)
    for f in record["faces"]:
        x0, y0, x1, y1 = f["region"]
        union[y0:y1, x0:x1] = True
    assert not diff[~union].any()  # outside the pasted regions: the input's pixels
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_done"] == 2 and summary["num_failed"] == 0  # all: the strangers' photo is processed too

    out = predict("invert", prior, tmp_path / "largest", "--data.inputs", str(group), "--data.faces", "largest")
    record = json.loads((out / "group" / "record.json").read_text())
    assert [f["selected"] for f in record["faces"]] == [False, False, True]
    assert not changed(read_image(out / "group" / "photo.png"), source)[:, :240].any()


def test_faces_option_is_checked(tmp_path):
    prior = tiny_prior(tmp_path / "prior", identity=[0.0] * 4)
    photo = write_image(tmp_path / "in" / "a.png", np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(ValueError, match="data.faces must be one of person, all, largest"):
        predict("invert", prior, tmp_path / "o1", "--data.inputs", str(photo), "--data.faces", "everyone")
    with pytest.raises(ValueError, match="give data.faces .* or data.face"):
        predict("invert", prior, tmp_path / "o2", "--data.inputs", str(photo), "--data.faces", "all", "--data.face", "1")


def test_real_group_photo_only_the_person_changes(shared_data, tmp_path):
    """Albums 00027, 00001, 00049 side by side; the tiny prior's identity is album 00001's."""
    photo, centre, _ = three_people_photo(shared_data)
    prior = tiny_prior(tmp_path / "prior", identity=centre)
    folder = tmp_path / "in"
    group = write_image(folder / "group.png", photo)
    write_image(folder / "others.png", np.concatenate([photo[:, :240], photo[:, 480:]], axis=1))

    out = predict("invert", prior, tmp_path / "person", "--data.inputs", str(folder), "--data.faces", "person")
    record = json.loads((out / "group" / "record.json").read_text())
    assert [f["selected"] for f in record["faces"]] == [False, True, False], record["faces"]
    result = read_image(out / "group" / "photo.png")
    assert np.array_equal(result[:, :240], photo[:, :240]) and np.array_equal(result[:, 480:], photo[:, 480:])
    diff = changed(result, photo)
    x0, y0, x1, y1 = record["faces"][1]["region"]
    outside = np.ones_like(diff)
    outside[y0:y1, x0:x1] = False
    assert diff.any() and not diff[outside].any()
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "others" and "no face of the person: closest 0." in failed["error"]

    out = predict("invert", prior, tmp_path / "all", "--data.inputs", str(group), "--data.faces", "all")
    diff = changed(read_image(out / "group" / "photo.png"), photo)
    assert all(diff[:, 240 * k : 240 * (k + 1)].any() for k in range(3))


def test_run_photo_from_python(tmp_path):
    """``mystyle_pl.run_photo``: the Python side of --data.faces (identity from the prior)."""
    from mystyle_pl import run_photo

    prior = PersonalPrior.load(tiny_prior(tmp_path / "prior", identity=[0.05] * 4))
    photo = np.random.default_rng(1).integers(0, 255, (160, 360, 3), dtype=np.uint8)
    result = run_photo(prior, photo, "invert", analyzer=ThreeFaces(), steps=1, lpips_weight=0.0)
    assert [f.selected for f in result.faces] == [False, True, False]
    assert np.array_equal(result.photo[~result.changed], photo[~result.changed]) and result.changed[:, 120:240].any()
