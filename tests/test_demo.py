"""The demo: album synthesis (tiny generator, stubbed identity check), run_demo end to end and resumed,
the --album path, the evaluate wiring, the fit config stacks, the CLI entry."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mystyle_pl.demo import (
    HELD_OUT_FILE,
    QUALITIES,
    DemoSettings,
    _Demo,
    _stage_evaluate,
    resolve_device,
    run_demo,
    tiny_generator,
)
from mystyle_pl.demo_album import AlbumRecipe, slot_resolutions, slots_between, synthesize_album
from mystyle_pl.generators import save_generator
from mystyle_pl.precision import bf16_native

from .helpers import REPO_ROOT

R = 32
SETTINGS = DemoSettings(num_photos=6, num_held_out=2, photo_size=R, fit_config="fit/demo.yaml",
                        edit_strengths=(-1.0, 0.0, 1.0), num_samples=2)  # fmt: skip
TASK_OVERRIDES = {"lpips_weight": 0.0, "steps": 3}  # over the quick preset: tiny budgets


class StubIdentity:
    """Distinct descriptors of 'one person' (0.25 from a centre in a new direction each call); no face on call 3."""

    def __init__(self, no_face_call: int | None = 3):
        self.calls, self.no_face_call = 0, no_face_call

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        self.calls += 1
        if self.calls == self.no_face_call:
            return None
        d = np.zeros(64)
        d[self.calls % 64] = 0.25
        return d


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    return save_generator(tiny_generator(R), tmp_path_factory.mktemp("gen") / "tiny.safetensors")


# ------------------------------------------------------------------ album


def test_synthesize_album_writes_photos_and_recipe(tmp_path):
    stub = StubIdentity()
    result = synthesize_album(tmp_path / "a", num_photos=5, num_held_out=2, seed=3, generator=tiny_generator(R),
                              size=16, identity=stub, log=None)  # fmt: skip
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.png"))
    assert names == [f"held_out/demo_{i:02d}.png" for i in (5, 6)] + [f"photos/demo_{i:02d}.png" for i in range(5)]
    assert [p.name for p in result.photos] == [f"demo_{i:02d}.png" for i in range(5)]
    from PIL import Image

    assert Image.open(result.held_out[0]).size == (16, 16)
    record = json.loads((tmp_path / "a" / "album.json").read_text())
    assert record["format"] == "mystyle_pl.demo_album" and record["seed"] == 3 and record["size"] == 16
    assert record["generator_resolution"] == R and record["num_ws"] == 8
    # the layer ranges come from the generator: StyleGAN2 32 px has two slots per resolution
    assert record["slots"] == {"resolutions": [4, 4, 8, 8, 16, 16, 32, 32], "pose": [0, 1, 2, 3],
                               "expression": [4, 5], "lighting": [6, 7]}  # fmt: skip
    assert record["recipe"]["pose_strength"] == AlbumRecipe().pose_strength
    photos = record["photos"]
    assert [e["split"] for e in photos] == ["train"] * 5 + ["held_out"] * 2
    assert photos[0]["draw"] == 0 and photos[0]["mix_seed"] is None  # demo_00 is the person unchanged
    assert all(len(e["pose"]) == 4 and len(e["expression"]) == 8 and e["identity_distance"] is not None for e in photos)
    assert all(abs(a) <= AlbumRecipe().pose_strength for e in photos for a in e["pose"])
    # the photo without a face (3rd descriptor) was replaced by a fresh draw
    ident = record["identity"]
    assert ident["replaced"] == 1 and ident["rejected_draws"] == [{"draw": 2, "reason": "no_face", "distance": None}]
    assert photos[2]["draw"] == 7 and stub.calls == 8
    assert 0 < ident["distances"]["median"] < ident["threshold"]
    with pytest.raises(FileExistsError, match="album.json exists"):
        synthesize_album(tmp_path / "a", generator=tiny_generator(R), identity=None, log=None)


def test_album_is_seeded(tmp_path):
    def render(path, seed):
        synthesize_album(path, num_photos=3, num_held_out=1, seed=seed, generator=tiny_generator(R), size=R,
                         identity=None, log=None)  # fmt: skip
        return [p.read_bytes() for p in sorted(Path(path).rglob("*.png"))]

    first, again, other = render(tmp_path / "1", 5), render(tmp_path / "2", 5), render(tmp_path / "3", 6)
    assert first == again and first != other
    assert json.loads((tmp_path / "1" / "album.json").read_text())["identity"] == {"check": None}


def test_identity_check_gives_up_with_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="identity check after 2 rounds"):
        synthesize_album(tmp_path, num_photos=3, num_held_out=0, generator=tiny_generator(R), size=R,
                         identity=lambda img: None, recipe=AlbumRecipe(max_rounds=2), log=None)  # fmt: skip
    assert not (tmp_path / "album.json").exists()


def test_mobilestylegan_slot_groups():
    from mystyle_pl.generators.mobilestylegan import DEFAULT_CHANNELS, MobileStyleGANGenerator

    g = MobileStyleGANGenerator(z_dim=8, w_dim=8, channels=DEFAULT_CHANNELS, mapping_layers=1)
    res = slot_resolutions(g)
    assert len(res) == 23 and res[0] == 4 and res[-1] == 1024
    assert slots_between(res, 4, 8) == [0, 1, 2, 3]  # pose
    assert slots_between(res, 16, 16) == [4, 5, 6]  # expression
    assert slots_between(res, 32) == list(range(7, 23))  # lighting / colour


# ------------------------------------------------------------------ run_demo


def _run(out, generator_file, tmp_path, **kw):
    return run_demo(
        out, generator=str(generator_file), settings=SETTINGS, align=False, identity=None, device="cpu",
        fit_args=["--trainer.max_epochs=1", "--model.anchor_steps=5", f"--model.anchors_cache={tmp_path / 'cache'}"],
        task_overrides=TASK_OVERRIDES, evaluate=False, progress=False, log=kw.pop("log", lambda m: None), **kw,
    )  # fmt: skip


def test_run_demo_end_to_end_then_resumes(tmp_path, generator_file, mystyle_home):
    """On a new machine (this test's own empty MYSTYLE_HOME) the assets stage fetches the LPIPS backbones;
    the second run finds everything cached and done."""
    assert not (mystyle_home / "assets").exists()
    out = tmp_path / "demo"
    messages: list[str] = []
    result = _run(out, generator_file, tmp_path, log=messages.append)
    assert [(s.name, s.status) for s in result.stages] == [
        ("assets", "done"), ("album", "done"), ("prepare", "done"), ("fit", "done"), ("tasks", "done"),
        ("evaluate", "skipped"), ("summary", "done"),
    ]  # fmt: skip
    assert (out / "demo_album" / "album.json").is_file()
    assert len(list((out / "album" / "images").glob("*.png"))) == 6
    assert len(list((out / "held_out" / "images").glob("*.png"))) == 2
    assert (out / "prior" / "prior.json").is_file() and (out / "fit" / "checkpoints" / "last.ckpt").is_file()
    for name in ("gallery", "superres", "inpaint", "edit", "samples", "invert", "colorize"):
        assert (out / "results" / f"{name}.png").is_file(), name
    tasks = json.loads((out / "results" / "tasks.json").read_text())
    assert tasks["superres"]["factor"] == 8 and len(tasks["edit"]["applied"]) == 3
    assert set(tasks["seconds"]) == {"superres", "inpaint", "invert", "edit", "sample", "colorize"}
    # fidelity of every restoration: PSNR to the truth, consistency with the input, steps, seconds
    sr = tasks["superres"]
    for key in ("psnr", "psnr_raw", "psnr_bicubic", "consistency", "consistency_raw", "consistency_bicubic"):
        assert isinstance(sr[key], float), key
    assert sr["steps_used"] == 3 and sr["seconds"] == tasks["seconds"]["superres"]
    assert sr["consistency"] > sr["consistency_raw"]  # back-projected: D(result) reproduces the input
    assert tasks["inpaint"]["steps_used"] == tasks["invert"]["steps_used"] == 3
    assert tasks["preset"] == "quick" and tasks["projection"]["method"] == "wplus" and tasks["projection"]["steps"] == 3
    state = json.loads((out / "demo.json").read_text())
    assert state["settings"]["num_photos"] == 6 and [s["name"] for s in state["stages"]][-1] == "summary"
    assert state["settings"]["preset"] == "quick" and state["projection"]["steps"] == 3
    assert state["fidelity"]["tasks"] == sr and "evaluate" not in state["fidelity"]
    log = "\n".join(messages)
    assert "[demo 4/7] fit: done in" in log and str(out / "results" / "gallery.png") in log
    assert f"personal {sr['psnr']:.2f} dB to the truth, consistency {sr['consistency']:.1f} dB, 3 steps" in log
    assert f"bicubic {sr['psnr_bicubic']:.2f} dB to the truth" in log

    prior_mtime = (out / "prior" / "prior.json").stat().st_mtime_ns
    again = _run(out, generator_file, tmp_path)
    assert [s.status for s in again.stages if s.name in ("assets", "album", "prepare", "fit", "tasks")] == ["skipped"] * 5
    assert (out / "prior" / "prior.json").stat().st_mtime_ns == prior_mtime
    with pytest.raises(ValueError, match="other settings.*seed"):
        _run(out, generator_file, tmp_path, seed=2)


def test_own_album_holds_out_photos_by_name(tmp_path, generator_file):
    photos = tmp_path / "mine"
    synthesize_album(photos, num_photos=10, num_held_out=0, generator=tiny_generator(R), size=R, identity=None, log=None)
    settings = DemoSettings(**{**SETTINGS.__dict__, "num_held_out": 2})
    demo = _Demo(tmp_path / "out", photos / "photos", "quick", settings, torch.device("cpu"), 0, str(generator_file),
                 False, None, [], {}, False, lambda m: None)  # fmt: skip
    demo.run_prepare()
    held = json.loads((tmp_path / "out" / "held_out" / HELD_OUT_FILE).read_text())
    assert len(held["val_names"]) == 2 and held["val_names"] == held["held_out"]
    assert sorted(p.name for p in (tmp_path / "out" / "held_out" / "images").iterdir()) == held["val_names"]
    assert len(list((tmp_path / "out" / "album" / "images").iterdir())) == 10  # held out by name, not moved
    config = demo.run_config()["data"]["init_args"]
    assert config["val_names"] == held["val_names"] and config["val_fraction"] == 0.0
    with pytest.raises(ValueError, match="separate folders"):
        run_demo(photos / "photos" / "out", album=photos / "photos")


def test_demo_fits_with_the_recipe_callbacks(tmp_path):
    """The demo's fit layer repeats the recipe's callbacks as declared; only ExportPrior's folder is set
    (OUT/prior); a recipe without one gets one."""
    from mystyle_pl.demo_stages import recipe_callbacks
    from mystyle_pl.lightning_cli import config_path

    prior = tmp_path / "prior"
    for quality in QUALITIES.values():
        recipe = config_path(quality.fit_config)
        declared = yaml.safe_load(recipe.read_text())["trainer"]["callbacks"]
        used = recipe_callbacks(recipe, prior)
        assert [c["class_path"] for c in used] == [c["class_path"] for c in declared]
        for mine, theirs in zip(used, declared):
            if mine["class_path"].endswith("ExportPrior"):
                assert mine["init_args"] == {**(theirs.get("init_args") or {}), "dirpath": str(prior)}
            else:
                assert mine == theirs
    bare = tmp_path / "bare.yaml"
    bare.write_text("trainer:\n  max_epochs: 1\n")
    assert recipe_callbacks(bare, prior) == [{"class_path": "mystyle_pl.tuning.ExportPrior",
                                              "init_args": {"dirpath": str(prior)}}]  # fmt: skip


@pytest.mark.parametrize("quality", ["quick", "full"])
def test_fit_stacks_parse_with_the_demo_paths(tmp_path, generator_file, quality):
    """The fit recipe of each quality + the demo's run config instantiate (paths, device, album)."""
    from mystyle_pl.lightning_cli import MyStyleLightningCLI
    from mystyle_pl.tuning import ExportPrior

    album = tmp_path / "photos"
    synthesize_album(album, num_photos=4, num_held_out=1, generator=tiny_generator(R), size=R, identity=None, log=None)
    demo = _Demo(tmp_path / "out", None, quality, QUALITIES[quality], torch.device("cpu"), 1, str(generator_file),
                 False, None, [], {}, False, lambda m: None)  # fmt: skip
    demo.demo_album = album
    demo.run_prepare()
    argv = demo.fit_argv()
    assert argv[0] == "fit" and argv[2].endswith(QUALITIES[quality].fit_config)
    cli = MyStyleLightningCLI(args=argv[1:], run=False)
    export = next(c for c in cli.trainer.callbacks if isinstance(c, ExportPrior))
    assert Path(export.dirpath) == tmp_path / "out" / "prior"
    assert Path(cli.trainer.default_root_dir) == tmp_path / "out" / "fit"
    assert Path(cli.datamodule.album) == tmp_path / "out" / "album" and cli.datamodule.resolution == R
    assert cli.datamodule.val_fraction == 0.0 and cli.trainer.limit_val_batches == 0
    assert cli.model.hparams.generator == str(generator_file)
    assert type(cli.trainer.logger).__name__ == "CSVLogger" and Path(cli.trainer.logger.save_dir) == tmp_path / "out" / "fit"
    # on a CPU the tuning runs in bfloat16 where the CPU computes it natively, else in float32
    assert cli.trainer.precision == ("bf16-mixed" if bf16_native("cpu") else "32-true")


# ------------------------------------------------------------------ evaluate stage, CLI


def test_evaluate_stage_passes_the_demo_settings(tmp_path, monkeypatch):
    seen = {}

    def fake_evaluate(prior, photos, out, **kw):
        seen.update(prior=prior, photos=photos, out=out, **kw)
        Path(out).mkdir(parents=True)
        (Path(out) / "report.md").write_text("# report\n")
        return types.SimpleNamespace(report=Path(out) / "report.md")

    demo = _Demo(tmp_path, None, "quick", QUALITIES["quick"], torch.device("cpu"), 1, "g", True, None, [], {}, False, print)
    monkeypatch.setattr("mystyle_pl.demo.evaluate", fake_evaluate)
    record = _stage_evaluate(demo)
    q = QUALITIES["quick"]
    assert seen["prior"] == str(tmp_path / "prior") and seen["photos"] == str(tmp_path / "held_out" / "images")
    assert seen["out"] == str(tmp_path / "report") and seen["generic"] == "g" and seen["tasks"] == q.eval_tasks
    assert (seen["max_photos"], seen["betas"], seen["progress"]) == (q.eval_max_photos, None, False)
    # the projection budget is the preset's, resolved by evaluate itself (no step count of the demo's own)
    assert seen["preset"] == "quick" and seen["settings"] is None and "steps" not in seen
    assert seen["generic_tasks"] == "superres-x8" and "invert" not in seen["tasks"]  # measured in the tasks stage
    assert record.status == "done" and record.output == str(tmp_path / "report" / "report.md")
    # with overrides (tests, task_overrides) evaluate gets them as settings over the preset
    seen.clear()
    import shutil

    shutil.rmtree(tmp_path / "report")
    demo = _Demo(tmp_path, None, "quick", QUALITIES["quick"], torch.device("cpu"), 1, "g", True, None, [],
                 {"steps": 5}, False, print)  # fmt: skip
    _stage_evaluate(demo)
    from mystyle_pl.tasks.presets import task_settings

    assert seen["settings"] == task_settings("quick", steps=5)


def test_qualities_name_presets_and_fit_the_cpu_budget():
    """--quality quick projects with the quick preset, --quality full with the full one; the quick demo's
    evaluation stays at 3 projections of one photo (about 3.5 minutes on a 2-core CPU): the held-out
    inversion, the same photo's, is the tasks stage's and is not run twice; the full demo evaluates it."""
    from mystyle_pl.evaluation import expand_tasks, methods_for
    from mystyle_pl.evaluation.inputs import condition_kind

    assert QUALITIES["quick"].preset == "quick" and QUALITIES["full"].preset == "full"
    q = QUALITIES["quick"]
    generic = set(expand_tasks(q.eval_generic_tasks))
    projections = 0
    for c in expand_tasks(q.eval_tasks):
        methods = [m for m in methods_for(condition_kind(c), ["personal", "generic"])]
        projections += len([m for m in methods if m != "generic" or c in generic]) * q.eval_max_photos
    assert projections == 3 and "invert" not in expand_tasks(q.eval_tasks)
    assert "invert" in expand_tasks(QUALITIES["full"].eval_tasks)


def test_summary_reports_the_x8_fidelity():
    from mystyle_pl.demo import fidelity_lines

    tasks = {"factor": 8, "psnr": 24.1, "psnr_raw": 23.5, "psnr_bicubic": 23.0, "consistency": 52.3,
             "consistency_raw": 31.0, "consistency_bicubic": 38.2, "steps_used": 100, "seconds": 81.2}  # fmt: skip
    evaluated = {"personal": {"psnr": 25.0, "consistency": 50.0, "steps_used": 100.0, "seconds": 80.0, "n": 1},
                 "baseline": {"psnr": 23.0, "consistency": 38.0, "steps_used": 0.0, "seconds": 0.0, "n": 1}}  # fmt: skip
    inverted = {"psnr": 25.39, "consistency": 25.39, "steps_used": 60, "seconds": 152.6}
    lines = fidelity_lines({"tasks": tasks, "evaluate": evaluated, "invert": inverted})
    assert lines[0] == (
        "  x8 super-resolution of a held-out photo (tasks): personal 24.10 dB to the truth, consistency 52.3 dB, "
        "100 steps, 81.2 s/image | raw projection 23.50 dB to the truth, consistency 31.0 dB | "
        "bicubic 23.00 dB to the truth, consistency 38.2 dB"
    )
    assert lines[1] == ("  held-out inversion (tasks): personal 25.39 dB to the truth, consistency 25.4 dB, 60 steps, "
                        "152.6 s/image")
    assert lines[2].startswith("  x8 super-resolution, evaluation (1 photo(s)): personal 25.00 dB")
    assert "baseline 23.00 dB to the truth, consistency 38.0 dB, 0 steps, 0.0 s/image" in lines[2]
    assert fidelity_lines({}) == []


def test_cli_demo_command(monkeypatch, tmp_path):
    from mystyle_pl import cli

    assert "demo" in cli.TOOL_COMMANDS and "demo" in cli.top_level_help()
    calls = []
    monkeypatch.setattr("mystyle_pl.demo.run_demo", lambda out, **kw: calls.append((out, kw)))
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--quality", "full", "--seed", "4", "--device", "cpu"]) == 0
    assert calls == [(str(tmp_path / "d"), {"album": None, "quality": "full", "device": "cpu", "seed": 4, "progress": True,
                                            "provenance": True})]  # fmt: skip
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--provenance", "off"]) == 0
    assert calls[-1][1]["provenance"] is False
    assert resolve_device("cpu") == torch.device("cpu")


def test_makefile_has_a_demo_target():
    text = (REPO_ROOT / "Makefile").read_text()
    assert "demo: setup\n\t$(PYTHON) cli.py demo --out outputs/demo" in text
