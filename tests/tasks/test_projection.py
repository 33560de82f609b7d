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
