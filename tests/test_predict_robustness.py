"""``predict`` on awkward inputs: huge photos, group photos, failures while writing, SIGTERM.

Face detection is replaced by a stub analyser (synthetic landmarks and descriptors), installed
as the process's default one, so these run without dlib on tiny seeded priors; runs go through
the real command line (``mystyle_pl.cli.dispatch``, or ``python cli.py`` in a subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mystyle_pl.cli import dispatch
from mystyle_pl.data.align import AlignTransform, paste_back
from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data import faces as data_faces
from mystyle_pl.data.faces import FaceBox
from mystyle_pl.data.io import read_image, to_tensor, to_uint8, write_image
from mystyle_pl.predict import NoUsableInputError, PredictInterrupted, stop
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tasks import pasteback
from mystyle_pl.tasks.pasteback import (
    NotThePersonError,
    TaskPhoto,
    choose_face,
    load_task_photo,
    paste_into_photo,
    pasted_size,
)

from .helpers import REPO_ROOT, make_tiny_stylegan2

R = 32
# pivotal tuning off (50 generator steps per photo in invert's preset; not what these tests are about: test_predict.py)
FAST = ["--model.task.steps", "3", "--model.task.lpips_weight", "0", "--model.task.pivotal_steps", "0"]
CENTRE = np.linspace(-0.1, 0.1, 8)  # the prior's identity (an 8-d stand-in for dlib's 128-d descriptor)


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])


def tiny_prior(path: Path, identity: np.ndarray | None = CENTRE) -> Path:
    g = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = g.mapping(torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(0)))
    info = {} if identity is None else {"identity": {"centre": identity.tolist(), "source": "test"}}
    return PersonalPrior(g, Anchors(w=w, names=[f"{i}.png" for i in range(4)]), info=info).save(path)


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    return tiny_prior(tmp_path_factory.mktemp("prior") / "prior")


def landmarks(cx: float, cy: float, eye: float) -> np.ndarray:
    """68 points with the eyes ``eye`` px apart around (cx, cy) and the mouth below (what alignment uses)."""
    lm = np.zeros((68, 2))
    lm[36:42] = [cx - eye / 2, cy]
    lm[42:48] = [cx + eye / 2, cy]
    lm[48], lm[54] = [cx - 0.4 * eye, cy + eye], [cx + 0.4 * eye, cy + eye]
    return lm


def face(cx: float, cy: float, eye: float, score: float, descriptor) -> SimpleNamespace:
    box = FaceBox(cx - eye, cy - eye, cx + eye, cy + 1.5 * eye, score)
    return SimpleNamespace(box=box, landmarks=landmarks(cx, cy, eye), descriptor=np.asarray(descriptor, float))


class StubAnalyzer:
    """Faces by the photo's width: 160 px = the person (left) beside a more confident stranger
    (right); 120 px = two strangers; anything else = one face of the person in the middle."""

    def __init__(self):
        self.calls = []

    def analyze(self, image, describe=True):
        h, w = image.shape[:2]
        self.calls.append((w, h, describe))
        person, stranger = CENTRE + 0.05, CENTRE + 1.0
        if w == 160:
            return [face(120, 30, 10, 2.5, stranger), face(40, 30, 10, 1.2, person)]
        if w == 120:
            return [face(30, 30, 10, 2.0, stranger), face(90, 30, 10, 1.0, CENTRE - 1.0)]
        return [face(w / 2, h / 2 - 2, max(4.0, w / 16), 2.0, person)]


@pytest.fixture
def stub_faces(monkeypatch) -> StubAnalyzer:
    stub = StubAnalyzer()
    monkeypatch.setattr(data_faces, "_ANALYZER", {"default": stub})  # the default analyser
    return stub


def noise_photo(path: Path, h: int, w: int, seed: int = 0) -> Path:
    return write_image(path, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def predict(task: str, prior_dir: Path, out: Path, *args: str) -> Path:
    argv = ["predict", "--config", str(REPO_ROOT / "configs" / "predict" / f"{task}.yaml"), "--model.prior", str(prior_dir),
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", *args]  # fmt: skip
    assert dispatch(argv) == 0
    return out


def png(path: Path) -> np.ndarray:
    return read_image(path)


# ------------------------------------------------------------------ the right face


def test_choose_face_takes_the_person_warns_and_refuses_strangers():
    person = face(40, 30, 10, 1.0, CENTRE + 0.05)
    stranger = face(120, 30, 10, 3.0, CENTRE + 1.0)
    choice = choose_face([stranger, person], "g.jpg", centre=CENTRE)
    assert choice.index == 0 and choice.reason == "closest to the prior's identity"
    assert [f.index for f in choice.faces] == [0, 1] and choice.faces[0].source == 1  # left to right
    assert "g.jpg: 2 faces found" in choice.warning and "distance 0.14" in choice.warning and "distance 2.83" in choice.warning
    # One face of the person: no warning. Strangers only: refused, with the faces and a remedy.
    assert choose_face([person], "p.jpg", centre=CENTRE).warning is None
    with pytest.raises(NotThePersonError, match=r"s\.jpg: none of the 1 face\(s\) found is the prior's person.*--data\.face N"):
        choose_face([stranger], "s.jpg", centre=CENTRE)
    # An explicit choice wins, with a warning when it is far from the identity.
    chosen = choose_face([stranger, person], "g.jpg", centre=CENTRE, face=1)
    assert chosen.index == 1 and "may be someone else" in chosen.warning
    with pytest.raises(ValueError, match=r"face 2 was asked for, but 2 face\(s\) were found"):
        choose_face([stranger, person], "g.jpg", centre=CENTRE, face=2)
    # No identity known: the most confident face, with a warning naming both.
    blind = choose_face([stranger, person], "g.jpg")
    assert blind.index == 1 and blind.reason == "most confident" and "identity is unknown" in blind.warning


def test_load_task_photo_aligns_the_chosen_face(tmp_path, stub_faces):
    path = noise_photo(tmp_path / "group.png", 64, 160)
    photo = load_task_photo(path, 16, identity=CENTRE)
    assert photo.choice.index == 0 and photo.warnings and "2 faces found" in photo.warnings[0]
    quad = np.asarray(photo.transform.quad)
    assert quad[:, 0].mean() == pytest.approx(40, abs=3)  # the left face (the person), not the confident stranger
    assert stub_faces.calls[-1][2] is True  # descriptors were computed to compare identities
    load_task_photo(path, 16)  # no identity: no descriptors needed
    assert stub_faces.calls[-1][2] is False


def test_predict_pastes_the_person_not_the_stranger(prior_dir, tmp_path, stub_faces):
    folder = tmp_path / "in"
    noise_photo(folder / "group.png", 64, 160, seed=1)
    noise_photo(folder / "strangers.png", 64, 120, seed=2)
    out = predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), *FAST)
    record = json.loads((out / "group" / "record.json").read_text())  # data.faces person (the default)
    assert [f["selected"] for f in record["faces"]] == [True, False] and record["faces_mode"] == "person"
    assert [f["distance"] for f in record["faces"]] == [pytest.approx(0.1414, abs=1e-3), pytest.approx(2.8284, abs=1e-3)]
    assert any("2 faces found" in w for w in record["warnings"])
    photo, source = png(out / "group" / "photo.png"), read_image(folder / "group.png")
    changed = np.abs(photo.astype(int) - source).max(axis=2) > 0
    assert changed[:, :80].any() and not changed[:, 85:].any()  # the left face was replaced, the stranger kept
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "strangers" and str(folder / "strangers.png") in failed["error"]
    assert "no face of the person: closest 2.83, threshold 0.58" in failed["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_done"] == 1 and summary["num_failed"] == 1 and summary["identity"].startswith("prior.json")
    assert [w["name"] for w in summary["warnings"]] == ["group"]

    # --data.face 1 picks the stranger anyway, with a warning.
    out = predict("invert", prior_dir, tmp_path / "chosen", "--data.inputs", str(folder / "group.png"), "--data.face", "1", *FAST)
    record = json.loads((out / "group" / "record.json").read_text())
    assert record["face"]["index"] == 1 and "may be someone else" in record["warnings"][0]


# ------------------------------------------------------------------ the prior's identity


def test_prior_identity_from_the_album_manifest_then_the_renders(tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    (album / "manifest.json").write_text(json.dumps({"format": "mystyle_pl.album", "identity": {"centre": [0.5, -0.5]}}))
    g = make_tiny_stylegan2(resolution=R, seed=0)
    anchors = Anchors(w=g.mapping(torch.randn(5, g.z_dim)).detach(), names=[f"{i}.png" for i in range(5)])
    saved = PersonalPrior(g, anchors, info={"album": str(album)}).save(tmp_path / "p1")
    info = json.loads((saved / "prior.json").read_text())
    assert info["identity"]["centre"] == [0.5, -0.5] and "manifest.json" in info["identity"]["source"]
    centre, note = PersonalPrior.load(saved).identity_centre(saved)
    assert centre == [0.5, -0.5] and note.startswith("prior.json")

    # An old bundle without it, whose album is gone: the anchors' renders are described.
    old = PersonalPrior(g, anchors, info={"album": str(tmp_path / "gone")}).save(tmp_path / "p2")
    describer = SimpleNamespace(analyze=lambda image, describe=True: [SimpleNamespace(descriptor=np.full(3, 0.2))])
    centre, note = PersonalPrior.load(old).identity_centre(old, renders=3, analyzer=describer)
    assert np.allclose(centre, 0.2) and "3 of 3 renders of the anchors" in note
    nobody = SimpleNamespace(analyze=lambda image, describe=True: [])
    centre, note = PersonalPrior.load(old).identity_centre(old, renders=3, analyzer=nobody)
    assert centre is None and "no face found in 3 renders" in note and "no album manifest" in note


# ------------------------------------------------------------------ memory: the photo's size


def synthetic_photo(h: int, w: int) -> TaskPhoto:
    """A noise photo whose face quad is a 24 px square around (w/2, h/2)."""
    photo = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cx, cy, s = w / 2, h / 2, 12
    quad = [[cx - s, cy - s], [cx - s, cy + s], [cx + s, cy + s], [cx + s, cy - s]]
    return TaskPhoto("p", None, torch.zeros(3, R, R), photo, AlignTransform(quad=quad, source_size=(w, h), resolution=R))


def test_paste_back_converts_only_the_face_region_and_caps_the_photo(monkeypatch):
    tp = synthetic_photo(300, 400)
    crop = torch.rand(3, R, R) * 2 - 1
    # Without enlargement: exactly what pasting into the whole photo gives.
    whole, _ = paste_back(to_tensor(tp.photo), crop[None], tp.transform)
    assert np.array_equal(paste_into_photo(tp, crop), to_uint8(whole)[0])

    sizes = []
    real = pasteback.to_tensor
    monkeypatch.setattr(pasteback, "to_tensor", lambda a, *args, **kw: sizes.append(np.asarray(a).size) or real(a, *args, **kw))
    out = paste_into_photo(tp, crop, upscale=8, max_pixels=1_000_000)
    assert out.shape[:2] == pasted_size(300, 400, 8, 1_000_000) == (866, 1154)  # not 2400 x 3200
    assert max(sizes) <= 3 * (24 * 1154 / 400 + 8) ** 2  # floats only for the face's box, never the photo
    assert out.dtype == np.uint8
    # Far from the face: the photo enlarged; on the face: the result.
    assert not np.array_equal(out[400:460, 550:600], np.zeros((60, 50, 3), np.uint8))
    uncapped = paste_into_photo(tp, crop, upscale=2, max_pixels=None)
    assert uncapped.shape == (600, 800, 3)


def test_huge_photo_is_capped_with_a_warning_and_the_batch_goes_on(prior_dir, tmp_path, stub_faces):
    folder = tmp_path / "in"
    noise_photo(folder / "a_small.png", 48, 64, seed=1)
    noise_photo(folder / "b_huge.png", 300, 400, seed=2)
    noise_photo(folder / "c_small.png", 48, 64, seed=3)
    out = predict("superres", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.factor", "4",
                  "--data.batch_size", "1", "--data.max_photo_pixels", "500000", *FAST)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_done"] == 3 and summary["num_failed"] == 0
    assert png(out / "a_small" / "photo.png").shape == (4 * 48, 4 * 64, 3)  # under the cap: x4
    huge = png(out / "b_huge" / "photo.png")
    assert huge.shape[:2] == pasted_size(300, 400, 4, 500_000) and huge.shape[0] * huge.shape[1] <= 500_000
    record = json.loads((out / "b_huge" / "record.json").read_text())
    assert record["photo_size"] == [huge.shape[1], huge.shape[0]] and record["photo_scale"] < 4
    (warning,) = [w for w in summary["warnings"] if w["name"] == "b_huge"]
    assert "photo.png would be 1600x1200" in warning["warning"] and "--data.max_photo_pixels" in warning["warning"]


def test_out_of_memory_in_paste_back_fails_that_input_only(prior_dir, tmp_path, stub_faces, monkeypatch):
    folder = tmp_path / "in"
    for i, name in enumerate(["a", "b", "c"]):
        noise_photo(folder / f"{name}.png", 48, 64, seed=i)
    from mystyle_pl.predict import faces as predict_faces

    # Photos aligned here go through the per-face paste (data.faces, default "person"), which the
    # writer calls as predict.faces.paste_faces.
    real = predict_faces.paste_faces

    def paste(pred, *args, **kwargs):
        if pred.item.name == "b":
            raise MemoryError()  # what numpy raises for a 9.4 GB photo
        return real(pred, *args, **kwargs)

    monkeypatch.setattr(predict_faces, "paste_faces", paste)
    out = predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.batch_size", "1", *FAST)
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "b" and failed["error"].startswith(f"{folder / 'b.png'}: out of memory (paste-back)")
    assert "--data.max_photo_pixels" in failed["error"]
    assert (out / "a" / "photo.png").is_file() and (out / "c" / "photo.png").is_file() and not (out / "b").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written folder left


def test_out_of_memory_in_a_projection_batch_retries_one_by_one(prior_dir, tmp_path, monkeypatch):
    from mystyle_pl.predict import PersonalPredictor

    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"f{i}.png", torch.rand(3, R, R) * 2 - 1)
    real = PersonalPredictor.predict_items

    def spec_predict(self, items):
        if len(items) > 1 or items[0].name == "f1":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")
        return real(self, items)

    monkeypatch.setattr(PersonalPredictor, "predict_items", spec_predict)
    out = predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.batch_size", "3", *FAST)
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "f1" and "out of memory (projection)" in failed["error"] and str(folder / "f1.png") in failed["error"]
    assert sorted(d["name"] for d in json.loads((out / "summary.json").read_text())["done"]) == ["f0", "f2"]

    # A bug (not memory) is not swallowed.
    monkeypatch.setattr(PersonalPredictor, "predict_items", lambda self, items: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        predict("invert", prior_dir, tmp_path / "bug", "--data.inputs", str(folder), *FAST)


def test_no_usable_input_is_one_line(prior_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.png", "y.png"):
        (folder / name).write_bytes(b"not an image")
    with pytest.raises(NoUsableInputError) as info:
        predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), *FAST)
    message = str(info.value)
    assert "\n" not in message and "x.png" in message and str(tmp_path / "out" / "failed.json") in message


# ------------------------------------------------------------------ SIGTERM


def test_a_stop_request_finishes_the_batch_and_lists_the_rest(prior_dir, tmp_path, monkeypatch):
    """In process: a stop requested during the first batch (as SIGTERM does) ends the run after it."""
    from mystyle_pl.predict import PersonalPredictor

    folder = tmp_path / "in"
    for i in range(4):
        write_image(folder / f"f{i}.png", torch.rand(3, R, R) * 2 - 1)
    real = PersonalPredictor.predict_items

    def spec_predict(self, items):
        stop.request("SIGTERM")
        return real(self, items)

    monkeypatch.setattr(PersonalPredictor, "predict_items", spec_predict)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(PredictInterrupted, match=r"stopped by SIGTERM after 2 result\(s\).*2 input\(s\) not processed"):
        predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.batch_size", "2", *FAST)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["num_done"] == 2 and summary["num_not_done"] == 2
    failed = json.loads((tmp_path / "out" / "failed.json").read_text())
    assert [(f["name"], f["not_done"]) for f in failed] == [("f2", True), ("f3", True)]
    assert failed[0]["source"] == str(folder / "f2.png") and "stopped (SIGTERM)" in failed[0]["error"]


def test_ctrl_c_also_writes_the_lists(prior_dir, tmp_path, monkeypatch):
    from mystyle_pl.predict import PersonalPredictor

    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"f{i}.png", torch.rand(3, R, R) * 2 - 1)
    real = PersonalPredictor.predict_items

    def spec_predict(self, items):
        if items[0].name == "f1":
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(PersonalPredictor, "predict_items", spec_predict)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown after Ctrl-C
            predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.batch_size", "1", *FAST)
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C during its shutdown
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT (Ctrl-C)" and summary["num_done"] == 1 and summary["num_not_done"] == 2


@pytest.mark.slow
def test_sigterm_mid_run_writes_the_summary_and_exits_143(prior_dir, tmp_path):
    folder = tmp_path / "in"
    n = 6
    for i in range(n):
        write_image(folder / f"face{i}.png", torch.rand(3, R, R) * 2 - 1)
    out = tmp_path / "out"
    args = [sys.executable, str(REPO_ROOT / "cli.py"), "predict", "--config", str(REPO_ROOT / "configs/predict/invert.yaml"),
            "--model.prior", str(prior_dir), "--data.inputs", str(folder), "--data.batch_size", "1",
            "--data.num_workers", "2", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--model.task.steps", "200", "--model.task.patience", "100000",
            "--model.task.lpips_weight", "0", "--model.task.pivotal_steps", "0"]  # fmt: skip
    # 200 steps: ~2-3 s per face on a 2-core CPU, so after the first face the 5 others leave ample time for the
    # SIGTERM (sent within 0.2 s of face0's record) to arrive mid-run; the batch in progress is finished, the rest not.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: a full pipe would block the program
        # Its own process group: SIGTERM goes to the program and its DataLoader workers, as a scheduler sends it.
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO_ROOT, start_new_session=True)
        try:
            deadline = time.time() + 240
            while not (out / "face0" / "record.json").is_file():  # the first input is done: we are mid-run
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "the first result never appeared: " + log.read_text()[-3000:]
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    stderr = log.read_text()
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "mystyle-pl: stopped by SIGTERM" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and 1 <= summary["num_done"] < n
    assert summary["num_done"] + summary["num_not_done"] == n and summary["num_failed"] == 0
    failed = json.loads((out / "failed.json").read_text())
    assert len(failed) == summary["num_not_done"] and all(f["not_done"] for f in failed)
    done = {d["name"] for d in summary["done"]}
    assert all((out / name / "record.json").is_file() for name in done)
    assert {f["name"] for f in failed} == {f"face{i}" for i in range(n)} - done
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ evaluate: the same record of failures


def test_evaluate_records_unusable_photos_in_failed_json(prior_dir, tmp_path):
    from mystyle_pl.evaluation import evaluate
    from mystyle_pl.losses import LPIPS
    from mystyle_pl.metrics import IdentityScorer

    folder = tmp_path / "photos"
    write_image(folder / "good.png", torch.rand(3, R, R) * 2 - 1)
    (folder / "broken.png").write_bytes(b"not an image")
    lp = LPIPS("alex", pretrained=False)
    result = evaluate(prior_dir, folder, tasks=["superres-x8"], out=tmp_path / "e", methods=["baseline"], resolution=R,
                      steps=1, betas=None, identity=IdentityScorer(descriptor_fn=lambda image: np.ones(4)), lpips=lp,
                      metric_lpips=lp, device="cpu", progress=False)  # fmt: skip
    (failed,) = json.loads((tmp_path / "e" / "failed.json").read_text())
    assert failed["source"] == str(folder / "broken.png") and "not a recognised image format" in failed["error"]
    assert result.metrics["settings"]["photos"] == 1


@pytest.mark.slow
def test_a_photo_of_two_real_people_takes_the_priors_person(shared_data, tmp_path):
    """dlib on real faces: the person of album 00027 beside the person of 00001."""
    pytest.importorskip("dlib", reason="face detection needs dlib")
    from PIL import Image

    from mystyle_pl.data.curate import dominant_identity
    from mystyle_pl.data.faces import FaceAnalyzer, FaceModelsUnavailable, check_face_models

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    analyzer = FaceAnalyzer()

    def centre_of(album: str) -> np.ndarray:
        refs = sorted((shared_data / "albums" / album / "refs").iterdir())[:3]
        found = [analyzer.analyze(read_image(f)) for f in refs]
        return dominant_identity([np.stack([f.descriptor for f in faces]) for faces in found if faces])[0]

    canvas = Image.new("RGB", (900, 420), (90, 110, 130))
    for album, x in (("00001", 40), ("00027", 520)):
        canvas.paste(Image.open(shared_data / "albums" / album / "gt.png").convert("RGB").resize((320, 320)), (x, 50))
    photo = tmp_path / "in" / "pair.png"
    photo.parent.mkdir()
    canvas.save(photo)
    out = predict("invert", tiny_prior(tmp_path / "p27", centre_of("00027")), tmp_path / "out",
                  "--data.inputs", str(photo), *FAST)  # fmt: skip
    record = json.loads((out / "pair" / "record.json").read_text())
    assert [f["selected"] for f in record["faces"]] == [False, True]
    distances = [f["distance"] for f in record["faces"]]
    assert distances[1] < 0.58 <= distances[0]
    changed = np.abs(png(out / "pair" / "photo.png").astype(int) - read_image(photo)).max(axis=2) > 0
    assert changed[:, 520:].any() and not changed[:, :400].any()
    # A prior of someone else in neither: refused, not pasted over either of them.
    with pytest.raises(NoUsableInputError, match="no face of the person: closest 0"):
        predict("invert", tiny_prior(tmp_path / "p49", centre_of("00049")), tmp_path / "out49",
                "--data.inputs", str(photo), *FAST)  # fmt: skip
