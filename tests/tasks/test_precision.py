"""bfloat16 autocast of the render inside the projection and pivotal tuning (mystyle_pl.precision)."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.tasks.invert import Invert
from mystyle_pl.tasks.pivotal import pivotal_tune
from mystyle_pl.precision import bf16_native, emulated_bf16_warning, render_context, render_step, resolve_precision
from mystyle_pl.tasks.projection import ProjectionSettings

from .conftest import FAST


def test_precision_values_and_the_auto_choice():
    assert resolve_precision("32", "cpu") == "32" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if bf16_native("cpu") else "32")
    with pytest.raises(ValueError, match="precision must be one of 32, bf16-mixed, auto, got 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        ProjectionSettings(precision="half")
    # a Trainer asking for bfloat16 where it is emulated is warned about (the fit's setup shows it)
    assert emulated_bf16_warning("32-true", "cpu") is None and emulated_bf16_warning(16, "cpu") is None
    assert (emulated_bf16_warning("bf16-mixed", "cpu") is None) == bf16_native("cpu")
    # Lightning's spellings are accepted (a command line or YAML may give the number 32)
    assert [ProjectionSettings(precision=p).precision for p in (32, "32-true", "bf16", "BF16-mixed")] == [
        "32", "32", "bf16-mixed", "bf16-mixed"
    ]


def test_a_bf16_render_step_runs_under_autocast_and_returns_float32(prior):
    ws = prior.generator.broadcast_w(prior.w[:1]).clone().requires_grad_(True)
    with render_context("bf16-mixed", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    full = render_step(prior.generator, ws, "const", "32")
    half = render_step(prior.generator, ws, "const", "bf16-mixed")
    assert full.dtype == half.dtype == torch.float32
    assert not torch.equal(full, half)  # the products ran in bfloat16
    # bfloat16 keeps 8 significant bits: ~0.4% relative error per product, compounding over the tiny
    # generator's ~10 layers to ~1% RMS; 5% separates rounding from a wrong render.
    assert (full - half).norm() / full.norm() < 0.05
    half.sum().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all()


def test_a_bf16_projection_reaches_the_float32_result_and_pivotal_tuning_stays_float32(prior):
    with torch.no_grad():
        y = prior.generator.synthesis(prior.generator.broadcast_w(prior.w[1:2] * 0.7 + prior.w[2:3] * 0.3), noise_mode="const")
    settings = dict(FAST, steps=20, pivotal_steps=0)
    full = Invert(**settings, precision="32").bind(prior)(y)
    half = Invert(**settings, precision="bf16-mixed").bind(prior)(y)
    assert full.images.dtype == half.images.dtype == torch.float32  # the result is rendered in float32
    assert full.trace != half.trace  # the projection's steps rendered in bfloat16
    assert (full.precision, half.precision) == ("32", "bf16-mixed")
    # Same optimisation, rounded products: both objectives fall to about a quarter of the start (1.02 ->
    # 0.26 / 0.27 when measured), so the final losses agree within 25% and both are below half the start.
    assert half.trace[-1] < 0.5 * half.trace[0] and full.trace[-1] < 0.5 * full.trace[0]
    assert abs(float(half.final_loss[0]) - float(full.final_loss[0])) < 0.25 * float(full.final_loss[0])
    # pivotal tuning is float32 whatever the precision: from one pivot, the same losses step by step
    mse = lambda synth, y_i, m_i: (synth - y_i).square().mean(dim=(1, 2, 3))  # noqa: E731
    tuned = [
        pivotal_tune(prior.generator, full.ws, y, None, mse, ProjectionSettings(pivotal_steps=3, precision=p))
        for p in ("32", "bf16-mixed")
    ]
    assert tuned[0].traces == tuned[1].traces
