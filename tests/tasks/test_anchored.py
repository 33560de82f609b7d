"""W+ anchored projection, start scan, layer groups, presets and back-projection (tiny prior, CPU)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.generators.mobilestylegan import MobileStyleGANGenerator
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.space import PersonalSpace
from mystyle_pl.tasks import Inpaint, Invert, SuperResolve
from mystyle_pl.tasks.anchored import AnchoredWPlusProjector, layer_groups, scan_anchors
from mystyle_pl.tasks.consistency import agreement, back_project, consistency_psnr
from mystyle_pl.tasks.presets import PRESETS, task_settings

from ..helpers import make_tiny_stylegan2

R = 32


@pytest.fixture(scope="module")
def prior():
    generator = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = generator.mapping(torch.randn(6, generator.z_dim, generator=torch.Generator().manual_seed(1)))
    return PersonalPrior(generator, Anchors(w=w, names=[f"{i}.png" for i in range(6)]))


def _render(prior, w):
    with torch.no_grad():
        return prior.generator.synthesis(prior.generator.broadcast_w(w), noise_mode="const")


def test_ws_resolutions_and_layer_groups_follow_each_family():
    g = make_tiny_stylegan2(resolution=32)
    assert g.ws_resolutions == [4, 8, 8, 16, 16, 32, 32, 32] and len(g.ws_resolutions) == g.num_ws
    m = MobileStyleGANGenerator(z_dim=8, w_dim=8, channels=(16, 8, 8, 8), mapping_layers=1)
    # b4.conv, b8.{up,conv0,conv1}, b16.{...}, b32.{...}, to_img (Haar coefficients at half the 64 px image)
    assert m.ws_resolutions == [4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 32]
    assert layer_groups(m.ws_resolutions).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]


def test_scan_picks_the_anchor_whose_render_is_observed(prior):
    for k in (0, 3, 5):
        y = _render(prior, prior.w[k : k + 1])
        task = Invert(projection=task_settings("quick", steps=0, lpips_weight=0.0, face_weight=None)).bind(prior)
        task(y)
        assert task.projector.start_index.tolist() == [k]
    # also from the x8 low-resolution copy, and per image of a batch
    y = torch.cat([_render(prior, prior.w[2:3]), _render(prior, prior.w[4:5])])
    scores = scan_anchors(task.projector.anchor_renders(torch.device("cpu")), F.interpolate(y, size=(4, 4), mode="area"))
    assert scores.argmin(dim=1).tolist() == [2, 4]


def test_quick_budget_recovers_a_point_of_the_space(prior):
    """G(w) for w inside the hull (not an anchor) is recovered by the quick preset's 60 steps."""
    a = torch.tensor([[0.1, 0.5, 0.0, 0.2, 0.0, 0.2]])
    w_star = a @ prior.w
    y = _render(prior, w_star)
    # LPIPS needs >= 32 px real images: MSE alone here; uniform weights (the tiny images have no face)
    settings = task_settings("quick", lpips_weight=0.0, face_weight=None)
    assert settings.steps == 60
    task = Invert(projection=settings).bind(prior)
    result = task(y)
    start = (_render(prior, prior.w[task.projector.start_index]) - y).square().mean()
    err = (result.images - y).square().mean()
    # Tolerance: the quick budget must remove at least 85% of the start anchor's pixel error and
    # reach 24 dB (MSE 1.6e-2 on the [-1, 1] scale). On this tiny generator it removes 89% and
    # reaches 25.5 dB at 60 steps (26.6 dB at 100, 33 at 300): the bound fails on a schedule that
    # stalls, not on float noise.
    assert err < 0.15 * start
    assert float(result.consistency[0]) > 24.0


def test_pull_keeps_coarse_layers_near_the_space(prior):
    """A target outside the space: with a strong pull the coarse layers stay closer to P_beta."""
    y = _render(prior, prior.w[0:1] + 3.0 * torch.randn(1, prior.w.shape[1], generator=torch.Generator().manual_seed(3)))
    space = PersonalSpace.from_prior(prior)
    dists = []
    for pull in ((0.0, 0.0, 0.0), (10.0, 10.0, 0.0)):
        p = AnchoredWPlusProjector(prior.generator, space, settings=task_settings("quick", steps=40, lpips_weight=0.0, pull=pull))
        ws = p.project(y).ws
        near, _ = space.nearest(ws)
        dists.append(float((ws - near)[:, :3].norm(dim=-1).mean()))
    assert dists[1] < 0.5 * dists[0]


def test_a_projection_does_not_depend_on_the_one_before(prior):
    """The pull's nearest points are warm-started from the last step's; each projection starts afresh."""
    space = PersonalSpace.from_prior(prior)
    settings = task_settings("quick", steps=8, lpips_weight=0.0, pull=(1.0, 1.0, 0.1))
    y = _render(prior, prior.w[0:1] + 2.0 * torch.randn(1, prior.w.shape[1], generator=torch.Generator().manual_seed(4)))
    other = _render(prior, prior.w[5:6] - 2.0 * torch.randn(1, prior.w.shape[1], generator=torch.Generator().manual_seed(5)))
    fresh = AnchoredWPlusProjector(prior.generator, space, settings=settings).project(y).ws
    used = AnchoredWPlusProjector(prior.generator, space, settings=settings)
    used.project(other)
    again = used.project(y).ws
    # Tolerance: the nearest points are found to 1e-7 in their coefficients from whatever start, so 8
    # Adam steps (w_lr 0.05, i.e. ~0.05 per step in W) may differ only far below 1e-4; any state kept
    # from the first image (start, schedule, best state) would move w by a step or more.
    assert torch.allclose(again, fresh, atol=1e-4)


def test_face_weight_down_weights_the_background(prior):
    p = AnchoredWPlusProjector(prior.generator, PersonalSpace.from_prior(prior), settings=task_settings("quick", face_weight=0.1))
    w = p.loss_weights(None, 64, torch.device("cpu"))
    assert w.shape == (1, 1, 64, 64)
    assert float(w[0, 0, 36, 32]) == pytest.approx(1.0) and float(w[0, 0, 0, 0]) == pytest.approx(0.1)
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 30:40, 20:44] = 0
    assert float(p.loss_weights(mask, 64, torch.device("cpu"))[0, 0, 35, 32]) == 0.0  # holes stay holes


def test_back_projection_makes_the_result_explain_its_input(prior):
    truth = _render(prior, prior.w[1:2])
    y = F.interpolate(truth, size=(4, 4), mode="area")
    down = lambda x: F.interpolate(x, size=(4, 4), mode="area")  # noqa: E731
    rough = _render(prior, prior.w.mean(0, keepdim=True))
    before = float(consistency_psnr(rough, y, down)[0])
    fixed = back_project(rough, y, down, iterations=30)
    after = float(consistency_psnr(fixed, y, down)[0])
    assert after > 50.0 and after > before + 20  # 50 dB: the probes' x8 figure after 30 iterations
    # the detail the observation cannot see (the high frequencies) is the projection's
    hp = lambda x: x - F.interpolate(down(x), size=x.shape[-2:], mode="bicubic", align_corners=False)  # noqa: E731
    assert (hp(fixed) - hp(rough)).abs().mean() < 0.5 * (hp(truth) - hp(rough)).abs().mean()


def test_detail_gate_keeps_the_projections_detail_only_where_it_explains_the_input():
    """A projection that explains its input keeps its detail under the gate; an outline the input does
    not show (the projection's head elsewhere) is a second outline after plain back-projection and
    mostly gone after the gated one; both reproduce the input."""
    gen = torch.Generator().manual_seed(0)
    down = lambda x: F.interpolate(x, size=(8, 8), mode="area")  # noqa: E731
    truth = F.interpolate(torch.rand(1, 3, 8, 8, generator=gen) * 1.6 - 0.8, size=(64, 64), mode="bicubic")
    detail = 0.3 * torch.randn(1, 3, 64, 64, generator=gen)
    explained = truth + detail - F.interpolate(down(detail), size=(64, 64), mode="bicubic")  # D(explained) ~ y
    y = down(truth)
    a = agreement(explained, y, down, tau=0.5)
    assert a.shape == (1, 1, 64, 64) and float(a.min()) > 0.8  # the residual is interpolation error only
    outline = torch.zeros(1, 1, 64, 64)
    outline[..., 8:56, 20:36] = 1.0  # a bright band two input pixels wide (a head where the input has none)
    wrong = truth + 1.5 * outline
    plain = back_project(wrong, y, down, iterations=30)
    gated = back_project(wrong, y, down, iterations=30, detail_gate=0.5)
    for result in (plain, gated):
        assert float(consistency_psnr(result, y, down)[0]) > 40.0  # both explain the input (30 iterations)
    bar = outline.bool().expand(1, 3, 64, 64)
    assert (gated - truth)[bar].abs().mean() < 0.5 * (plain - truth)[bar].abs().mean()
    # where the projection explains its input the gate changes little: within 0.05 of the plain result
    assert (back_project(explained, y, down, 30, detail_gate=0.5) - back_project(explained, y, down, 30)).abs().mean() < 0.05
    with pytest.raises(ValueError, match="must be > 0"):
        back_project(wrong, y, down, detail_gate=0.0)
    with pytest.raises(ValueError, match="detail_gate must be > 0"):
        SuperResolve(detail_gate=-1.0)


def test_superres_reports_raw_and_data_consistent_results(prior):
    truth = _render(prior, 0.7 * prior.w[1:2] + 0.3 * prior.w[2:3])  # not an anchor: the start is not exact
    y = F.interpolate(truth, size=(8, 8), mode="area")
    task = SuperResolve(projection=task_settings("quick", steps=10, lpips_weight=0.0)).bind(prior)
    result = task(y)
    assert result.raw.shape == result.images.shape == (1, 3, R, R)
    assert float(result.consistency[0]) > 50.0 > float(result.raw_consistency[0])
    raw_only = SuperResolve(projection=task_settings("quick", steps=10, lpips_weight=0.0), back_projection=0).run(prior, y)
    assert torch.equal(raw_only.images, raw_only.raw)


def test_presets_resolve_and_refuse_unknown_names():
    assert task_settings("official").steps == 1000 and task_settings("official").method == "pplus"
    assert task_settings("quick", steps=None).steps == PRESETS["quick"]["steps"]  # None keeps the preset's value
    assert task_settings("full").steps > task_settings("quick").steps
    with pytest.raises(ValueError, match="unknown projection preset 'fast'"):
        task_settings("fast")
    with pytest.raises(ValueError, match="unknown projection setting"):
        task_settings("quick", stepz=3)


def test_inversion_fits_the_whole_photo_unpulled_under_quick_unless_told_otherwise(prior):
    """The quick preset's per-task values: inversion observes the whole photo, so it fits all of it
    (uniform weights) free of the pull; other tasks keep the preset's values; a value the caller
    gives wins over the per-task one, in task_settings and as a task keyword."""
    quick = task_settings("quick")
    invert = Invert(projection=quick).bind(prior).projector.settings
    assert invert.face_weight is None and invert.pull == (0.0, 0.0, 0.0)
    inpaint = Inpaint(projection=quick).bind(prior).projector.settings
    assert inpaint.face_weight == PRESETS["quick"]["face_weight"] and inpaint.pull == PRESETS["quick"]["pull"]
    told = Invert(projection=task_settings("quick", face_weight=0.5)).bind(prior).projector.settings
    assert told.face_weight == 0.5 and told.pull == (0.0, 0.0, 0.0)
    assert Invert(projection=quick, pull=(0.1, 0.1, 0.0)).bind(prior).projector.settings.pull == (0.1, 0.1, 0.0)
    assert Invert(preset="quick").bind(prior).projector.settings == invert  # a preset name resolves the same way


def test_superres_fits_the_face_only_when_back_projection_supplies_the_background(prior):
    quick = task_settings("quick")
    assert quick.face_weight > 0 and quick.face_weight_consistent == 0.0
    assert SuperResolve(projection=quick).bind(prior).projector.settings.face_weight == 0.0
    assert SuperResolve(projection=quick, back_projection=0).bind(prior).projector.settings.face_weight == quick.face_weight
    assert Inpaint(projection=quick).bind(prior).projector.settings.face_weight == quick.face_weight  # (inversion: per_task)
    # blind inputs are corrected once; the preset keeps their face-only weighting, face_weight_blind sets their own
    assert quick.face_weight_blind is None
    assert SuperResolve(projection=quick, blind=True).bind(prior).projector.settings.face_weight == 0.0
    assert SuperResolve(blind=True, face_weight_blind=0.7).bind(prior).projector.settings.face_weight == 0.7
    assert SuperResolve(projection=replace(quick, face_weight_blind=0.3), blind=True).bind(prior).projector.settings.face_weight == 0.3
    assert SuperResolve(projection=replace(quick, face_weight_blind=0.3)).bind(prior).projector.settings.face_weight == 0.0
    # a face_weight the caller gives applies to every input, blind or back-projected
    assert SuperResolve(face_weight=0.5).bind(prior).projector.settings.face_weight == 0.5
    assert SuperResolve(projection=quick, face_weight=0.5, blind=True).bind(prior).projector.settings.face_weight == 0.5


def test_span_target_is_the_affine_span_with_coefficients_summing_to_one(prior):
    space = PersonalSpace.from_prior(prior)
    p = AnchoredWPlusProjector(prior.generator, space, settings=task_settings("quick", pull_target="span"))
    a = torch.tensor([[1.5, -0.5, 0.2, -0.2, 0.0, 0.0]])  # outside the hull, inside the affine span
    inside = (a @ prior.w).unsqueeze(1).expand(1, prior.generator.num_ws, -1)
    proj, coeffs = p.nearest(inside)
    assert torch.allclose(proj, inside, atol=1e-4)  # a point of the span is its own nearest point
    assert torch.allclose(coeffs.sum(-1), torch.ones(1, prior.generator.num_ws), atol=1e-4)
    assert torch.allclose(coeffs @ prior.w, proj, atol=1e-3)
    assert float(p.penalty(inside)[0]) < 1e-6
