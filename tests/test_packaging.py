"""The wheel carries what an installed package needs: every module and the shipped configs.

``mystyle_pl/configs`` is a link to the repository's ``configs/``; predict's ``base.yaml`` and the
demo's fit recipes are read from the installed package (:func:`mystyle_pl.lightning_cli.config_path`),
so a wheel without them breaks ``mystyle-pl predict`` and ``mystyle-pl demo`` outside a checkout.
The wheel is built from a copy of the checkout's sources (the build leaves ``build/`` and
``*.egg-info`` beside them) with the installed setuptools: no download, a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from .helpers import REPO_ROOT


def test_the_wheel_holds_every_module_and_config(tmp_path):
    pytest.importorskip("setuptools")
    src, dist = tmp_path / "src", tmp_path / "dist"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "mystyle_pl", src / "mystyle_pl", symlinks=True, ignore=skip)  # configs: the link
    shutil.copytree(REPO_ROOT / "configs", src / "configs", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("mystyle_pl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "configs").glob("*/*.yaml"))
    assert configs, "no configs/*/*.yaml in the checkout"
    missing = [c for c in configs if f"mystyle_pl/{c}" not in names]
    assert not missing, f"configs left out of the wheel: {missing}"
    modules = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "mystyle_pl").rglob("*.py")
                     if "configs" not in p.parts)  # fmt: skip
    missing = [m for m in modules if m not in names]
    assert not missing, f"modules left out of the wheel: {missing}"
