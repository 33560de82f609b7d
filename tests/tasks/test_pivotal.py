"""Pivotal tuning (PTI) after the projection, on the tiny seeded prior: CPU, seconds."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.demo_settings import QUALITIES, demo_projection_settings
from mystyle_pl.evaluation.runner import projection_settings
from mystyle_pl.tasks.edit import Edit
from mystyle_pl.tasks.invert import Invert
from mystyle_pl.tasks.presets import L2_FULL, QUICK_PIVOTAL, task_settings
from mystyle_pl.tasks.projection import ProjectionSettings

from .conftest import FAST


def _off_manifold(prior):
    """An observation no code of the tiny generator renders exactly: a render plus a fixed pattern."""
    with torch.no_grad():
        y = prior.generator.synthesis(prior.generator.broadcast_w(prior.w[:1]), noise_mode="const")
    pattern = torch.linspace(-0.4, 0.4, y.shape[-1]).view(1, 1, 1, -1)
    return (y + pattern).clamp(-1, 1)


def test_pivotal_tuning_fits_the_photo_and_leaves_the_prior_unchanged(prior):
    y = _off_manifold(prior)
    before = {k: v.clone() for k, v in prior.generator.state_dict().items()}
    plain = Invert(**FAST, pivotal_steps=0).bind(prior)(y)
    tuned = Invert(**FAST, pivotal_steps=40, pivotal_lr=1e-2).bind(prior)(y)
    assert plain.generators is None and tuned.generators is not None and len(tuned.generators) == 1
    assert torch.equal(tuned.ws, plain.ws)  # same pivot: the projection is deterministic and PTI keeps it fixed
    # The tuned render is closer to the observation (consistency in dB): 40 Adam steps on the weights of a
    # generator with ~10^4 parameters close most of the gap to the pattern; 3 dB is a clear margin, not a fit.
    assert float(tuned.consistency[0]) > float(plain.consistency[0]) + 3.0
    assert len(tuned.pivotal_traces[0]) == 40 and tuned.pivotal_traces[0][-1] < tuned.pivotal_traces[0][0]
    assert float(tuned.final_loss[0]) < float(plain.final_loss[0])
    with torch.no_grad():  # the returned images are the tuned generator's render of the pivot
        again = tuned.generators[0].synthesis(tuned.ws, noise_mode="const")
    assert torch.allclose(again, tuned.images, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in prior.generator.state_dict().items())  # the prior is untouched
    assert all(p.requires_grad is False for p in tuned.generators[0].parameters())


def test_edits_are_rendered_by_each_photos_tuned_generator(prior):
    y = torch.cat([_off_manifold(prior), _off_manifold(prior).flip(-1)])
    task = Edit(policy="continue", **FAST, pivotal_steps=5, pivotal_lr=1e-2).bind(prior)
    result = task(y, prior.w[0] - prior.w[1], [0.0, 1.0])
    proj = result.projection
    assert proj.generators is not None and len(proj.generators) == 2
    assert torch.allclose(result.images[:, 0], proj.images, atol=1e-5)  # strength 0 = the tuned render
    with torch.no_grad():
        plain = prior.generator.synthesis(result.ws[:, 1], noise_mode="const")
        own = proj.generators[1].synthesis(result.ws[1:, 1], noise_mode="const")
    assert torch.allclose(result.images[1, 1], own[0], atol=1e-5)
    assert not torch.allclose(result.images[:, 1], plain, atol=1e-3)  # not the untuned generator's render


def test_pivotal_steps_per_task_and_overrides():
    quick = task_settings("quick")
    # editing tunes; inversion is refined by a feature offset instead (tests/tasks/test_features.py)
    assert quick.for_task("edit").pivotal_steps == QUICK_PIVOTAL and quick.for_task("invert").pivotal_steps == 0
    assert quick.for_task("superres").pivotal_steps == 0 and quick.for_task("inpaint").pivotal_steps == 0
    assert task_settings("full").for_task("edit").pivotal_steps > QUICK_PIVOTAL
    # editing's tuning sees the photo at its own size too, in every preset that tunes; restoration does not
    for preset in ("quick", "full", "pplus"):
        assert task_settings(preset).for_task("edit").l2_full_weight == L2_FULL
    assert quick.for_task("superres").l2_full_weight == 0 and Edit(l2_full_weight=0).projection_settings().l2_full_weight == 0
    # the caller's value wins over the preset's per-task value, in Python, predict, evaluate and the demo alike
    assert Invert(pivotal_steps=4).projection_settings().pivotal_steps == 4
    assert Edit(pivotal_steps=7).projection_settings().pivotal_steps == 7
    assert projection_settings("quick", pivotal_steps=0).for_task("edit").pivotal_steps == 0
    assert projection_settings("quick").for_task("edit").pivotal_steps == QUICK_PIVOTAL
    quick_demo = QUALITIES["quick"]
    assert demo_projection_settings(quick_demo, {"pivotal_steps": 0}).for_task("edit").pivotal_steps == 0
    assert demo_projection_settings(quick_demo, {"steps": 3}).for_task("edit").pivotal_steps == QUICK_PIVOTAL
    with pytest.raises(ValueError, match="pivotal_steps must be >= 0"):
        Invert(pivotal_steps=-1)
    with pytest.raises(ValueError, match="pivotal_steps must be >= 0"):
        ProjectionSettings(pivotal_steps=-2)
