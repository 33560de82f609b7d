"""The feature-space offset after the projection (high-fidelity inversion) and the full-size MSE term,
on the tiny seeded prior: CPU, seconds."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.generators.features import FeatureOffsetGenerator, block_features, blocks_features, offset_resolutions
from mystyle_pl.tasks.base import refinement_steps
from mystyle_pl.tasks.edit import Edit
from mystyle_pl.tasks.invert import Invert
from mystyle_pl.tasks.presets import FEATURE_RESOLUTION, QUICK_FEATURE, task_settings
from mystyle_pl.tasks.projection import ProjectionSettings, Projector
from mystyle_pl.space import PersonalSpace

from ..generators.test_mobilestylegan import make_tiny as make_tiny_mobile
from ..helpers import make_tiny_stylegan2
from .conftest import FAST
from .test_pivotal import _off_manifold


@pytest.mark.parametrize("make", [make_tiny_stylegan2, make_tiny_mobile], ids=["stylegan2", "mobilestylegan"])
def test_a_feature_offset_changes_the_render_only_through_its_block(make):
    g = make(seed=0).eval()
    ws = g.broadcast_w(g.mapping(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(1)))).detach()
    res = g.synthesis.block_resolutions[1]
    features = block_features(g, ws, res)
    assert features.shape[0] == 2 and features.shape[-2:] == (res, res)
    with torch.no_grad():
        plain = g.synthesis(ws, noise_mode="const")
        zero = FeatureOffsetGenerator(g, res, torch.zeros_like(features[:1])).synthesis(ws, noise_mode="const")
        moved = FeatureOffsetGenerator(g, res, 0.5 * torch.ones_like(features[:1])).synthesis(ws, noise_mode="const")
    assert torch.equal(zero, plain)  # a zero offset is the base generator exactly
    assert (moved - plain).abs().max() > 1e-2
    with torch.no_grad():  # the hook is removed after each render: the base renders as before
        assert torch.equal(g.synthesis(ws, noise_mode="const"), plain)
    with pytest.raises(ValueError, match=r"feature_resolution 5 is not a block .*choose one of"):
        FeatureOffsetGenerator(g, 5, features[:1])
    with pytest.raises(ValueError, match="offset must be"):
        FeatureOffsetGenerator(g, res, features[:1, :, :2])


@pytest.mark.parametrize("make", [make_tiny_stylegan2, make_tiny_mobile], ids=["stylegan2", "mobilestylegan"])
def test_offsets_at_two_blocks_nest(make):
    g = make(seed=0).eval()
    ws = g.broadcast_w(g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(2)))).detach()
    # the two finest blocks an offset may take (at most half the output: offset_resolution)
    coarse, fine = [r for r in g.synthesis.block_resolutions if r <= g.img_resolution // 2][-2:]
    both = blocks_features(g, ws, [coarse, fine])  # one render, both blocks
    assert torch.equal(both[coarse], block_features(g, ws, coarse)) and torch.equal(both[fine], block_features(g, ws, fine))
    a, b = 0.5 * torch.ones_like(both[coarse]), -0.3 * torch.ones_like(both[fine])
    inner = FeatureOffsetGenerator(g, coarse, a)
    nested = FeatureOffsetGenerator(inner, fine, b)
    assert set(nested.offsets) == {coarse, fine} and nested.offsets[coarse] is a and nested.offsets[fine] is b
    with torch.no_grad():
        plain = g.synthesis(ws, noise_mode="const")
        zero = FeatureOffsetGenerator(FeatureOffsetGenerator(g, coarse, 0 * a), fine, 0 * b).synthesis(ws, noise_mode="const")
        one = inner.synthesis(ws, noise_mode="const")
        two = nested.synthesis(ws, noise_mode="const")
        # the fine block's features under the nested generator: the coarse offset's effect plus b
        fine_features = blocks_features(inner, ws, [fine])[fine]
    assert torch.equal(zero, plain)
    assert (two - one).abs().max() > 1e-2 and (one - plain).abs().max() > 1e-2  # each offset acts
    assert not torch.equal(fine_features, both[fine])  # the fine block sees the coarse offset's change
    with torch.no_grad():
        assert torch.equal(g.synthesis(ws, noise_mode="const"), plain)  # every hook removed
    # a preset's (64, 256) on a 16 px generator: both capped at 8 px, one offset
    assert offset_resolutions(g, FEATURE_RESOLUTION) == (g.img_resolution // 2,)
    assert offset_resolutions(g, [fine, coarse, fine]) == (coarse, fine)
    with pytest.raises(ValueError, match="at least one"):
        offset_resolutions(g, [])


def test_offsets_at_two_blocks_are_fitted_together(prior):
    y = _off_manifold(prior)
    settings = Invert(**FAST, feature_steps=6, feature_resolution=[4, 8]).bind(prior)
    assert settings.projection_settings().feature_resolution == (4, 8)  # a list from a config becomes a tuple
    result = settings(y)
    g = result.generators[0]
    assert isinstance(g, FeatureOffsetGenerator) and set(g.offsets) == {4, 8}
    assert all(float(o.abs().max()) > 0 for o in g.offsets.values())  # both moved from zero, in the same steps
    assert len(result.feature_traces[0]) == 6
    assert refinement_steps(result, 0) == {"feature_steps": 6, "feature_resolution": [4, 8]}  # what record.json holds
    with torch.no_grad():
        assert torch.allclose(g.synthesis(result.ws, noise_mode="const"), result.images, atol=1e-5)


def test_the_feature_offset_fits_the_photo_and_leaves_the_prior_unchanged(prior):
    y = _off_manifold(prior)
    before = {k: v.clone() for k, v in prior.generator.state_dict().items()}
    plain = Invert(**FAST, feature_steps=0).bind(prior)(y)
    refined = Invert(**FAST, feature_steps=40, feature_resolution=8).bind(prior)(y)
    assert plain.generators is None and plain.feature_traces is None
    assert len(refined.generators) == 1 and isinstance(refined.generators[0], FeatureOffsetGenerator)
    assert torch.equal(refined.ws, plain.ws)  # same pivot: the refinement keeps the codes fixed
    # 40 Adam steps on an 8 px offset of a 16 px generator leave a fraction of the pattern's error; 3 dB is a
    # clear margin above the projection alone (it reaches ~10 dB more here), not a tuned threshold.
    assert float(refined.consistency[0]) > float(plain.consistency[0]) + 3.0
    assert len(refined.feature_traces[0]) == 40 and refined.feature_traces[0][-1] < refined.feature_traces[0][0]
    assert float(refined.final_loss[0]) < float(plain.final_loss[0])
    with torch.no_grad():  # the returned images are the photo's own generator's render of the pivot
        again = refined.generators[0].synthesis(refined.ws, noise_mode="const")
    assert torch.allclose(again, refined.images, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in prior.generator.state_dict().items())  # the prior is untouched
    assert Invert(**FAST).bind(prior).projection_settings().feature_steps == 0  # the official preset: off


def test_the_generator_flags_are_restored_and_pivotal_tuning_composes(prior):
    flags = [p.requires_grad for p in prior.generator.parameters()]
    y = _off_manifold(prior)
    both = Invert(**FAST, pivotal_steps=3, pivotal_lr=1e-2, feature_steps=3, feature_resolution=8).bind(prior)(y)
    assert [p.requires_grad for p in prior.generator.parameters()] == flags
    g = both.generators[0]
    assert isinstance(g, FeatureOffsetGenerator) and len(both.pivotal_traces[0]) == 3 and len(both.feature_traces[0]) == 3
    # the offset sits on the photo's tuned copy, not on the prior's generator
    assert any(not torch.equal(p, q) for p, q in zip(g.synthesis.base.parameters(), prior.generator.synthesis.parameters()))
    with pytest.raises(ValueError, match="feature_resolution 6 is not a block"):
        Invert(**FAST, feature_steps=2, feature_resolution=6).bind(prior)  # at bind, before any photo is projected
    # a preset's 64 px on this 16 px generator: capped at half its resolution
    capped = Invert(**FAST, feature_steps=1, feature_resolution=64).bind(prior)(y)
    assert capped.generators[0].feature_resolution == 8


def test_the_full_size_mse_sees_what_the_loss_resolution_cannot(prior):
    """A 16 px checkerboard of +-0.2 averages out under the area down-sampling to 8 px: the loss at 8 px cannot
    tell the two observations apart; ``l2_full_weight`` adds exactly its weight times the MSE at 16 px (0.04),
    in the refinements' loss only."""
    g = prior.generator
    space = PersonalSpace.from_prior(prior)
    with torch.no_grad():
        x = g.synthesis(g.broadcast_w(prior.w[:1]), noise_mode="const")
    checker = 0.2 * (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)).remainder(2).mul(2).sub(1)
    y = x + checker.view(1, 1, 16, 16)

    def loss(weight, full_size=True):
        settings = ProjectionSettings(lpips_weight=0.0, resolution=8, l2_full_weight=weight)
        return Projector(g, space, None, settings).per_image_loss(x, y, lambda img: img, None, full_size=full_size)

    assert float(loss(0.0)[0]) == pytest.approx(0.0, abs=1e-10)
    assert float(loss(3.0)[0]) == pytest.approx(3.0 * 0.04, rel=1e-4)
    # the projection's own steps leave it out (the refinements after it use it)
    assert float(loss(3.0, full_size=False)[0]) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="l2_full_weight must be >= 0"):
        ProjectionSettings(l2_full_weight=-1.0)


def test_editing_a_feature_refined_projection_warns(prior):
    y = _off_manifold(prior)
    inv = Invert(**FAST, feature_steps=2, feature_resolution=8).bind(prior)(y)
    with pytest.warns(UserWarning, match="refined by a feature offset"):
        result = Edit(policy="continue", **FAST).bind(prior)(y, prior.w[0] - prior.w[1], [0.0], projection=inv)
    assert torch.allclose(result.images[:, 0], inv.images, atol=1e-5)  # strength 0 = the refined render


def test_feature_steps_per_task_and_overrides():
    quick = task_settings("quick")
    assert quick.for_task("invert").feature_steps == QUICK_FEATURE and quick.for_task("edit").feature_steps == 0
    assert quick.for_task("invert").pivotal_steps == 0 and quick.for_task("superres").feature_steps == 0
    assert task_settings("full").for_task("invert").feature_steps > QUICK_FEATURE
    for preset in ("quick", "full", "pplus"):  # every preset's inversion fits the same blocks
        assert task_settings(preset).for_task("invert").feature_resolution == FEATURE_RESOLUTION
    assert Invert(feature_steps=0).projection_settings().feature_steps == 0
    assert Invert(l2_full_weight=0).projection_settings().l2_full_weight == 0
    with pytest.raises(ValueError, match="feature_steps must be >= 0"):
        Invert(feature_steps=-1)
    with pytest.raises(ValueError, match="feature_steps must be >= 0"):
        ProjectionSettings(feature_steps=-2)
    with pytest.raises(ValueError, match="feature_resolution needs at least one block"):
        Invert(feature_resolution=[])  # refused when the task is built, before any photo is read
