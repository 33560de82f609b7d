"""Super-resolution: ``D`` = area down-sampling of ``G(w)`` to the input's size.

The input is a low-resolution face crop ``[B, 3, h, h]`` (in ``[-1, 1]``) whose size divides the
output resolution ``R`` by an integer factor 2..32. ``R`` is the generator's resolution, or
``output_resolution`` when given (e.g. 256 with a 1024 generator: ``G(w)`` is area-down-sampled
to 256 first, and a 16 px input is x16). Blind mode (for real degraded photos) puts a fixed
Gaussian blur (at ``R``) and Gaussian noise into ``D``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..imaging import area_downsample  # D's down-sampling (also importable from here)
from .base import Batch, Output, ProjectingTask, check_images
from .consistency import (
    BACK_PROJECTION_ITERATIONS,
    BLIND_BACK_PROJECTION_ITERATIONS,
    DETAIL_GATE,
    back_project,
    consistency_psnr,
)
from .projection import ProjectionResult

MIN_FACTOR, MAX_FACTOR = 2, 32
LPIPS_MIN_SIZE = 32  # LPIPS (AlexNet) needs inputs of at least 31 pixels


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian kernel, radius ``ceil(3 sigma)``."""
    radius = max(1, int(torch.tensor(3.0 * sigma).ceil()))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` (replicate padding); ``sigma <= 0``: unchanged."""
    if sigma <= 0:
        return images
    k = gaussian_kernel(sigma).to(images)
    c, r = images.shape[1], k.numel() // 2
    x = F.pad(images, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Downsample:
    """The degradation operator ``D``: (blind: Gaussian blur) -> area down-sampling -> (blind: noise)."""

    def __init__(
        self,
        size: int,  # output side in pixels (the input's size)
        blur_sigma: float = 0.0,  # Gaussian blur at the output resolution R, in pixels; 0 = none
        noise_std: float = 0.0,  # std of Gaussian noise added after down-sampling (in [-1, 1] units); 0 = none
        seed: int = 0,  # seeds the noise draws (a fresh draw per call, reproducible)
    ) -> None:
        self.size, self.blur_sigma, self.noise_std = int(size), float(blur_sigma), float(noise_std)
        self._gen = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = area_downsample(gaussian_blur(images, self.blur_sigma), self.size)
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn(x.shape, generator=self._gen).to(x)
        return x


def check_factor(images: torch.Tensor, resolution: int, factor: int | None, name: str = "images") -> int:
    """The up-sampling factor ``R / h`` of a low-resolution input, checked (2..32, integer, square)."""
    h, w = images.shape[2:]
    if h != w:
        raise ValueError(f"{name} must be square [B, 3, h, h], got {tuple(images.shape)}")
    if h > resolution:
        raise ValueError(
            f"{name} is {h}x{w}, larger than the output resolution {resolution}: "
            "super-resolution needs a smaller input (use invert for a full-size crop)"
        )
    if resolution % h != 0:
        raise ValueError(f"{name} is {h}x{w}: its size must divide the output resolution {resolution}")
    actual = resolution // h
    if factor is not None and int(factor) != actual:
        raise ValueError(f"factor={factor} does not match {name}: {h}x{w} -> {resolution} is a factor {actual}")
    if not MIN_FACTOR <= actual <= MAX_FACTOR:
        raise ValueError(
            f"{name} is {h}x{w}: factor {actual} to the output resolution {resolution} is outside {MIN_FACTOR}..{MAX_FACTOR}"
        )
    return actual


@dataclass
class SuperResolveResult(ProjectionResult):
    """``images`` is the high-resolution result in [-1, 1], at ``output_resolution`` (back-projected
    G(ws) unless ``back_projection=0``)."""

    degraded: torch.Tensor | None = None  # [B, 3, h, h] D(images) without noise: compare with the input
    factor: int = 0  # R / h
    raw: torch.Tensor | None = None  # [B, 3, R, R] the projection G(ws) before back-projection (= images when off)
    consistency: torch.Tensor | None = None  # [B] PSNR (dB) of D(images) against the input
    raw_consistency: torch.Tensor | None = None  # [B] PSNR (dB) of D(raw) against the input
    pull: tuple[float, float, float] | None = None  # the W+ pull it was projected with (SuperResolve.pull_for)


class SuperResolve(ProjectingTask):
    """Super-resolve low-resolution face crops ``[B, 3, h, h]`` in ``[-1, 1]`` to ``R`` (``R / h`` in 2..32).

    ``SuperResolve(blind=True).run(prior, images, factor=8)`` -> :class:`SuperResolveResult`; raises
    ``ValueError`` for a size that no factor in 2..32 maps to the output resolution."""

    name = "superres"
    low_resolution = True

    def __init__(
        self,
        blind: bool = False,  # blind mode: a Gaussian blur and noise in D (real degraded photos)
        blur_sigma: float | None = None,  # blind blur at the output resolution, px; None = 0.5 x factor
        noise_std: float = 0.02,  # blind noise std ([-1, 1] units)
        seed: int = 0,  # seeds the blind noise
        output_resolution: int | None = None,  # R of the result when no factor is given (<= the generator's, a
        # divisor of it); None = the generator's
        back_projection: int = BACK_PROJECTION_ITERATIONS,  # iterations making D(result) match the input
        # (tasks.consistency.back_project: the input's low frequencies, the projection's detail); 0 = the raw projection
        blind_back_projection: int = BLIND_BACK_PROJECTION_ITERATIONS,  # blind mode: iterations through the blind
        # operator (blur, area; no noise) instead; 0 with back_projection > 0 = none either
        detail_gate: float | None = DETAIL_GATE,  # back-projection keeps the projection's detail where D(raw)
        # explains the input (weight exp(-(residual / detail_gate)^2), residual in [-1, 1] units) and starts from
        # the input's bicubic up-sampling elsewhere (tasks.consistency.agreement); None = everywhere
        **kwargs,  # ProjectingTask arguments (preset, steps, w_lr, pull, beta, ...)
    ) -> None:
        super().__init__(**kwargs)
        if back_projection < 0 or blind_back_projection < 0:
            raise ValueError(f"back_projection and blind_back_projection must be >= 0 iterations, got {back_projection}, {blind_back_projection}")
        if detail_gate is not None and not float(detail_gate) > 0:
            raise ValueError(f"detail_gate must be > 0 (a residual in [-1, 1] units), or null / None for no gate; got {detail_gate}")
        self.detail_gate = None if detail_gate is None else float(detail_gate)
        self.blind, self.blur_sigma, self.noise_std, self.seed = blind, blur_sigma, noise_std, seed
        self.back_projection, self.output_resolution = int(back_projection), output_resolution
        self.blind_back_projection = int(blind_back_projection)

    def _bind(self, prior, lpips, **kwargs) -> None:
        super()._bind(prior, lpips, **kwargs)
        s = self.projector.settings
        if self.blind and s.face_weight_blind is not None:
            # one correction through the blind operator: the raw projection supplies the background too
            self.projector.settings = replace(s, face_weight=s.face_weight_blind)
        elif self.back_projection and s.face_weight_consistent is not None:
            # the back-projection takes the background from the input: the projection fits the face
            self.projector.settings = replace(s, face_weight=s.face_weight_consistent)
        full = int(prior.generator.img_resolution)
        out = self.output_resolution
        if out is not None and (out > full or full % int(out) != 0):
            raise ValueError(f"output_resolution={out} must divide the generator's resolution {full}")
        self.output_resolution = int(out) if out is not None else full

    def to_output(self, images: torch.Tensor, resolution: int | None = None) -> torch.Tensor:
        """``G(w)`` at the generator's resolution -> the result at ``resolution`` (default
        ``output_resolution``; area down-sampling)."""
        resolution = self.output_resolution if resolution is None else int(resolution)
        if images.shape[-1] == resolution:
            return images
        return area_downsample(images, resolution)

    def operator(self, size: int, factor: int, noise: bool = True, blur: bool = True):
        """``D`` for an input of ``size x size`` (``factor`` = output resolution / ``size``): G(w) at
        the generator's resolution -> ``size x factor`` -> (blind: blur) -> ``size`` -> (blind: noise).
        ``blur=False``: without the blind blur (and noise): area down-sampling only."""
        if not self.blind or not blur:
            down = Downsample(size)
        else:
            sigma = 0.5 * factor if self.blur_sigma is None else self.blur_sigma
            down = Downsample(size, blur_sigma=sigma, noise_std=self.noise_std if noise else 0.0, seed=self.seed)
        return lambda img: down(self.to_output(img, size * factor))

    def output_size(self, size: int, factor: int | None) -> int:
        """The result's side for an input of ``size`` px: ``size x factor`` when a factor is given
        (it must divide the generator's resolution), else ``output_resolution``."""
        if factor is None:
            return self.output_resolution
        out, full = int(size) * int(factor), int(self.generator.img_resolution)
        if out > full or full % out != 0:
            raise ValueError(
                f"factor {factor} on a {size}x{size} input gives {out} px, which must divide the "
                f"generator's resolution {full} (e.g. factor {max(1, full // int(size))} for {full} px)"
            )
        return out

    def pull_for(self, size: int) -> tuple[float, float, float]:
        """The W+ pull (coarse, middle, fine) a ``size`` px observation is projected with: the settings'
        ``pull_low_res`` at or below ``low_res_px`` px and for every blind input, else ``pull``
        (:class:`~.projection.ProjectionSettings`).

        Blind inputs take the low-resolution pull at any size: their unknown blur and noise leave the
        features as open as a 16 px input does. Four real ``degraded.png`` pairs observed at 32 px: dlib
        distance 0.507 -> 0.493, LPIPS-VGG 0.417 -> 0.416 (docs/fidelity.md, Session 9)."""
        s = self.projector.settings
        if s.pull_low_res is not None and (self.blind or int(size) <= int(s.low_res_px)):
            return tuple(float(p) for p in s.pull_low_res)
        return tuple(float(p) for p in s.pull)

    def __call__(self, images: torch.Tensor, factor: int | None = None) -> SuperResolveResult:
        """``images [B, 3, h, h]`` in ``[-1, 1]``; ``factor``: the result is ``h x factor`` px (None:
        ``output_resolution``, which ``h`` must divide by 2..32)."""
        self._require_bound()
        check_images(images, "images")
        out_res = self.output_size(images.shape[-1], factor)
        factor = check_factor(images, out_res, factor)
        images = images.to(self.device)
        size = images.shape[-1]
        degrade = self.operator(size, factor)
        y = images
        if self.projector.settings.lpips_weight > 0 and size < LPIPS_MIN_SIZE:
            # LPIPS cannot see tiny inputs: compare both at a nearest-neighbour up-sampled copy
            # (each low-resolution pixel repeated; the pixel MSE is unchanged).
            up = -(-LPIPS_MIN_SIZE // size)
            op = degrade
            degrade = lambda img: F.interpolate(op(img), scale_factor=up, mode="nearest")
            y = F.interpolate(images, scale_factor=up, mode="nearest")
        settings = self.projector.settings
        pull = self.pull_for(size)
        if pull != settings.pull:
            self.projector.settings = replace(settings, pull=pull)
        try:
            result = self.projector.project(y, degrade=degrade)
        finally:
            self.projector.settings = settings
        with torch.no_grad():
            clean = self.operator(size, factor, noise=False)
            # Consistency is measured through area down-sampling (what the input shows at its size). Blind inputs
            # are back-projected through their own operator (the guessed blur, area; no noise) for one iteration:
            # a single correction takes the input's colour and light without the raw face's features being
            # subtracted and the blurred ones added (the ghosts of 30 area iterations: a double mouth), and without
            # deconvolving the input (iterating through the blur brings its noise back as a checkerboard). Four
            # real pairs: dlib 0.561 (3/4 same) -> 0.510 (4/4), LPIPS-VGG 0.439 -> 0.419 (docs/fidelity.md, Session 8).
            consistent = self.operator(size, factor, noise=False, blur=False)
            raw = self.to_output(result.images, out_res)
            if not self.back_projection:
                out = raw
            elif self.blind:
                out = back_project(raw, images, clean, self.blind_back_projection, detail_gate=self.detail_gate)
            else:
                out = back_project(raw, images, consistent, self.back_projection, detail_gate=self.detail_gate)
            return SuperResolveResult.extend(
                result,
                images=out,
                degraded=clean(out),
                factor=factor,
                raw=raw,
                consistency=consistency_psnr(out, images, consistent),
                raw_consistency=consistency_psnr(raw, images, consistent),
                pull=pull,
            )

    def outputs(self, batch: Batch) -> list[Output]:
        result = self(batch.images, factor=batch.factor)
        out = []
        for i in range(batch.images.shape[0]):
            pred = self.projected(result, i, crop=result.images[i], raw=result.raw[i], degraded=result.degraded[i])
            pred.upscale = int(result.factor)
            pred.record["factor"] = int(result.factor)
            pred.record["detail_gate"] = self.detail_gate if self.back_projection else None
            if self.projector.settings.method == "wplus":
                pred.record["pull"] = list(result.pull)
            out.append(pred)
        return out
