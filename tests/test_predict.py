"""``mystyle-pl predict`` (LightningCLI) for every task on a tiny seeded prior: CPU, a few steps.

Every run goes through the real command line (``mystyle_pl.cli.main``) with the shipped
``configs/predict/<task>.yaml``; only the step budget, the device and the output folder are
overridden.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mystyle_pl.cli import dispatch
from mystyle_pl.data.align import AlignTransform
from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.io import read_image, to_tensor, write_image
from mystyle_pl.predict import NoUsableInputError
from mystyle_pl.predict.data import mask_to_crop, unique_names
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tasks.pasteback import TaskPhoto
from mystyle_pl.tasks.superres import area_downsample

from .helpers import REPO_ROOT, make_tiny_stylegan2

R = 32
N_ANCHORS = 4
# Pivotal tuning (50 generator steps per photo in the quick and pplus presets' invert and edit) is off where it is not
# under test; the invert and edit tests below run it for a few steps and check it reached the task.
FAST = ["--model.task.steps", "5", "--model.task.lpips_weight", "0", "--model.task.pivotal_steps", "0"]
PIVOTAL = ["--model.task.pivotal_steps", "3"]


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI warns when it gets ``args`` while ``sys.argv`` holds pytest's options."""
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    generator = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = generator.mapping(torch.randn(N_ANCHORS, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    prior = PersonalPrior(generator, Anchors(w=w, names=[f"{i}.png" for i in range(N_ANCHORS)]))
    return prior.save(tmp_path_factory.mktemp("prior") / "prior")


@pytest.fixture(scope="module")
def prior(prior_dir) -> PersonalPrior:
    return PersonalPrior.load(prior_dir)


def render(prior: PersonalPrior, coefficients) -> torch.Tensor:
    """Faces of the person ``[B, 3, R, R]`` at convex combinations of the anchors."""
    a = torch.tensor(coefficients, dtype=torch.float32)
    with torch.no_grad():
        return prior.generator.synthesis(prior.generator.broadcast_w(a @ prior.w), noise_mode="const")


@pytest.fixture(scope="module")
def faces(prior, tmp_path_factory) -> Path:
    """A folder with two aligned crops of the person and one corrupt file."""
    folder = tmp_path_factory.mktemp("faces")
    images = render(prior, [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    write_image(folder / "alice.png", images[0])
    write_image(folder / "bob.png", images[1])
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def predict(task: str, prior_dir: Path, out: Path, *args: str) -> Path:
    argv = [
        "predict", "--config", str(REPO_ROOT / "configs" / "predict" / f"{task}.yaml"),
        "--model.prior", str(prior_dir), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false", *args,
    ]  # fmt: skip
    if task != "sample" and "--data.num_workers" not in args:
        argv += ["--data.num_workers", "0"]
    assert dispatch(argv) == 0  # dispatch: errors propagate (main turns them into one line, see test_cli_errors.py)
    return out


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ------------------------------------------------------------------ invert


def test_invert_writes_each_input_and_skips_a_broken_file(prior_dir, prior, faces, tmp_path):
    before = tree(faces)
    # the paper's P+ (preset pplus): the latents are the anchors' coefficients
    out = predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(faces), *FAST, "--model.task.preset", "pplus",
                  *PIVOTAL)  # fmt: skip
    assert tree(faces) == before  # nothing written beside the inputs
    g = prior.generator
    for name in ("alice", "bob"):
        folder = out / name
        assert {p.name for p in folder.iterdir()} == {"crop.png", "input.png", "latents.safetensors", "record.json"}
        assert png(folder / "crop.png").shape == (R, R, 3)
        assert np.array_equal(png(folder / "input.png"), read_image(faces / f"{name}.png"))
        latents = load_file(folder / "latents.safetensors")
        assert latents["ws"].shape == (g.num_ws, g.w_dim)
        assert latents["coefficients"].shape == (g.num_ws, N_ANCHORS)
        assert torch.allclose(latents["coefficients"] @ prior.w, latents["ws"], atol=1e-4)
        record = json.loads((folder / "record.json").read_text())
        assert record["task"] == "invert" and record["name"] == name and record["steps_used"] == 5
        assert record["source"] == str(faces / f"{name}.png") and record["prior"] == str(prior_dir)
        assert record["settings"]["steps"] == 5 and record["settings"]["lpips_weight"] == 0
        assert record["pivotal_steps"] == 3  # the generator was tuned on the photo (PTI), as many steps as asked
        assert np.isfinite(record["final_loss"]) and record["aligned_here"] is False
        assert set(record["files"]) == {"crop.png", "input.png", "latents.safetensors", "record.json"}
    assert not (out / "broken").exists()
    failed = json.loads((out / "failed.json").read_text())
    assert [f["name"] for f in failed] == ["broken"] and str(faces / "broken.png") in failed[0]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_done"] == 2 and summary["num_failed"] == 1 and summary["task"] == "invert"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_every_input_failing_is_an_error(prior_dir, faces, tmp_path):
    with pytest.raises(NoUsableInputError, match="broken.png: not a recognised image format"):
        predict("invert", prior_dir, tmp_path / "out", "--data.inputs", str(faces / "broken.png"), *FAST)
    assert json.loads((tmp_path / "out" / "failed.json").read_text())[0]["name"] == "broken"


def test_output_inside_the_input_folder_is_refused(prior_dir, faces):
    with pytest.raises(ValueError, match="inside the input folder"):
        predict("invert", prior_dir, faces / "results", "--data.inputs", str(faces), *FAST)
    assert not (faces / "results").exists()


# ------------------------------------------------------------------ super-resolution


def test_superres_result_matches_the_low_resolution_input(prior_dir, prior, tmp_path):
    factor, size = 4, R // 4
    hi = render(prior, [[0.5, 0.1, 0.1, 0.3]])
    folder = tmp_path / "in"
    write_image(folder / "small.png", area_downsample(hi, size)[0])
    write_image(folder / "huge.png", torch.zeros(3, 2 * R, 2 * R))  # larger than the generator
    out = predict(
        "superres", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.factor", str(factor),
        "--model.task.steps", "60", "--model.task.lpips_weight", "0", "--model.task.face_weight", "1.0",
    )  # fmt: skip  (the default preset, quick: W+ anchored; uniform loss weights, the tiny faces are not real ones)
    result = out / "small"
    crop = to_tensor(png(result / "crop.png"))
    assert crop.shape == (1, 3, R, R) and png(result / "input.png").shape == (size, size, 3)
    y = to_tensor(png(result / "input.png"))
    err = (area_downsample(crop, size) - y).square().mean()
    other = render(prior, [[0.0, 0.0, 0.0, 1.0]])
    baseline = (area_downsample(other, size) - y).square().mean()
    assert err < 0.25 * baseline
    assert png(result / "degraded.png").shape == (size, size, 3)
    record = json.loads((result / "record.json").read_text())
    assert record["factor"] == factor and record["input_size"] == [size, size]
    (failed,) = json.loads((out / "failed.json").read_text())
    assert "huge.png" in failed["error"] and "larger than the generator's resolution 32" in failed["error"]


def test_superres_output_size_follows_factor_or_output_resolution(prior_dir, prior, tmp_path):
    """Any face smaller than the generator: --data.factor sets the result's side (input x factor),
    --data.output_resolution sets it when no factor is given (the evaluation's 32 px -> 256 px protocol)."""
    hi = render(prior, [[0.5, 0.1, 0.1, 0.3]])
    folder = tmp_path / "in"
    write_image(folder / "face4.png", area_downsample(hi, 4)[0])
    fast = ["--model.task.steps", "3", "--model.task.lpips_weight", "0"]
    out = predict("superres", prior_dir, tmp_path / "a", "--data.inputs", str(folder), "--data.factor", "4", *fast)
    assert png(out / "face4" / "crop.png").shape == (16, 16, 3)  # 4 px x 4, below the generator's 32
    assert json.loads((out / "face4" / "record.json").read_text())["factor"] == 4
    out = predict("superres", prior_dir, tmp_path / "b", "--data.inputs", str(folder), "--data.output_resolution", "16", *fast)
    assert png(out / "face4" / "crop.png").shape == (16, 16, 3)
    assert json.loads((out / "face4" / "record.json").read_text())["factor"] == 4
    with pytest.raises(Exception, match="x3 gives 12 px, which must divide the generator's resolution 32"):
        predict("superres", prior_dir, tmp_path / "c", "--data.inputs", str(folder), "--data.factor", "3", *fast)


# ------------------------------------------------------------------ inpainting


def test_inpaint_keeps_the_known_pixels_and_names_bad_masks(prior_dir, prior, faces, tmp_path):
    hole = np.zeros((R, R), np.uint8)
    hole[8:20, 10:24] = 255  # white = hole
    Image.fromarray(hole).save(tmp_path / "mask.png")
    out = predict(
        "inpaint", prior_dir, tmp_path / "out", "--data.inputs", str(faces / "alice.png"),
        "--data.mask", str(tmp_path / "mask.png"), *FAST,
    )  # fmt: skip
    folder = out / "alice"
    crop, inp = png(folder / "crop.png"), png(folder / "input.png")
    known = hole == 0
    assert np.array_equal(crop[known], inp[known])  # outside the hole: the input, exactly
    assert (png(folder / "mask.png")[..., 0] == hole).all()  # white = hole, on the crop
    assert png(folder / "generated.png").shape == (R, R, 3)
    record = json.loads((folder / "record.json").read_text())
    assert record["hole_fraction"] == pytest.approx(hole.astype(bool).mean())

    # Boxes instead of a PNG, in the input's pixels.
    out = predict("inpaint", prior_dir, tmp_path / "boxes", "--data.inputs", str(faces / "bob.png"),
                  "--data.boxes", '["4,4,12,12"]', *FAST)  # fmt: skip
    assert (png(out / "bob" / "mask.png")[4:12, 4:12] == 255).all()

    # A mask of the wrong size, an empty mask and a full one: each an error naming the input.
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((R, R), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.full((R, R), 255, np.uint8)).save(tmp_path / "full.png")
    for mask, reason in [("small.png", "mask size mismatch"), ("empty.png", "is empty"), ("full.png", "is full")]:
        with pytest.raises(NoUsableInputError, match=reason) as info:
            predict("inpaint", prior_dir, tmp_path / f"out_{mask}", "--data.inputs", str(faces / "alice.png"),
                    "--data.mask", str(tmp_path / mask), *FAST)  # fmt: skip
        assert str(faces / "alice.png") in str(info.value) and mask in str(info.value)


def test_masks_on_the_photo_follow_the_alignment():
    # A 64 x 64 "photo" whose aligned crop covers [16, 48) x [16, 48): at 32 px one crop pixel per photo pixel.
    transform = AlignTransform(
        quad=[[15.5, 15.5], [15.5, 47.5], [47.5, 47.5], [47.5, 15.5]], source_size=(64, 64), resolution=32
    )
    photo = TaskPhoto(
        name="p", path=None, image=torch.zeros(3, 32, 32), photo=np.zeros((64, 64, 3), np.uint8), transform=transform
    )
    known = torch.ones(1, 1, 64, 64)
    known[..., 20:30, 24:40] = 0  # a hole in photo pixels
    crop = mask_to_crop(known, photo, 32)
    expected = torch.ones(1, 1, 32, 32)
    expected[..., 4:14, 8:24] = 0
    assert torch.equal(crop, expected)
    # An aligned crop of another size is resized (a hole never vanishes).
    small = TaskPhoto(name="c", path=None, image=torch.zeros(3, 32, 32), photo=None, transform=None)
    known = torch.ones(1, 1, 64, 64)
    known[..., 10, 10] = 0
    assert mask_to_crop(known, small, 32)[0, 0, 5, 5] == 0


# ------------------------------------------------------------------ editing


def test_edit_writes_one_image_per_strength_and_a_strip(prior_dir, prior, faces, tmp_path):
    direction = (prior.w[0] - prior.w[1]).numpy()[None]
    np.save(tmp_path / "d.npy", direction)
    out = predict(
        "edit", prior_dir, tmp_path / "out", "--data.inputs", str(faces / "alice.png"),
        "--model.task.direction", str(tmp_path / "d.npy"), "--model.task.strengths", "[-1, 0, 1.5]", *FAST, *PIVOTAL,
    )  # fmt: skip
    folder = out / "alice"
    keys = ["strength_-1", "strength_+0", "strength_+1.5"]
    for key in keys:
        assert png(folder / f"{key}.png").shape == (R, R, 3)
    strip = png(folder / "strip.png")
    assert strip.shape == (R, 3 * R, 3)
    assert np.array_equal(strip[:, R : 2 * R], png(folder / "strength_+0.png"))
    g = prior.generator
    latents = load_file(folder / "latents.safetensors")
    assert latents["ws"].shape == (3, g.num_ws, g.w_dim) and latents["projection_ws"].shape == (g.num_ws, g.w_dim)
    assert latents["direction"].shape == (g.w_dim,) and latents["strengths"].tolist() == [-1.0, 0.0, 1.5]
    record = json.loads((folder / "record.json").read_text())
    assert record["strengths"] == [-1.0, 0.0, 1.5] and len(record["applied"]) == 3 and record["policy"] == "project"
    assert record["pivotal_steps"] == 3  # the edits are rendered by the photo's tuned generator (PTI)
    assert record["precision"] == "32"  # editing's tuning renders float32 (tasks.presets EDIT)
    # consistency: the projection (strength 0) against the input crop, as the saved PNGs give it; 8-bit rounding of
    # both files (and the invisible mark on the result) moves a PSNR in the 10-30 dB range by far less than 1 dB
    saved = png(folder / "crop.png").astype(np.float64) - png(folder / "input.png").astype(np.float64)
    assert abs(record["consistency"] - 10 * np.log10(255.0**2 / np.mean(saved**2))) < 1.0

    # A direction of the wrong size: an error naming the file, before any input is read.
    np.save(tmp_path / "bad.npy", np.zeros((1, g.w_dim + 3), np.float32))
    with pytest.raises(ValueError, match=r"bad\.npy.*wrong size"):
        predict("edit", prior_dir, tmp_path / "bad", "--data.inputs", str(faces / "alice.png"),
                "--model.task.direction", str(tmp_path / "bad.npy"), *FAST)  # fmt: skip


# ------------------------------------------------------------------ sampling


def test_sample_draws_reproducible_images(prior_dir, prior, tmp_path):
    out = predict("sample", prior_dir, tmp_path / "out", "--data.num_samples", "3", "--data.batch_size", "2")
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["sample_0000", "sample_0001", "sample_0002"]
    g = prior.generator
    for name in names:
        latents = load_file(out / name / "latents.safetensors")
        assert latents["ws"].shape == (g.num_ws, g.w_dim) and latents["coefficients"].shape == (N_ANCHORS,)
        assert (latents["coefficients"] >= 0).all() and latents["coefficients"].sum() == pytest.approx(1.0, abs=1e-5)
        record = json.loads((out / name / "record.json").read_text())
        again = prior.sample(1, seed=record["seed"]).images  # the record's seed gives the same image
        assert np.abs(png(out / name / "crop.png").astype(int) - png_of(again)).max() <= 1


def png_of(images: torch.Tensor) -> np.ndarray:
    from mystyle_pl.data.io import to_uint8

    return to_uint8(images)[0].astype(int)


# ------------------------------------------------------------------ real photos (aligned on the fly)


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory) -> Path:
    """A real face (an aligned crop padded into a larger, non-square canvas) and a photo without a face."""
    pytest.importorskip("dlib", reason="face detection needs dlib")
    from mystyle_pl.data.faces import FaceModelsUnavailable, check_face_models

    try:
        check_face_models()
    except FaceModelsUnavailable as e:
        pytest.skip(str(e))
    face = Image.open(shared_data / "albums" / "00082" / "gt.png").convert("RGB").resize((200, 200), Image.LANCZOS)
    canvas = np.full((260, 320, 3), 90, np.uint8)
    canvas[30:230, 70:270] = np.asarray(face)
    folder = tmp_path_factory.mktemp("photos")
    write_image(folder / "person.png", canvas)
    write_image(folder / "wall.png", np.random.default_rng(0).integers(0, 255, (200, 260, 3), dtype=np.uint8))
    return folder


def test_photos_are_aligned_and_pasted_back(prior_dir, photos, tmp_path):
    out = predict(
        "invert", prior_dir, tmp_path / "invert", "--data.inputs", str(photos), "--data.num_workers", "2", *FAST
    )
    folder = out / "person"
    photo, source = png(folder / "photo.png"), read_image(photos / "person.png")
    assert photo.shape == source.shape and png(folder / "input.png").shape == (R, R, 3)
    changed = np.abs(photo.astype(int) - source).max(axis=2) > 0
    assert changed[100:160, 140:200].mean() > 0.5 and not changed[:, :40].any()  # the face, not the border
    record = json.loads((folder / "record.json").read_text())
    assert record["aligned_here"] is True and len(record["transform"]["quad"]) == 4
    (failed,) = json.loads((out / "failed.json").read_text())
    assert failed["name"] == "wall" and "no face found" in failed["error"] and "wall.png" in failed["error"]

    # Super-resolution of a photo: aligned at R / factor, pasted into the photo enlarged by the factor.
    out = predict("superres", prior_dir, tmp_path / "superres", "--data.inputs", str(photos / "person.png"),
                  "--data.factor", "4", *FAST)  # fmt: skip
    assert png(out / "person" / "input.png").shape == (R // 4, R // 4, 3)
    assert png(out / "person" / "photo.png").shape == (4 * source.shape[0], 4 * source.shape[1], 3)
    # Without a factor, a photo that is not an aligned crop cannot be super-resolved.
    with pytest.raises(NoUsableInputError, match=r"person\.png.*--data\.factor"):
        predict("superres", prior_dir, tmp_path / "nofactor", "--data.inputs", str(photos / "person.png"), *FAST)


# ------------------------------------------------------------------ DDP


@pytest.mark.slow
def test_ddp_spawn_writes_each_input_exactly_once(prior_dir, prior, tmp_path):
    folder = tmp_path / "in"
    images = render(prior, torch.eye(N_ANCHORS).tolist() + [[0.25] * N_ANCHORS])
    for i, image in enumerate(images):
        write_image(folder / f"face{i}.png", image)
    out = predict(
        "invert", prior_dir, tmp_path / "out", "--data.inputs", str(folder), "--data.batch_size", "1",
        "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2", "--model.task.steps", "2",
        "--model.task.lpips_weight", "0", "--model.task.pivotal_steps", "0",
        "--trainer.use_distributed_sampler", "true",  # switched off by the data
    )  # fmt: skip
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [f"face{i}" for i in range(5)]
    ranks = [json.loads((out / n / "record.json").read_text())["rank"] for n in names]
    assert sorted(set(ranks)) == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["num_done"] == 5 and "processed_more_than_once" not in summary
    assert sorted(d["name"] for d in summary["done"]) == names
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    # One input for two ranks: the rank without an input skips the predict loop (no deadlock).
    out = predict(
        "invert", prior_dir, tmp_path / "one", "--data.inputs", str(folder / "face0.png"),
        "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2", "--model.task.steps", "2",
        "--model.task.lpips_weight", "0", "--model.task.pivotal_steps", "0",
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_done"] == 1 and (out / "face0" / "record.json").is_file()


# ------------------------------------------------------------------ configuration errors and helpers


@pytest.mark.parametrize(
    "task, args, message",
    [
        ("invert", ["--data.factor", "4"], "data.factor is for the superres task"),
        ("invert", ["--data.boxes", '["1,1,4,4"]'], "data.mask / data.boxes are for the inpaint task"),
        ("inpaint", [], "needs holes"),
        ("superres", ["--data.factor", "64"], "the factor must be an integer in 2..32"),
        ("superres", ["--data.output_resolution", "24"], "data.output_resolution=24 must divide the generator's resolution 32"),
    ],
)
def test_options_that_do_not_fit_the_task(prior_dir, faces, tmp_path, task, args, message):
    with pytest.raises(ValueError, match=message):
        predict(task, prior_dir, tmp_path / "out", "--data.inputs", str(faces), *args, *FAST)


def test_inference_mode_is_refused_with_a_clear_error(prior_dir, faces, tmp_path):
    with pytest.raises(RuntimeError, match="inference_mode: false"):
        predict(
            "invert",
            prior_dir,
            tmp_path / "out",
            "--data.inputs",
            str(faces),
            "--trainer.inference_mode",
            "true",
            *FAST,
        )


def test_unique_names():
    paths = [Path("a/x.png"), Path("b/x.jpg"), Path("y.png")]
    assert unique_names(paths) == ["x_png", "x_jpg", "y"]


# ------------------------------------------------------------------ colourisation (the proof task: its own file, one YAML)


def test_colorize_from_the_command_line(prior_dir, faces, tmp_path):
    out = predict("colorize", prior_dir, tmp_path / "out", "--data.inputs", str(faces / "alice.png"), *FAST)
    folder = out / "alice"
    assert {"crop.png", "raw.png", "gray.png", "input.png", "latents.safetensors", "record.json"} <= {
        p.name for p in folder.iterdir()
    }
    gray = png(folder / "gray.png").astype(int)
    assert (gray.max(axis=2) - gray.min(axis=2)).max() <= 1  # the observation is gray
    record = json.loads((folder / "record.json").read_text())
    assert record["task"] == "colorize" and record["steps_used"] == 5 and record["consistency"] > 30
    assert record["settings"]["keep_luminance"] is True and record["settings"]["steps"] == 5
