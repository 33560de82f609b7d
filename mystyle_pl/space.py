"""PersonalSpace: the person's region of latent space, spanned by the anchors of a prior.

Given anchors ``A [N, w_dim]`` (one ``w`` per album photo):

* ``P_beta = { sum_i a_i w_i : sum_i a_i = 1, a_i >= -beta }``: ``beta = 0`` is the convex
  hull of the anchors; a larger ``beta`` dilates it.
* ``P+``: one coefficient vector per generator layer, ``a [num_ws, N]``, giving
  ``ws [num_ws, w_dim]`` (each layer's ``w`` in ``P_beta``).

Parametrisation (as the official MyStyle code, google/mystyle ``reconstruct/alpha_projector.py``,
``get_constrained_alpha_plus``): the optimiser holds unconstrained ``raw`` coefficients and

    a = softplus(raw + beta, sharpness) - beta ;  a = a / sum(a)

with ``sharpness = 100`` (torch's ``softplus(x, beta=100)``), so every ``a_i > -beta`` (up to
the normalisation) and ``sum a = 1``. ``beta=None`` skips the softplus (the affine hull; the
official ``--beta None``). In P+ the raw coefficients are ``alpha [N]`` shared by every layer
plus per-layer offsets ``delta [num_ws, N]``; the official penalties are
``10 * sum_{l < 12} ||delta_l||`` on the coarse layers and ``10 * mean_l (sum(raw_l) - 1)^2``.

Also here: sampling new points of the person (the official ``sample_from_P0``: 3 random
anchors with uniform(0, 1) weights normalised, or a Dirichlet option), interpolation between
anchors, projection of a W direction onto the span of the anchors, and the nearest point of
``P_beta`` to any ``w`` (projected gradient on the dilated simplex; no cvxpy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BETA = 0.03  # official project.py --beta default
DEFAULT_SHARPNESS = 100.0  # official softplus(beta=100)


def _check_last_dim(x: torch.Tensor, size: int, name: str, dims: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != size:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape {dims}, got {shape}")


def project_to_shifted_simplex(v: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Euclidean projection of each row of ``v [..., N]`` onto ``{a : sum a = 1, a >= -beta}``.

    With ``b = a + beta`` the set is the simplex ``{b >= 0, sum b = r}``, ``r = 1 + N beta``;
    its projection is the sort-based algorithm (Held et al. 1974; Duchi et al. 2008):
    ``b = max(v + beta - theta, 0)`` with the threshold ``theta`` found from the sorted values.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    n = v.shape[-1]
    radius = 1.0 + n * beta
    b = v + beta
    u, _ = torch.sort(b, dim=-1, descending=True)
    css = u.cumsum(dim=-1) - radius
    index = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    cond = (u - css / index) > 0
    # rho: the largest (1-based) index where cond holds (cond[0] always holds).
    rho = (cond * index).amax(dim=-1, keepdim=True)
    theta = css.gather(-1, rho.long() - 1) / rho
    return (b - theta).clamp_min(0) - beta


class PersonalSpace(nn.Module):
    """``P_beta`` / ``P+`` over the anchors of a personal prior.

    A module only so that ``.to(device)`` moves the anchors (a non-persistent buffer); it has
    no parameters. Coefficients are ``a [B, N]`` (W) or ``a [B, num_ws, N]`` (P+).
    """

    anchors: torch.Tensor

    def __init__(
        self,
        anchors: torch.Tensor,  # [N, w_dim] the anchors' latent codes (W space)
        num_ws: int,  # generator layers receiving a w (P+ has one coefficient vector per layer)
        beta: float | None = DEFAULT_BETA,  # dilation: a_i >= -beta; 0 = convex hull; None = affine hull
        sharpness: float = DEFAULT_SHARPNESS,  # softplus sharpness of the parametrisation (official 100)
    ) -> None:
        super().__init__()
        if not isinstance(anchors, torch.Tensor) or anchors.ndim != 2 or anchors.shape[0] < 1:
            shape = tuple(anchors.shape) if isinstance(anchors, torch.Tensor) else type(anchors).__name__
            raise ValueError(f"anchors must have shape [N, w_dim] with N >= 1, got {shape}")
        if num_ws < 1:
            raise ValueError(f"num_ws must be >= 1, got {num_ws}")
        if beta is not None and beta < 0:
            raise ValueError(f"beta must be >= 0 or None, got {beta}")
        if sharpness <= 0:
            raise ValueError(f"sharpness must be > 0, got {sharpness}")
        self.register_buffer("anchors", anchors.detach().float().clone(), persistent=False)
        self.num_ws = int(num_ws)
        self.beta = beta
        self.sharpness = float(sharpness)

    @classmethod
    def from_prior(cls, prior, **kwargs) -> PersonalSpace:
        """The space of a :class:`~mystyle_pl.prior.PersonalPrior` (its anchors ``prior.w``)."""
        return cls(prior.w, num_ws=prior.generator.num_ws, **kwargs)

    @property
    def num_anchors(self) -> int:
        return self.anchors.shape[0]

    @property
    def w_dim(self) -> int:
        return self.anchors.shape[1]

    def extra_repr(self) -> str:
        return f"num_anchors={self.num_anchors}, w_dim={self.w_dim}, num_ws={self.num_ws}, beta={self.beta}"

    # ------------------------------------------------------------------ parametrisation

    def _check_coeffs(self, a: torch.Tensor, name: str) -> None:
        if not isinstance(a, torch.Tensor) or a.ndim not in (2, 3) or a.shape[-1] != self.num_anchors:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(
                f"{name} must have shape [B, N={self.num_anchors}] or [B, num_ws={self.num_ws}, "
                f"N={self.num_anchors}], got {shape}"
            )
        if a.ndim == 3 and a.shape[1] != self.num_ws:
            raise ValueError(
                f"{name} must have shape [B, num_ws={self.num_ws}, N={self.num_anchors}], got {tuple(a.shape)}"
            )

    def coefficients(self, raw: torch.Tensor) -> torch.Tensor:
        """Constrained coefficients from raw ones (``[B, N]`` or ``[B, num_ws, N]``, same shape out).

        ``a = softplus(raw + beta, sharpness) - beta`` normalised to ``sum a = 1`` (official
        ``get_constrained_alpha_plus``); with ``beta=None`` only the normalisation.
        """
        self._check_coeffs(raw, "raw")
        a = raw
        if self.beta is not None:
            a = F.softplus(a + self.beta, beta=self.sharpness) - self.beta
        return a / a.sum(dim=-1, keepdim=True)

    def to_w(self, a: torch.Tensor) -> torch.Tensor:
        """``a [B, N]`` -> ``w [B, w_dim]`` (``a @ A``)."""
        if a.ndim != 2:
            raise ValueError(f"a must have shape [B, N={self.num_anchors}], got {tuple(a.shape)}")
        self._check_coeffs(a, "a")
        return a @ self.anchors.to(a.dtype)

    def to_ws(self, a: torch.Tensor) -> torch.Tensor:
        """``a [B, num_ws, N]`` -> ``ws [B, num_ws, w_dim]``; ``a [B, N]`` is broadcast to every layer."""
        self._check_coeffs(a, "a")
        if a.ndim == 2:
            return self.to_w(a).unsqueeze(1).expand(-1, self.num_ws, -1)
        return a @ self.anchors.to(a.dtype)

    def init_raw(self, batch: int, plus: bool = False, device: torch.device | str | None = None) -> torch.Tensor:
        """Raw coefficients at the mean of the anchors: every entry ``1 / N`` (official init).

        ``[B, N]``, or ``[B, num_ws, N]`` when ``plus`` (the per-layer offsets of the official
        code start at zero, so every layer starts at the same mix). Fresh leaf tensors.
        """
        device = self.anchors.device if device is None else device
        shape = (batch, self.num_ws, self.num_anchors) if plus else (batch, self.num_anchors)
        return torch.full(shape, 1.0 / self.num_anchors, device=device)

    def penalties(
        self,
        raw: torch.Tensor,  # [B, N] or [B, num_ws, N]: the raw coefficients (alpha, or alpha + delta in P+)
        delta: torch.Tensor | None = None,  # [B, num_ws, N] per-layer offsets (P+), None in W
        delta_weight: float = 10.0,  # official deltas_reg_weight
        sum_weight: float = 10.0,  # official sum_1_reg_weight
        delta_layers: int | None = None,  # layers whose offsets are penalised; None: the coarse 2/3 (12 of 18)
        smooth: float = 0.0,  # > 0: ||delta_l|| replaced by sqrt(||delta_l||^2 + smooth^2) - smooth
    ) -> torch.Tensor:
        """Per-image penalties ``[B]``: ``delta_weight * sum_{l < delta_layers} ||delta_l||``
        ``+ sum_weight * mean_l (sum_i raw_li - 1)^2`` (official ``regularization_loss``; the
        sum term acts on the *raw* coefficients, before the softplus and normalisation).

        ``smooth`` > 0 gives the norm a continuous gradient at 0 (a pseudo-Huber norm, within
        ``smooth`` of the exact one): a line search (L-BFGS) trusts the gradient, and at the official
        start (every offset 0) the exact norm's kink makes every step along it an ascent.
        """
        self._check_coeffs(raw, "raw")
        sums = raw.sum(dim=-1)  # [B] or [B, num_ws]
        penalty = sum_weight * (sums - 1).square().reshape(raw.shape[0], -1).mean(dim=1)
        if delta is not None:
            if delta.ndim != 3 or delta.shape[1:] != (self.num_ws, self.num_anchors):
                raise ValueError(
                    f"delta must have shape [B, num_ws={self.num_ws}, N={self.num_anchors}], got {tuple(delta.shape)}"
                )
            layers = self.coarse_layers(delta_layers)
            coarse = delta[:, :layers]
            if smooth > 0:
                norms = (coarse.square().sum(dim=-1) + smooth**2).sqrt() - smooth
            else:
                norms = coarse.norm(dim=-1)
            penalty = penalty + delta_weight * norms.sum(dim=1)
        return penalty

    def coarse_layers(self, delta_layers: int | None = None) -> int:
        """Number of coarse layers whose offsets are penalised (official: 12 of 18 -> 2/3 of num_ws)."""
        if delta_layers is None:
            return round(self.num_ws * 12 / 18)
        return max(0, min(int(delta_layers), self.num_ws))

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        n: int,  # number of points
        k: int | None = 3,  # anchors mixed per point (official 3); None = all anchors
        method: str = "official",  # "official": uniform(0,1) weights normalised; "dirichlet": Dirichlet(alpha)
        alpha: float = 1.0,  # Dirichlet concentration (method="dirichlet")
        generator: torch.Generator | None = None,  # seeds the draw (CPU generator)
        return_coefficients: bool = False,  # also return a [n, N]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """New points of the person in the convex hull ``P_0``: ``w [n, w_dim]``.

        Each point mixes ``k`` distinct anchors chosen at random (official ``sample_from_P0``).
        """
        if method not in ("official", "dirichlet"):
            raise ValueError(f"method must be 'official' or 'dirichlet', got {method!r}")
        num = self.num_anchors
        k = num if k is None else int(k)
        if not 1 <= k <= num:
            raise ValueError(f"k must be in [1, N={num}], got {k}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        gen = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        index = torch.rand(n, num, generator=gen).argsort(dim=1)[:, :k]  # k distinct anchors per point
        if method == "official":
            weights = torch.rand(n, k, generator=gen)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=gen))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                weights = torch.distributions.Dirichlet(torch.full((k,), float(alpha))).sample((n,))
        weights = weights / weights.sum(dim=1, keepdim=True)
        a = torch.zeros(n, num).scatter_(1, index, weights).to(self.anchors.device)
        w = self.to_w(a)
        return (w, a) if return_coefficients else w

    def interpolate(self, i: int, j: int, steps: int) -> torch.Tensor:
        """``steps`` points from anchor ``i`` to anchor ``j`` (both included): ``w [steps, w_dim]``."""
        for name, idx in (("i", i), ("j", j)):
            if not -self.num_anchors <= idx < self.num_anchors:
                raise IndexError(f"anchor index {name}={idx} out of range for N={self.num_anchors}")
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        t = torch.linspace(0, 1, steps, device=self.anchors.device).unsqueeze(1)
        return (1 - t) * self.anchors[i] + t * self.anchors[j]

    # ------------------------------------------------------------------ geometry

    def span_basis(self, centred: bool = True, rcond: float = 1e-6) -> torch.Tensor:
        """Orthonormal basis ``[r, w_dim]`` (float64) of the anchors' span.

        ``centred`` (default): the directions of the affine hull, ``span(A - mean(A))``, which is
        where differences of points of ``P_beta`` live; ``False``: the linear span of ``A`` (the
        official ``project_latents_to_spanned_subspace``). Via the SVD, so rank deficiency and
        ``N > w_dim`` are handled (singular values below ``rcond * s_max`` are dropped).
        """
        a = self.anchors.double()
        if centred:
            a = a - a.mean(dim=0, keepdim=True)
        _, s, vh = torch.linalg.svd(a, full_matrices=False)
        if s.numel() == 0 or s[0] == 0:
            return vh[:0]
        return vh[s > rcond * s[0]]

    def project_direction(self, n: torch.Tensor, centred: bool = True, rcond: float = 1e-6) -> torch.Tensor:
        """The component of W direction(s) ``n [w_dim]`` or ``[B, w_dim]`` in the anchors' span.

        Equals ``A_c^T (A_c A_c^T)^+ A_c n`` (least squares); idempotent; same shape and dtype out.
        """
        _check_last_dim(n, self.w_dim, "n", f"[w_dim={self.w_dim}] or [B, w_dim={self.w_dim}]")
        if n.ndim > 2:
            raise ValueError(f"n must have shape [w_dim={self.w_dim}] or [B, w_dim={self.w_dim}], got {tuple(n.shape)}")
        basis = self.span_basis(centred=centred, rcond=rcond)
        out = (n.double() @ basis.T) @ basis
        return out.to(n.dtype)

    def nearest(
        self,
        w: torch.Tensor,  # [..., w_dim]: points in W (e.g. [B, w_dim] or W+ [B, num_ws, w_dim])
        beta: float | None = None,  # dilation; None: this space's beta (0 if the space has beta=None)
        max_iter: int = 20000,  # projected-gradient iterations at most
        tol: float = 1e-10,  # stop when the coefficients move less than this (max abs, float64)
        init: torch.Tensor | None = None,  # [..., N] coefficients to start from (a warm start, e.g. the last
        # step's nearest point of a moving w; projected onto the feasible set first); None = the anchors' mean
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest point of ``P_beta`` to each ``w``: ``(w_proj [..., w_dim], a [..., N])``.

        Solves ``min_a ||A^T a - w||^2`` s.t. ``sum a = 1, a >= -beta`` by accelerated projected
        gradient descent (FISTA with adaptive restart, step ``1 / lambda_max(A A^T)``) in
        float64 on the Gram matrix, with the sort-based projection onto the shifted simplex.
        The problem is convex, so this is the global minimum (the official code calls cvxpy)
        whatever the start; a start near the answer (``init``) only makes it converge sooner.

        Raises ``ValueError`` for a ``w`` whose last dimension is not ``w_dim`` or an ``init`` whose
        shape is not ``[..., N]`` of ``w``'s leading dimensions.
        """
        _check_last_dim(w, self.w_dim, "w", f"[..., w_dim={self.w_dim}]")
        beta = (self.beta if self.beta is not None else 0.0) if beta is None else float(beta)
        lead = w.shape[:-1]
        anchors = self.anchors.double().to(w.device)
        target = w.detach().double().reshape(-1, self.w_dim)
        gram = anchors @ anchors.T  # [N, N]
        lin = target @ anchors.T  # [M, N]
        lipschitz = torch.linalg.eigvalsh(gram)[-1].clamp_min(1e-30)
        step = 1.0 / lipschitz
        num = self.num_anchors
        if init is None:
            a = torch.full((target.shape[0], num), 1.0 / num, dtype=torch.float64, device=w.device)
        else:
            if tuple(init.shape) != (*lead, num):
                raise ValueError(f"init must be coefficients [..., N] = {(*lead, num)}, got {tuple(init.shape)}")
            a = project_to_shifted_simplex(init.detach().double().to(w.device).reshape(-1, num), beta)
        y = a.clone()
        t = torch.ones(target.shape[0], 1, dtype=torch.float64, device=w.device)

        def objective(c: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((c @ gram) * c).sum(dim=1) - (c * lin).sum(dim=1)

        f_prev = objective(a)
        for _ in range(max_iter):
            a_next = project_to_shifted_simplex(y - step * (y @ gram - lin), beta)
            f_next = objective(a_next)
            t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            restart = (f_next > f_prev).unsqueeze(1)  # adaptive restart (per row): drop the momentum
            y = torch.where(restart, a_next, a_next + ((t - 1) / t_next) * (a_next - a))
            t = torch.where(restart, torch.ones_like(t), t_next)
            moved = (a_next - a).abs().max()
            a, f_prev = a_next, f_next
            if moved < tol:
                break
        w_proj = (a @ anchors).to(w.dtype).reshape(*lead, self.w_dim)
        return w_proj, a.to(w.dtype).reshape(*lead, num)

    def contains(self, w: torch.Tensor, tol: float = 1e-4, beta: float | None = None) -> torch.Tensor:
        """Whether each ``w [..., w_dim]`` lies in ``P_beta`` (distance to it ``<= tol``): bool ``[...]``."""
        w_proj, _ = self.nearest(w, beta=beta)
        return (w_proj.double() - w.double()).norm(dim=-1) <= tol
