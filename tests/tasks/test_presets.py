"""One source of projection defaults: a preset name gives the same settings in predict, evaluate,
the demo and Python (mystyle_pl.tasks.presets)."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.evaluation.inputs import parse_pull
from mystyle_pl.evaluation.runner import projection_settings as evaluate_projection_settings
from mystyle_pl.tasks import SuperResolve
from mystyle_pl.tasks.presets import task_settings

R = 32


@pytest.mark.parametrize("preset", ["quick", "full", "pplus", "official"])
def test_a_preset_name_gives_the_same_settings_everywhere(preset, monkeypatch):
    """predict (the task objects its YAML builds), evaluate, the demo and Python resolve a preset name
    through their own code to the same ProjectionSettings (progress bars aside: each entry point shows or
    hides them)."""
    from dataclasses import replace

    from mystyle_pl.demo import QUALITIES, demo_projection_settings, tiny_prior
    from mystyle_pl.evaluation import projection_settings
    from mystyle_pl.tasks.inpaint import Inpaint
    from mystyle_pl.tasks.invert import Invert
    from mystyle_pl.tasks.presets import task_settings
    from mystyle_pl.tasks.superres import SuperResolve

    expected = task_settings(preset)

    def same(settings):
        assert replace(settings, progress=False) == expected

    for cls in (Invert, Inpaint, SuperResolve):  # as predict's YAML builds them (each with its per-task values)
        assert replace(cls(preset=preset).projection_settings(), progress=False) == expected.for_task(cls.name)
    same(projection_settings(preset))
    same(demo_projection_settings(replace(QUALITIES["quick"], preset=preset)))
    # Python: the settings each task is built with by prior.invert / inpaint / super_resolve
    seen = []
    for cls in (Invert, Inpaint, SuperResolve):
        monkeypatch.setattr(cls, "__call__", lambda self, *a, **k: seen.append(self.projector.settings))
    prior = tiny_prior(resolution=R)
    x = torch.zeros(1, 3, R, R)
    prior.invert(x, preset=preset)
    prior.inpaint(x, [(8, 8, 16, 16)], preset=preset)
    prior.super_resolve(torch.zeros(1, 3, R // 4, R // 4), preset=preset)
    assert len(seen) == 3
    assert replace(seen[0], progress=False) == expected.for_task("invert")  # the preset's per-task values
    assert replace(seen[1], progress=False) == expected.for_task("inpaint")
    # super-resolution with back-projection fits the face only (face_weight_consistent), wherever it is built
    fw = expected.face_weight if expected.face_weight_consistent is None else expected.face_weight_consistent
    assert replace(seen[2], progress=False) == replace(expected, face_weight=fw)
    # overrides keep the rest of the preset, the same way everywhere; a value given wins over the preset's
    # per-task value of that field (the quick inversion's 40 steps)
    per_task = {task: {k: v for k, v in values.items() if k != "steps"} for task, values in expected.per_task.items()}
    seven = replace(expected, steps=7, per_task=per_task)
    assert projection_settings(preset, steps=7) == seven
    assert demo_projection_settings(replace(QUALITIES["quick"], preset=preset), {"steps": 7}) == seven
    assert Invert(preset=preset, steps=7).projection_settings(progress=True) == replace(
        seven, progress=True
    ).for_task("invert")
    assert Invert(preset=preset, steps=7).projection_settings().steps == 7


def test_python_api_defaults_to_the_quick_preset(monkeypatch):
    from mystyle_pl.demo import tiny_prior
    from mystyle_pl.tasks.invert import Invert
    from mystyle_pl.tasks.presets import task_settings

    seen = []
    monkeypatch.setattr(Invert, "__call__", lambda self, images: seen.append(self.projector.settings))
    prior = tiny_prior(resolution=R)
    prior.invert(torch.zeros(1, 3, R, R))
    prior.invert(torch.zeros(1, 3, R, R), steps=5, patience=None)
    assert seen == [task_settings("quick").for_task("invert"), task_settings("quick", steps=5).for_task("invert")]
    with pytest.raises(ValueError, match="either preset= or settings="):
        prior.invert(torch.zeros(1, 3, R, R), preset="full", settings=task_settings("quick"))


def test_a_given_pull_applies_to_every_observation_in_python_predict_and_evaluate():
    """The preset's low-resolution pull stays unless a pull is given; a given pull replaces both (one
    rule, presets.given_values, in task_settings, the tasks and evaluate). ``--pull`` parses and checks."""
    assert task_settings("quick").pull_low_res == (10.0, 10.0, 0.03)
    assert task_settings("quick", pull=(1, 1, 0)).pull_low_res is None
    assert task_settings("quick", pull=(1, 1, 0), pull_low_res=(2, 2, 2)).pull_low_res == (2.0, 2.0, 2.0)
    assert SuperResolve(pull=(1, 1, 0)).projection_settings().pull_low_res is None
    assert evaluate_projection_settings("quick").pull_low_res == (10.0, 10.0, 0.03)
    given = evaluate_projection_settings("quick", pull=parse_pull("1,1,0.03"))
    assert given.pull == (1.0, 1.0, 0.03) and given.pull_low_res is None
    assert given.for_task("invert").pull == (1.0, 1.0, 0.03)  # over the preset's per-task inversion pull too
    for bad in ("1,1", "1,x,0", "1,-1,0"):
        with pytest.raises(ValueError, match="--pull takes three numbers"):
            parse_pull(bad)
