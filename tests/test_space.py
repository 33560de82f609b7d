"""PersonalSpace (P_beta / P+) and the shared batched projector: tiny, seeded, CPU."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.space import PersonalSpace, project_to_shifted_simplex
from mystyle_pl.tasks.base import ProjectionSettings, Projector

from .helpers import make_tiny_stylegan2


def _space(n=5, w_dim=8, num_ws=6, beta=0.03, seed=0) -> PersonalSpace:
    g = torch.Generator().manual_seed(seed)
    return PersonalSpace(torch.randn(n, w_dim, generator=g), num_ws=num_ws, beta=beta)


# ------------------------------------------------------------------ parametrisation


@pytest.mark.parametrize("plus", [False, True])
def test_coefficients_sum_to_one_and_respect_beta(plus):
    space = _space(beta=0.03)
    raw = space.init_raw(4, plus=plus)
    assert torch.allclose(space.coefficients(raw), torch.full_like(raw, 1 / 5), atol=1e-4)  # starts at the mean
    raw = raw + 0.3 * torch.randn(raw.shape, generator=torch.Generator().manual_seed(1))
    a = space.coefficients(raw)
    assert a.shape == raw.shape
    assert torch.allclose(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5)
    # softplus keeps every a_i > -beta before the normalisation (by the sum S of the shifted softplus;
    # the official parametrisation), so a_i >= -beta / S; the sum penalty keeps S near 1 in practice
    total = (torch.nn.functional.softplus(raw + 0.03, beta=100) - 0.03).sum(-1, keepdim=True)
    assert (a >= -0.03 / total - 1e-6).all()
    near = space.coefficients(space.init_raw(4, plus=plus) + 0.02 * torch.randn(raw.shape))
    assert near.min() >= -0.03 - 1e-3
    # very negative raw values saturate at -beta (before the normalisation)
    very = torch.tensor([[-5.0, 1.0, 1.0, 1.0, 1.0]])
    a = space.coefficients(very)
    assert -0.03 / 4 - 1e-3 < a[0, 0] < 0


def test_to_ws_and_penalties():
    space = _space(num_ws=6)
    a = space.coefficients(space.init_raw(2, plus=True))
    ws = space.to_ws(a)
    assert ws.shape == (2, 6, 8)
    assert torch.allclose(ws[:, 0], space.anchors.mean(0).expand(2, -1), atol=1e-5)
    assert torch.allclose(space.to_ws(a[:, 0]), ws, atol=1e-6)
    raw = space.init_raw(2)
    assert torch.allclose(space.penalties(raw), torch.zeros(2), atol=1e-10)  # sum 1 -> no penalty
    delta = torch.zeros(2, 6, 5)
    delta[0, 0, 0] = 0.5  # coarse layer (4 of 6 coarse) -> penalised; row 1: only a fine layer
    delta[1, 5, 0] = 0.5
    pen = space.penalties(raw.unsqueeze(1) + delta, delta, delta_weight=10, sum_weight=10)
    assert space.coarse_layers() == 4 and PersonalSpace(space.anchors, 18).coarse_layers() == 12
    expected0 = 10 * 0.5 + 10 * (0.5**2) / 6
    expected1 = 10 * (0.5**2) / 6
    assert torch.allclose(pen, torch.tensor([expected0, expected1]), atol=1e-5)


def test_shape_errors_name_dims():
    space = _space()
    with pytest.raises(ValueError, match="N=5"):
        space.coefficients(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="num_ws=6"):
        space.coefficients(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="w_dim=8"):
        space.nearest(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="w_dim=8"):
        space.project_direction(torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[N, w_dim\]"):
        PersonalSpace(torch.zeros(8), num_ws=2)


# ------------------------------------------------------------------ membership and nearest point


def test_hull_contains_anchors_and_mixes_excludes_far_points():
    space = _space(beta=0.0)
    mixes = torch.distributions.Dirichlet(torch.ones(5)).sample((6,)) @ space.anchors
    assert space.contains(space.anchors).all()
    assert space.contains(mixes).all()
    centre = space.anchors.mean(0)
    far = centre + 3 * (space.anchors - centre)
    assert not space.contains(far).any()
    # dilated: a point just outside the hull is inside P_beta for a large enough beta
    slightly = centre + 1.05 * (space.anchors[:1] - centre)
    assert not space.contains(slightly).any()
    assert space.contains(slightly, beta=0.1).all()


def test_shifted_simplex_projection():
    v = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for beta in (0.0, 0.03, 0.5):
        p = project_to_shifted_simplex(v, beta)
        assert torch.allclose(p.sum(-1), torch.ones(50, dtype=torch.float64))
        assert p.min() >= -beta - 1e-12
        assert torch.allclose(project_to_shifted_simplex(p, beta), p, atol=1e-12)  # idempotent
        # optimality (KKT): v - p = theta on the free coordinates
        resid = v - p
        free = p > -beta + 1e-9
        for r, f in zip(resid, free):
            assert torch.allclose(r[f], r[f][0].expand(int(f.sum())), atol=1e-9)


def test_nearest_inside_is_identity_outside_is_feasible():
    space = _space(beta=0.03)
    a = torch.distributions.Dirichlet(torch.ones(5)).sample((4,))
    w = a @ space.anchors
    w_proj, a_proj = space.nearest(w)
    assert torch.allclose(w_proj, w, atol=1e-4)
    far = 4 * torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    w_proj, a_proj = space.nearest(far)
    assert torch.allclose(a_proj.sum(-1), torch.ones(3), atol=1e-5)
    assert a_proj.min() >= -0.03 - 1e-6
    assert torch.allclose(w_proj, a_proj @ space.anchors, atol=1e-4)
    # W+ input [B, num_ws, w_dim]
    w_plus, a_plus = space.nearest(far.unsqueeze(1).expand(-1, 6, -1))
    assert w_plus.shape == (3, 6, 8) and a_plus.shape == (3, 6, 5)
    assert torch.allclose(w_plus[:, 2], w_proj, atol=1e-5)


def test_nearest_matches_brute_force_in_2d():
    anchors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 1.0]])
    beta = 0.1
    space = PersonalSpace(anchors, num_ws=1, beta=beta)
    targets = torch.tensor([[2.0, 2.0], [-1.0, -0.5], [0.5, -1.0], [0.3, 0.3]])
    w_proj, _ = space.nearest(targets)
    grid = torch.linspace(-beta, 1 + 2 * beta, 601, dtype=torch.float64)
    a1, a2 = torch.meshgrid(grid, grid, indexing="ij")
    a3 = 1 - a1 - a2
    ok = a3 >= -beta
    coeffs = torch.stack([a1[ok], a2[ok], a3[ok]], dim=1)
    points = coeffs @ anchors.double()
    for t, p in zip(targets.double(), w_proj.double()):
        brute = (points - t).norm(dim=1).min()
        assert (p - t).norm() <= brute + 1e-6
        assert (p - t).norm() >= brute - 5e-3  # the grid is 2e-3 fine


def test_nearest_warm_start_reaches_the_same_point_sooner():
    space = _space(n=12, w_dim=8, beta=0.03)
    far = 3 * torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(7))  # W+ points outside the hull
    cold, a_cold = space.nearest(far)
    # from any start the convex problem has one answer: a start elsewhere in the hull ends at the same point
    other = torch.distributions.Dirichlet(torch.ones(12)).sample((4, 6))
    warm, a_warm = space.nearest(far, init=other)
    assert torch.allclose(warm, cold, atol=1e-4)
    # the start is used: two iterations from the answer stay there, two from the mean do not get there
    moved = far + 0.01 * torch.randn(far.shape, generator=torch.Generator().manual_seed(8))
    truth, _ = space.nearest(moved)
    from_last, _ = space.nearest(moved, max_iter=2, init=a_cold)
    from_mean, _ = space.nearest(moved, max_iter=2)
    assert (from_last - truth).norm() < 0.1 * (from_mean - truth).norm()
    with pytest.raises(ValueError, match=r"init must be coefficients \[\.\.\., N\]"):
        space.nearest(far, init=a_cold[:, :3])


# ------------------------------------------------------------------ span projection


def _closed_form(anchors, n):
    a = anchors.double()
    ac = a - a.mean(0)
    return ac.T @ torch.linalg.pinv(ac @ ac.T, hermitian=True, rtol=1e-10) @ ac @ n.double()


def test_span_projection_closed_form_and_idempotent():
    space = _space(n=4, w_dim=8)
    n = torch.randn(8, generator=torch.Generator().manual_seed(5))
    n_span = space.project_direction(n)
    assert torch.allclose(n_span.double(), _closed_form(space.anchors, n), atol=1e-5)
    assert torch.allclose(space.project_direction(n_span), n_span, atol=1e-5)
    batch = torch.randn(3, 8, generator=torch.Generator().manual_seed(6))
    assert space.project_direction(batch).shape == (3, 8)
    # the official variant: the linear (uncentred) span
    a = space.anchors.double()
    official = a.T @ torch.linalg.inv(a @ a.T) @ a @ n.double()
    assert torch.allclose(space.project_direction(n, centred=False).double(), official, atol=1e-5)


def test_span_projection_stable_when_more_anchors_than_dims():
    g = torch.Generator().manual_seed(7)
    full = PersonalSpace(torch.randn(20, 8, generator=g), num_ws=2)
    n = torch.randn(8, generator=g)
    assert torch.allclose(full.project_direction(n), n, atol=1e-5)  # the span is all of W
    # 20 anchors in a 3-D affine subspace of an 8-D W: rank deficient, N > w_dim
    basis = torch.linalg.qr(torch.randn(8, 3, generator=g))[0].T
    anchors = torch.randn(20, 3, generator=g) @ basis + torch.randn(8, generator=g)
    space = PersonalSpace(anchors, num_ws=2)
    n_span = space.project_direction(n)
    assert torch.isfinite(n_span).all()
    assert torch.allclose(n_span.double(), (n.double() @ basis.T.double()) @ basis.double(), atol=1e-4)
    assert torch.allclose(space.project_direction(n_span), n_span, atol=1e-5)


# ------------------------------------------------------------------ sampling and interpolation


@pytest.mark.parametrize("method", ["official", "dirichlet"])
def test_samples_lie_in_the_hull(method):
    space = _space(n=6, beta=0.0)
    w, a = space.sample(10, k=3, method=method, generator=torch.Generator().manual_seed(0), return_coefficients=True)
    assert w.shape == (10, 8) and a.shape == (10, 6)
    assert ((a > 0).sum(1) == 3).all()
    assert torch.allclose(a.sum(1), torch.ones(10), atol=1e-6)
    assert space.contains(w).all()
    again = space.sample(10, k=3, method=method, generator=torch.Generator().manual_seed(0))
    assert torch.equal(w, again)  # seeded
    all_anchors = space.sample(4, k=None, method=method, alpha=0.5, generator=torch.Generator().manual_seed(1))
    assert space.contains(all_anchors).all()
    with pytest.raises(ValueError, match="method"):
        space.sample(2, method="gaussian")


def test_interpolation_endpoints_are_anchors():
    space = _space()
    path = space.interpolate(1, 3, steps=5)
    assert path.shape == (5, 8)
    assert torch.allclose(path[0], space.anchors[1]) and torch.allclose(path[-1], space.anchors[3])
    assert torch.allclose(path[2], (space.anchors[1] + space.anchors[3]) / 2, atol=1e-6)


# ------------------------------------------------------------------ projector


@pytest.fixture(scope="module")
def tiny():
    generator = make_tiny_stylegan2(resolution=16, seed=0)
    with torch.no_grad():
        anchors = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    return generator, PersonalSpace(anchors, num_ws=generator.num_ws, beta=0.03)


def _render(generator, w):
    with torch.no_grad():
        return generator.synthesis(generator.broadcast_w(w), noise_mode="const")


def test_settings_defaults_are_official():
    s = ProjectionSettings()
    assert (s.steps, s.lr, s.plus, s.l2_weight, s.lpips_weight) == (1000, 5e-3, True, 1.0, 1.0)
    assert (s.delta_penalty, s.sum_penalty, s.patience) == (10.0, 10.0, None)


def test_projector_recovers_a_point_inside(tiny):
    generator, space = tiny
    a_star = torch.tensor([[0.45, 0.3, 0.15, 0.1]])
    w_star = space.to_w(a_star)
    y = _render(generator, w_star)
    proj = Projector(generator, space, lpips_weight=0.0, plus=False, steps=300, lr=0.02)
    result = proj.project(y)
    assert result.coefficients.shape == (1, 4) and result.ws.shape == (1, generator.num_ws, generator.w_dim)
    assert result.steps_used == 300 and len(result.trace) == 300
    assert result.trace[-1] < 0.05 * result.trace[0]
    spread = (space.anchors - space.anchors.mean(0)).norm(dim=1).mean()
    assert (result.ws[0, 0] - w_star[0]).norm() < 0.1 * spread
    assert (result.coefficients - a_star).abs().max() < 0.05
    assert all(p.requires_grad for p in generator.parameters())  # the generator's flags are restored


def test_projector_early_stopping(tiny):
    generator, space = tiny
    y = _render(generator, space.anchors.mean(0, keepdim=True))  # the starting point: nothing to gain
    proj = Projector(generator, space, lpips_weight=0.0, steps=200, patience=5, min_delta=1e-4)
    result = proj.project(y)
    assert result.steps_used < 200
    assert len(result.trace) == result.steps_used


def test_projector_batch_independence(tiny):
    generator, space = tiny
    w = space.sample(3, generator=torch.Generator().manual_seed(2))
    y = _render(generator, w + 0.3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(3)))
    proj = Projector(generator, space, lpips_weight=0.0, steps=15, lr=0.02)
    both = proj.project(y)
    alone = proj.project(y[1:2])
    assert torch.allclose(both.ws[1:2], alone.ws, atol=1e-5)
    assert torch.allclose(both.coefficients[1:2], alone.coefficients, atol=1e-5)
    assert both.coefficients.shape == (3, generator.num_ws, 4)


def test_projector_with_lpips_mask_and_degradation():
    from mystyle_pl.losses import LPIPS

    generator = make_tiny_stylegan2(resolution=32, seed=1)
    with torch.no_grad():
        anchors = generator.mapping(torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    space = PersonalSpace(anchors, num_ws=generator.num_ws)
    y = _render(generator, anchors[:2])
    mask = torch.ones(2, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 0
    proj = Projector(generator, space, LPIPS("alex", pretrained=False), steps=3)
    result = proj.project(y * mask, degrade=lambda img: img * mask, mask=mask)
    assert result.images.shape == (2, 3, 32, 32) and result.final_loss.shape == (2,)
    assert torch.isfinite(result.final_loss).all()
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        proj.project(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="1 = known"):
        proj.project(y, mask=torch.ones(2, 3, 32, 32))


def test_projector_returns_the_best_state_seen(tiny):
    generator, space = tiny
    # Start next to the target (the uniform mix): large learning-rate steps overshoot and make things worse.
    y = _render(generator, space.to_w(torch.tensor([[0.27, 0.25, 0.25, 0.23]])))
    best = Projector(generator, space, lpips_weight=0.0, plus=False, steps=20, lr=0.5).project(y)
    last = Projector(generator, space, lpips_weight=0.0, plus=False, steps=20, lr=0.5, keep_best=False).project(y)
    assert max(best.trace) > 10 * min(best.trace)  # the loss did rise during the run
    assert best.final_loss.item() <= min(best.trace) + 1e-6
    assert last.final_loss.item() > best.final_loss.item()
