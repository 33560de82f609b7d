"""W+ projection anchored to the person's space (``ProjectionSettings(method="wplus")``).

The official P+ projection (:class:`~.base.Projector`, ``method="pplus"``) optimises the anchors'
coefficients: every result is a mixture of the album's latent codes. With a CPU-sized album
(6-20 anchors from short inversions) no mixture reaches a new photo's pose, framing or light, and
its results barely depend on the input (``../shared/notes/fidelity-probes.md``). Here instead:

* the variable is a free ``w`` per generator layer (W+), in W units (Adam, ``w_lr``), **started**
  at the anchor whose render best matches the observation (a cheap scan of the anchors' renders
  at low resolution, :func:`scan_anchors`) rather than at the anchors' mean;
* the person's space enters as a **pull** per layer group: ``pull[g] x`` the mean, over the
  group's layers, of the squared distance of each layer's ``w`` from ``P_beta`` (its nearest point,
  :meth:`~mystyle_pl.space.PersonalSpace.nearest`), or from the anchors' affine span. Groups by
  the resolution a layer modulates (StyleGAN, Karras et al. 2019, 3.1): coarse 4-8 px (pose,
  face shape), middle 16-32 px (features, expression), fine 64 px and up (colour, light; free by
  default, as the paper leaves the fine layers of P+ free of the offsets' penalty).

The gradient of ``d(w, C)^2`` for a convex set ``C`` is ``2 (w - P_C(w))``, so the nearest point is
computed without gradient at each step and the penalty is ``||w - P_C(w).detach()||^2`` (exact).

>>> import torch
>>> from mystyle_pl.generators import StyleGAN2Generator
>>> from mystyle_pl.space import PersonalSpace
>>> G = StyleGAN2Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1)
>>> space = PersonalSpace(torch.randn(3, 8), num_ws=G.num_ws)
>>> p = AnchoredWPlusProjector(G, space, steps=2, lpips_weight=0.0, method="wplus")
>>> p.project(torch.zeros(1, 3, 8, 8)).ws.shape
torch.Size([1, 4, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..anchor_renders import RENDER_NOISE_MODE, render_anchors
from ..generators import Generator
from ..space import PersonalSpace
from .projection import ProjectionSettings
from .generic import WPlusProjector

GROUP_NAMES = ("coarse", "middle", "fine")
SCAN_SIZE = 64  # the anchors are compared with the observation at most at this size (pixels)


def layer_groups(resolutions: list[int]) -> torch.Tensor:
    """Group index of each ``ws`` slot: 0 coarse (<= 8 px), 1 middle (16-32 px), 2 fine (>= 64 px).

    >>> layer_groups([4, 8, 8, 16, 16, 32, 32, 64, 1024]).tolist()
    [0, 0, 0, 1, 1, 1, 1, 2, 2]
    """
    return torch.tensor([0 if r <= 8 else 1 if r <= 32 else 2 for r in resolutions], dtype=torch.long)


def scan_anchors(
    renders: torch.Tensor,  # [N, 3, S, S] the anchors' renders in [-1, 1] (S >= the scan size)
    y: torch.Tensor,  # [B, 3, H, W] observations in [-1, 1] (square; an aligned crop or its low-resolution copy)
    weights: torch.Tensor | None = None,  # [B or 1, 1, H, W] loss weights (1 = known, 0 = hole); None = uniform
) -> torch.Tensor:
    """Weighted mean squared distance ``[B, N]`` of each observation to each anchor's render, both
    area-down-sampled to ``min(H, 64)`` px: a scan of where in the album the photo starts.

    Raises ``ValueError`` for non-square observations."""
    if y.ndim != 4 or y.shape[-1] != y.shape[-2]:
        raise ValueError(f"scan_anchors needs square observations [B, 3, H, H], got {tuple(y.shape)}")
    size = min(int(y.shape[-1]), SCAN_SIZE, int(renders.shape[-1]))
    r = F.interpolate(renders.to(y), size=(size, size), mode="area")  # [N, 3, s, s]
    o = F.interpolate(y, size=(size, size), mode="area")  # [B, 3, s, s]
    w = torch.ones_like(o[:, :1]) if weights is None else F.interpolate(weights.to(y), size=(size, size), mode="area")
    w = w.expand(o.shape[0], 1, size, size)
    sq = (o.unsqueeze(1) - r.unsqueeze(0)).square().mean(dim=2)  # [B, N, s, s]
    return (sq * w.unsqueeze(1)[:, :, 0]).sum(dim=(2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1e-8).unsqueeze(1)


class AnchoredWPlusProjector(WPlusProjector):
    """Free W+ started at the best-matching anchor, pulled toward the person's space per layer group.

    Same interface and result as :class:`~.base.Projector`; ``coefficients`` of the result are each
    layer's coefficients of its nearest point of ``P_beta`` (``[B, num_ws, N]``).
    """

    description = "projecting (W+ anchored)"

    def __init__(
        self,
        generator: Generator,  # the (tuned) generator; frozen during the projection
        space: PersonalSpace,  # the person's space (anchors, beta)
        lpips=None,  # LPIPS module, forward(x, y, mask) -> [B]; None: LPIPS("alex") on first use
        settings: ProjectionSettings | None = None,  # steps, w_lr, pull, start, loss weights
        renders: torch.Tensor | None = None,  # [N, 3, S, S] the anchors' renders with constant noise (a prior
        # bundle's cache, PersonalPrior.anchor_renders); None = rendered at the first scan
        **overrides,  # fields of ProjectionSettings to replace
    ) -> None:
        settings = settings if settings is not None else ProjectionSettings(method="wplus")
        merged = {**settings.__dict__, **overrides}
        w_lr = merged.pop("w_lr")
        super().__init__(generator, lpips=lpips, settings=None, w_lr=w_lr, **merged)
        self.settings = ProjectionSettings(**merged, w_lr=w_lr)
        s = self.settings
        if space.num_ws != generator.num_ws or space.w_dim != generator.w_dim:
            raise ValueError(
                f"space has num_ws={space.num_ws}, w_dim={space.w_dim}; the generator has "
                f"num_ws={generator.num_ws}, w_dim={generator.w_dim}"
            )
        self.space = space
        self._groups = layer_groups(generator.ws_resolutions)
        self._group_sizes = torch.bincount(self._groups, minlength=3).clamp_min(1).float()
        self.layer_pull()  # checks the pull now, not at the first step
        if s.pull_target not in ("hull", "span"):
            raise ValueError(f"pull_target must be 'hull' or 'span', got {s.pull_target!r}")
        if s.start not in ("scan", "mean"):
            raise ValueError(f"start must be 'scan' or 'mean', got {s.start!r}")
        if renders is not None and (renders.ndim != 4 or renders.shape[0] != space.num_anchors or renders.shape[1] != 3):
            raise ValueError(f"renders must be [N={space.num_anchors}, 3, S, S] (one per anchor), got {tuple(renders.shape)}")
        self._cached_renders = renders
        self._renders: torch.Tensor | None = None
        self.start_index: torch.Tensor | None = None  # [B] the anchor each image of the last batch started at
        self._warm: torch.Tensor | None = None  # [B, L, N] the last nearest point's coefficients (hull target)

    # ------------------------------------------------------------------ the start

    def anchor_renders(self, device: torch.device) -> torch.Tensor:
        """The anchors' renders ``[N, 3, S, S]`` the start scan compares with: the prior bundle's cache
        (``renders`` given at construction, :mod:`mystyle_pl.anchor_renders`) when its noise is the
        settings', else rendered once here (``noise_mode`` of the settings, area-down-sampled to 128 px)."""
        if self._renders is None:
            cached = self._cached_renders
            if cached is not None and self.settings.noise_mode == RENDER_NOISE_MODE:
                self._renders = cached
            else:
                self._renders = render_anchors(self.generator, self.space.anchors, noise_mode=self.settings.noise_mode)
        return self._renders.to(device)

    def initial_ws(self, y: torch.Tensor, degrade, mask: torch.Tensor | None) -> torch.Tensor:
        g, space, batch = self.generator, self.space, y.shape[0]
        anchors = space.anchors.to(y.device)
        if self.settings.start == "mean" or y.shape[-1] != y.shape[-2]:
            self.start_index = None
            w = anchors.mean(dim=0, keepdim=True).expand(batch, -1)
        else:
            weights = self.loss_weights(mask, int(y.shape[-1]), y.device)
            scores = scan_anchors(self.anchor_renders(y.device), y, weights)
            self.start_index = scores.argmin(dim=1)
            w = anchors[self.start_index]
        return w.unsqueeze(1).expand(batch, g.num_ws, g.w_dim).clone()

    def _project(self, y, degrade, mask, init):
        self._warm = None  # a new projection: the last one's nearest points say nothing of this one
        return super()._project(y, degrade, mask, init)

    # ------------------------------------------------------------------ the pull

    @torch.no_grad()
    def nearest(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each layer's nearest point of the target set and its coefficients: ``([B, L, w_dim], [B, L, N])``."""
        space = self.space.to(ws.device)
        if self.settings.pull_target == "span":
            anchors = space.anchors.double()
            centre = anchors.mean(dim=0)
            basis = space.span_basis(centred=True).to(ws.device)
            off = (ws.double() - centre) @ basis.T @ basis
            proj = centre + off
            coeffs = torch.linalg.lstsq(
                torch.cat([anchors.T, torch.ones(1, anchors.shape[0], dtype=anchors.dtype, device=ws.device)]),
                torch.cat([proj.reshape(-1, space.w_dim).T, torch.ones(1, proj.numel() // space.w_dim, dtype=proj.dtype, device=ws.device)]),
            ).solution.T.reshape(*ws.shape[:2], -1)
            return proj.to(ws.dtype), coeffs.to(ws.dtype)
        # Projected gradient in float64; a few hundred iterations reach the nearest point to far
        # below the W noise scale. Warm-started from the last call's coefficients when the batch
        # is the same: w moves little per step, so a few iterations suffice where a cold start
        # takes up to 300 (each one a handful of small ops whose overhead, not arithmetic, counts).
        warm = self._warm if self._warm is not None and self._warm.shape[:-1] == ws.shape[:-1] else None
        proj, coeffs = space.nearest(ws, max_iter=300, tol=1e-7, init=warm)
        self._warm = coeffs.detach()
        return proj, coeffs

    def layer_pull(self) -> torch.Tensor:
        """``[L]`` each layer's pull weight: its group's ``settings.pull`` / the group's layer count (a mean
        over the group's layers). Read from the settings at each call, so a task may change the pull
        between projections (:class:`~.superres.SuperResolve` for low-resolution observations)."""
        pull = self.settings.pull
        if len(pull) != 3 or any(p < 0 for p in pull):
            raise ValueError(f"pull must be 3 weights >= 0 (coarse, middle, fine), got {pull!r}")
        return torch.tensor(pull, dtype=torch.float32)[self._groups] / self._group_sizes[self._groups]

    def penalty(self, ws: torch.Tensor) -> torch.Tensor:
        layer_pull = self.layer_pull().to(ws.device, ws.dtype)
        if float(layer_pull.sum()) == 0.0:
            return ws.new_zeros(ws.shape[0])
        target, _ = self.nearest(ws)
        return ((ws - target).square().sum(dim=-1) * layer_pull).sum(dim=1)

    def coefficients_of(self, ws: torch.Tensor) -> torch.Tensor:
        return self.nearest(ws)[1]
