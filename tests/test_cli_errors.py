"""User errors on the command line end in one line naming the path and the problem (exit 2),
checked before long work starts; bugs keep their traceback.

The subprocess tests run the real program (``python cli.py``), as a user does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mystyle_pl import cli
from mystyle_pl.cli import main
from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.io import write_image
from mystyle_pl.errors import OutputFolderError, describe_error, ensure_writable_dir
from mystyle_pl.prior import PersonalPrior

from .helpers import REPO_ROOT, make_tiny_stylegan2


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])
    monkeypatch.delenv("MYSTYLE_DEBUG", raising=False)


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    g = make_tiny_stylegan2(resolution=32, seed=0)
    with torch.no_grad():
        w = g.mapping(torch.randn(3, g.z_dim, generator=torch.Generator().manual_seed(0)))
    return PersonalPrior(g, Anchors(w=w, names=["a.png", "b.png", "c.png"])).save(tmp_path_factory.mktemp("p") / "prior")


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mystyle-pl: error:")]


def predict_args(prior_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--config", str(REPO_ROOT / "configs" / "predict" / "invert.yaml"), "--model.prior", str(prior_dir),
            "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(out), "--data.num_workers", "0", *extra]  # fmt: skip


# ------------------------------------------------------------------ through the real program


@pytest.mark.slow
def test_predict_missing_input_is_one_line(prior_dir, tmp_path):
    missing = tmp_path / "nope" / "face.png"
    out = run_cli(*predict_args(prior_dir, tmp_path / "out", "--data.inputs", str(missing)))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert error_lines(out.stderr) == [f"mystyle-pl: error: {missing}: input not found "
                                       "(--data.inputs: an image file or a folder of images)"]  # fmt: skip


def test_tool_command_missing_file_is_one_line():
    out = run_cli("info", "/no/such/generator.pkl", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = error_lines(out.stderr)
    assert "/no/such/generator.pkl" in line


# ------------------------------------------------------------------ in process (fast)


def test_errors_raised_inside_lightning_cli_classes_are_unwrapped(prior_dir, tmp_path, capsys):
    """jsonargparse wraps an __init__'s error in 'Does not validate against any of the Union
    subtypes ...'; the user sees the error itself, one line, naming the path."""
    face = write_image(tmp_path / "face.png", np.zeros((32, 32, 3), np.uint8))
    code = main(predict_args(tmp_path / "no_prior", tmp_path / "out", "--data.inputs", str(face)))
    assert code == 2
    assert error_lines(capsys.readouterr().err) == [
        f"mystyle-pl: error: {tmp_path / 'no_prior'}: prior bundle not found (expected a folder with "
        "generator.safetensors, anchors.safetensors, prior.json, as `mystyle-pl export` or fit's ExportPrior write it)"
    ]
    assert main(predict_args(prior_dir, tmp_path / "out", "--data.inputs", str(face), "--data.face", "left")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "data.face must be 'auto' or a face number" in line and "Union" not in line


def test_predict_unwritable_output_is_one_line(prior_dir, tmp_path, capsys):
    """The output folder is a file: refused before any input is read (nothing written beside it).
    Through ``main``, what ``cli.py`` runs (test_predict_missing_input_is_one_line runs the real program)."""
    face = write_image(tmp_path / "in" / "face.png", np.zeros((32, 32, 3), np.uint8))
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    # main returning 2 is the program's "no traceback": a bug's exception would propagate out of it (stderr may
    # hold logging's own "--- Logging error ---" of a handler that an earlier in-process test left on a closed stream)
    assert main(predict_args(prior_dir, blocker / "results", "--data.inputs", str(face))) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"mystyle-pl: error: {blocker / 'results'}: cannot write the output folder")
    assert "--trainer.default_root_dir" in line
    assert blocker.read_text() == "a file, not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["in", "taken"]


def test_evaluate_and_demo_check_paths_before_work(prior_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", "--prior", str(prior_dir), "--out", str(blocker)]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"mystyle-pl: error: {blocker}: cannot write the output folder (--out)")
    assert main(["evaluate", "--prior", str(tmp_path / "missing"), "--out", str(tmp_path / "ev")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"mystyle-pl: error: {tmp_path / 'missing'}: not found (--prior)"]
    assert main(["demo", "--out", str(blocker / "demo"), "--album", str(tmp_path)]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"mystyle-pl: error: {blocker / 'demo'}: cannot write the output folder (--out)")
    assert main(["demo", "--out", str(tmp_path / "d"), "--album", str(tmp_path / "no_album")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"mystyle-pl: error: {tmp_path / 'no_album'}: not found (--album)"]
    assert not (tmp_path / "d").exists() and not (tmp_path / "ev").exists()


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "nope.pkl")
    assert main(["info", missing]) == 2
    with pytest.raises((FileNotFoundError, ValueError)):
        main(["info", missing, "--debug"])
    monkeypatch.setenv("MYSTYLE_DEBUG", "1")
    with pytest.raises((FileNotFoundError, ValueError)):
        main(["info", missing])
    monkeypatch.delenv("MYSTYLE_DEBUG")

    def buggy(args):
        raise TypeError("a bug, not the user's fault")

    monkeypatch.setitem(cli.TOOL_COMMANDS, "info", cli.ToolCommand("info", cli._add_info_arguments, buggy))
    with pytest.raises(TypeError, match="a bug"):
        main(["info", missing])


def test_ensure_writable_dir_and_describe_error(tmp_path):
    assert ensure_writable_dir(tmp_path / "a" / "b") == (tmp_path / "a" / "b").resolve()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match=r"f: cannot write the output folder \(it exists and is not a folder\)"):
        ensure_writable_dir(tmp_path / "f")
    with pytest.raises(OutputFolderError, match=r"f/g: cannot write the results \(Not a directory"):
        ensure_writable_dir(tmp_path / "f" / "g", "results")
    assert describe_error(PermissionError(13, "Permission denied", "/x/y")) == "/x/y: Permission denied"
    assert describe_error(ValueError("a\n  b")) == "a; b"
