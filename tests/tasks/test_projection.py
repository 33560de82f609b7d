"""The shared projection loop: optimiser options, lr schedule, early stopping."""

from __future__ import annotations

import numpy as np

from mystyle_pl.tasks.invert import Invert

from .conftest import A_STAR, _render


def test_delta_prox_reaches_a_lower_objective_and_zeroes_unneeded_offsets(prior):
    y, _ = _render(prior, A_STAR)
    common = dict(preset="official", lpips_weight=0.0, steps=40, lr=0.02, plus=True)
    official = Invert(**common).bind(prior)(y)
    prox = Invert(delta_prox=True, **common).bind(prior)(y)
    assert prox.final_loss.item() < official.final_loss.item()
    # y lies in the hull: every penalised layer can share alpha, so the proximal step keeps their offsets at 0
    coarse = prior.space().coarse_layers()
    raw = prox.raw_coefficients[0]
    offsets = raw[:coarse] - raw[:coarse].mean(dim=0)
    assert offsets.abs().max() < 1e-6


def test_lr_factor_ramp():
    from mystyle_pl.tasks.projection import lr_factor

    assert lr_factor(0, 100, 0.25) == 1.0 and lr_factor(75, 100, 0.25) == 1.0
    assert abs(lr_factor(88, 100, 0.25) - 0.5 * (1 + np.cos(np.pi * 13 / 25))) < 1e-9
    assert lr_factor(50, 100, 0.0) == 1.0


def test_early_stopping_counts_steps_without_improvement():
    from mystyle_pl.tasks.projection import EarlyStopping

    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert [stop.stop(v) for v in (1.0, 0.5, 0.45, 0.44, 0.3)] == [False, False, False, True, False]
    assert not any(EarlyStopping(None, 0.0).stop(1.0) for _ in range(10))


def test_lbfgs_reaches_the_objective_on_the_coefficients_and_in_w_plus(prior):
    """The quasi-Newton option optimises the same objective as Adam, in both loops (P+ coefficients,
    free W+), never returns a state worse than its start, and times every step."""
    import pytest
    import torch

    from mystyle_pl.tasks.presets import task_settings

    y, _ = _render(prior, A_STAR)
    for preset in ("official", "quick"):
        settings = task_settings(preset, lpips_weight=0.0, face_weight=None, steps=15, lr=0.02)
        start = Invert(projection=task_settings(preset, lpips_weight=0.0, face_weight=None, steps=0)).bind(prior)(y)
        lbfgs = Invert(projection=settings, optimizer="lbfgs").bind(prior)(y)
        adam = Invert(projection=settings).bind(prior)(y)
        assert lbfgs.steps_used == 15 and len(lbfgs.trace_seconds) == len(lbfgs.trace) == 15
        assert all(a <= b for a, b in zip(lbfgs.trace_seconds, lbfgs.trace_seconds[1:]))
        # The target is a render of the space: both must cut the starting loss by half at least
        # (a sign error or a frozen variable leaves it where it was); L-BFGS with its line search
        # must not do worse than 2x Adam's loss at the same number of steps (it takes more evaluations).
        assert lbfgs.final_loss.item() < 0.5 * start.final_loss.item(), preset
        assert lbfgs.final_loss.item() < 2.0 * adam.final_loss.item() + 1e-4, preset
    with pytest.raises(ValueError, match="optimizer must be one of adam, lbfgs"):
        Invert(preset="quick", optimizer="sgd")
    with pytest.raises(ValueError, match="delta_prox"):
        Invert(preset="pplus", optimizer="lbfgs").bind(prior)(torch.zeros_like(y))
