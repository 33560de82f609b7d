"""PersonalPrior: the Python task API (named shortcuts and prior.run) on a tiny seeded prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.io import to_uint8
from mystyle_pl.tasks.superres import Downsample

from .tasks.conftest import A_STAR, FAST, R, _render, prior  # noqa: F401  (the fixture)


def test_python_api_accepts_pil_paths_and_tensors(tmp_path, prior):
    y, _ = _render(prior, A_STAR)
    arr = to_uint8(y)[0]
    pil = Image.fromarray(arr)
    pil.save(tmp_path / "face.png")
    from_pil = prior.invert(pil, **FAST)
    from_path = prior.invert(tmp_path / "face.png", **FAST)
    assert torch.allclose(from_pil.ws, from_path.ws)
    assert prior.invert(y[0], **FAST).images.shape == (1, 3, R, R)
    hole = np.zeros((R, R), np.uint8)
    hole[4:10, 4:10] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    out = prior.inpaint(str(tmp_path / "face.png"), tmp_path / "mask.png", **FAST)
    assert out.blended.shape == (1, 3, R, R)
    assert prior.inpaint(pil, [(2, 2, 6, 6)], **FAST).mask[0, 0, 3, 3] == 0
    small = Image.fromarray(to_uint8(Downsample(8)(y))[0])
    assert prior.super_resolve(small, factor=2, **FAST).images.shape == (1, 3, R, R)
    edited = prior.edit(pil, prior.w[0] - prior.w[1], [0.0, 1.0], **FAST)
    assert edited.images.shape == (1, 2, 3, R, R)
    assert prior.sample(3, seed=1).images.shape == (3, 3, R, R)
    with pytest.raises(ValueError, match="img: expected a PIL image"):
        prior.invert(42)


def test_prior_runs_any_task_object_or_name_and_imports_no_task(prior):
    from mystyle_pl import Colorize, Invert
    from mystyle_pl.prior import TASK_TYPES

    y, _ = _render(prior, A_STAR)
    by_object = prior.run(Invert(**FAST), y)
    assert torch.allclose(by_object.ws, Invert(**FAST).run(prior, y).ws)  # prior.run(task) = task.run(prior)
    assert torch.allclose(by_object.ws, prior.invert(y, **FAST).ws)
    assert set(TASK_TYPES) >= {"invert", "inpaint", "superres", "colorize", "edit", "sample"}
    assert TASK_TYPES["colorize"] is Colorize
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks: colorize, edit"):
        prior.run("nope", y)
    with pytest.raises(RuntimeError, match="not bound to a prior"):
        Invert(**FAST)(y)
    source = (Path(__file__).parents[1] / "mystyle_pl" / "prior.py").read_text()
    assert "tasks" not in "".join(line for line in source.splitlines() if line.lstrip().startswith(("from", "import")))
