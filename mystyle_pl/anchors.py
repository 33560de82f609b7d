"""Anchors: one latent ``w`` per album photo, found by optimisation-based W inversion.

The official MyStyle code encodes each photo with a pretrained e4e encoder; no encoder
weights exist for every generator, so we invert by optimisation (as StyleGAN2's projector):
start every photo at ``w_avg``, minimise ``LPIPS(G(w), photo) + l2_weight * MSE`` at
``resolution`` (area-downsampled) with Adam, a short learning-rate warm-up and cosine
decay, and exploration noise on ``w`` that fades out over the first ``noise_ramp`` of the
steps. A whole batch of photos is inverted at once; every photo has its own ``w`` and its
own loss term, so the result does not depend on the batch size.

Optional noise regularisation (``noise_reg > 0``, StyleGAN2's projector): each photo also gets its
own copy of the generator's per-pixel noise maps, optimised with ``w`` so that hair and skin
texture go into the noise instead of pulling ``w`` away from the face; a regulariser (squared
autocorrelation of each map with its one-pixel shifts, over a pyramid of scales) keeps the maps
noise-like, and they are re-normalised to zero mean and unit variance after each step. Only
``w`` is kept (an anchor is one ``w``); the reported LPIPS renders it with the generator's fixed
noise, as tuning does.

Results are cached by (photo content hashes and names, generator weights hash, settings):
re-running costs nothing. They are stored in the album's sorted photo order *with the
names* (the official code loaded anchors in unsorted directory order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .assets import home
from .data.anchors_io import Anchors, load_anchors, save_anchors
from .generators import Generator
from .imaging import downsample_to
from .losses import LPIPS
from .precision import canonical_precision, render_step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InversionSettings:
    """How photos are inverted into W (every field is part of the cache key)."""

    steps: int = 300  # Adam steps per photo batch.
    lr: float = 0.05  # Peak learning rate on w.
    resolution: int = 256  # Loss resolution (images are area-downsampled to it); None-like 0 = generator's.
    lpips_net: str = "vgg"  # LPIPS backbone for the loss ('vgg' or 'alex').
    l2_weight: float = 1.0  # Weight of the pixel MSE next to LPIPS.
    w_noise: float = 0.05  # Initial exploration noise on w, in units of the W-space spread; 0 = off.
    noise_ramp: float = 0.75  # Fraction of the steps over which the exploration noise fades to 0.
    warmup: float = 0.05  # Fraction of the steps of linear learning-rate warm-up.
    batch_size: int = 8  # Photos inverted at once.
    seed: int = 0  # Seeds the exploration noise (and the initial noise maps).
    noise_reg: float = 0.0  # > 0: also optimise the generator's per-pixel noise maps, one set per photo, with
    # this weight on StyleGAN2's noise regulariser (its projector: 1e5); 0 = the noise stays fixed ('const').
    precision: str = "32"  # the render inside the steps: "32", "bf16-mixed" or "auto" (mystyle_pl.precision); the
    # final render and the reported LPIPS / MSE are float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", canonical_precision(self.precision))  # 32, "32-true" -> "32"

    def key(self) -> dict:
        """The cache key's fields. ``precision`` joins it only when not float32, so anchors cached before the
        field existed (all float32) stay valid."""
        key = asdict(self)
        if key["precision"] == "32":
            del key["precision"]
        return key


@dataclass
class InversionResult:
    w: torch.Tensor  # [B, w_dim]
    lpips: torch.Tensor  # [B] final LPIPS per photo (at the loss resolution)
    mse: torch.Tensor  # [B] final MSE per photo
    trace: list[float]  # mean loss per step


def w_spread(generator: Generator, num_samples: int = 2000, seed: int = 0) -> float:
    """Root-mean-square distance of mapped random ``w`` from ``w_avg`` (the scale of W space)."""
    device = generator.w_avg.device
    z = torch.randn(num_samples, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        w = generator.mapping(z)
    return (w - generator.w_avg).square().sum(dim=1).mean().sqrt().item()


def invert_w(
    generator: Generator,
    images: torch.Tensor,
    settings: InversionSettings = InversionSettings(),
    lpips: torch.nn.Module | None = None,
    progress: bool = False,
    w_scale: float | None = None,
    photo_seeds: list[int] | None = None,
) -> InversionResult:
    """Invert ``images [B, 3, R, R]`` (in [-1, 1], R = the generator's resolution) into W.

    ``lpips`` defaults to ``LPIPS(settings.lpips_net)`` on the images' device. ``photo_seeds``
    (one per image; default ``settings.seed + i``) seed each photo's exploration noise, so a
    photo's result does not depend on which batch or rank it was inverted in.
    """
    res = generator.img_resolution
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (res, res):
        raise ValueError(f"images must be [B, 3, {res}, {res}] in [-1, 1], got {tuple(images.shape)}")
    device = images.device
    if lpips is None:
        lpips = LPIPS(settings.lpips_net).to(device)
    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)  # only w is optimised; restored below
    try:
        return _invert(generator, images, settings, lpips, progress, w_scale, photo_seeds)
    finally:
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)


def noise_buffers(generator: Generator) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Every ``(module, noise_const [R, R])`` of the generator's per-pixel noise inputs."""
    return [(m, m._buffers["noise_const"]) for m in generator.modules() if m._buffers.get("noise_const") is not None]


def noise_regularizer(maps: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's noise regulariser per image ``[B]`` for maps ``[B, 1, R, R]``: the squared mean
    product of each map with its one-pixel shifts (x and y), summed over a pyramid down to 8 px.

    >>> white = [torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))]
    >>> smooth = [torch.nn.functional.interpolate(white[0][..., :8, :8], size=(64, 64), mode="bilinear")]
    >>> bool((noise_regularizer(white) < 0.01 * noise_regularizer(smooth)).all())
    True
    """
    total = 0.0
    for n in maps:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * n.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


class _PerPhotoNoise:
    """Swap the generator's noise maps for trainable per-photo maps ``[B, 1, R, R]`` (restored on exit)."""

    def __init__(self, generator: Generator, seeds: list[int], device: torch.device):
        self.buffers = noise_buffers(generator)
        self.maps = []
        for k, (_, const) in enumerate(self.buffers):
            r = const.shape[-1]
            maps = [torch.randn(1, r, r, generator=torch.Generator().manual_seed(int(s) * 1000 + k)) for s in seeds]
            self.maps.append(torch.stack(maps).to(device).requires_grad_(True))

    def __enter__(self) -> list[torch.Tensor]:
        for (module, _), m in zip(self.buffers, self.maps):
            module._buffers["noise_const"] = m
        return self.maps

    def __exit__(self, *exc) -> None:
        for module, const in self.buffers:
            module._buffers["noise_const"] = const

    @torch.no_grad()
    def normalize(self) -> None:
        for m in self.maps:
            m -= m.mean(dim=(1, 2, 3), keepdim=True)
            m /= m.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()


def _exploration_noise(seeds: list[int], steps: int, w_dim: int) -> torch.Tensor:
    """``[B, steps, w_dim]`` standard normal noise, each photo from its own seeded generator."""
    return torch.stack([torch.randn(steps, w_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def _invert(generator, images, settings, lpips, progress, w_scale, photo_seeds) -> InversionResult:
    device = images.device
    batch = images.shape[0]
    target = downsample_to(images, settings.resolution)
    w_avg = generator.w_avg.detach().to(device)
    scale = w_spread(generator) if w_scale is None else w_scale
    w = w_avg.expand(batch, -1).clone().requires_grad_(True)
    seeds = photo_seeds if photo_seeds is not None else [settings.seed + i for i in range(batch)]
    if len(seeds) != batch:
        raise ValueError(f"photo_seeds has {len(seeds)} entries for a batch of {batch} images")
    per_photo_noise = _PerPhotoNoise(generator, seeds, device) if settings.noise_reg > 0 else None
    if per_photo_noise is not None and not per_photo_noise.maps:
        log.warning("noise_reg=%g but the generator has no noise inputs: only w is optimised", settings.noise_reg)
        per_photo_noise = None
    params = [w] + (per_photo_noise.maps if per_photo_noise is not None else [])
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=(0.9, 0.999))
    if per_photo_noise is not None:
        with per_photo_noise:
            trace = _optimise(generator, w, target, settings, lpips, optimizer, progress, scale, seeds, per_photo_noise)
    else:
        trace = _optimise(generator, w, target, settings, lpips, optimizer, progress, scale, seeds, None)
    with torch.no_grad():  # the anchor is rendered with the generator's own (fixed) noise, as tuning does
        synth = downsample_to(generator.synthesis(generator.broadcast_w(w), noise_mode="const"), settings.resolution)
        final_lpips = lpips(synth, target).float()
        final_mse = (synth - target).square().mean(dim=(1, 2, 3)).float()
    return InversionResult(w=w.detach(), lpips=final_lpips.cpu(), mse=final_mse.cpu(), trace=trace)


def _optimise(generator, w, target, settings, lpips, optimizer, progress, scale, seeds, per_photo_noise) -> list[float]:
    noise = _exploration_noise(seeds, settings.steps, generator.w_dim).to(w.device) if settings.w_noise > 0 else None
    trace: list[float] = []
    bar = tqdm(range(settings.steps), desc="inverting", leave=False, disable=not progress)
    for step in bar:
        t = step / max(settings.steps - 1, 1)
        lr = settings.lr * min(1.0, t / settings.warmup if settings.warmup > 0 else 1.0)
        lr *= 0.5 * (1 + torch.cos(torch.tensor(torch.pi * t)).item())
        for group in optimizer.param_groups:
            group["lr"] = lr
        noise_strength = scale * settings.w_noise * max(0.0, 1 - t / settings.noise_ramp) ** 2
        w_in = w
        if noise is not None and noise_strength > 0:
            w_in = w + noise[:, step] * noise_strength
        synth = downsample_to(render_step(generator, generator.broadcast_w(w_in), "const", settings.precision), settings.resolution)
        per_photo = lpips(synth, target) + settings.l2_weight * (synth - target).square().mean(dim=(1, 2, 3))
        if per_photo_noise is not None:
            per_photo = per_photo + settings.noise_reg * noise_regularizer(per_photo_noise.maps)
        # Sum, not mean: each photo's w gets the gradient of its own loss, whatever the batch size.
        optimizer.zero_grad(set_to_none=True)
        per_photo.sum().backward()
        optimizer.step()
        if per_photo_noise is not None:
            per_photo_noise.normalize()
        trace.append(per_photo.mean().item())
        bar.set_postfix(loss=f"{trace[-1]:.4f}")
    return trace


# ----------------------------------------------------------------------------------------
# hashing and caching


def generator_digest(generator: Generator) -> str:
    """sha256 over the generator's family, config and every tensor of its state (sorted by name)."""
    h = hashlib.sha256()
    h.update(generator.family.encode())
    h.update(json.dumps(generator.config, sort_keys=True).encode())
    for name, tensor in sorted(generator.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def photo_digest(image: torch.Tensor) -> str:
    """sha256 of a photo's pixels as served (after resizing), so re-encoding a file keeps the key."""
    return hashlib.sha256(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def cache_key(names: Sequence[str], photo_digests: Sequence[str], gen_digest: str, settings: InversionSettings) -> str:
    payload = {"photos": list(zip(names, photo_digests)), "generator": gen_digest, "settings": settings.key()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    return home() / "anchors"


def compute_anchors(
    generator: Generator,
    names: Sequence[str],
    load_image: Callable[[int], torch.Tensor],
    settings: InversionSettings = InversionSettings(),
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> Anchors:
    """Anchors for the album photos ``names`` (``load_image(i)`` -> ``[3, R, R]`` in [-1, 1]).

    Under DDP every rank inverts its shard (photos ``rank::world_size``) and the results are
    gathered with ``torch.distributed``; rank 0 writes the cache file. Returns the anchors in
    the order of ``names`` with per-photo reconstruction LPIPS in ``metadata["lpips"]``.
    """
    names = list(names)
    device = torch.device(device) if device is not None else generator.w_avg.device
    generator = generator.to(device).eval()
    images = [load_image(i) for i in range(len(names))]
    key = cache_key(names, [photo_digest(im) for im in images], generator_digest(generator), settings)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{key[:32]}.safetensors"
    if cached.is_file():
        anchors = load_anchors(cached)
        if anchors.names == names:
            log.info("anchors: cache hit %s", cached)
            return anchors

    lpips = LPIPS(settings.lpips_net).to(device)
    scale = w_spread(generator)
    mine = list(range(rank, len(names), world_size))
    w_rows: dict[int, torch.Tensor] = {}
    lpips_rows: dict[int, float] = {}
    batches = [mine[i : i + settings.batch_size] for i in range(0, len(mine), settings.batch_size)]
    for b, idx in enumerate(tqdm(batches, desc=f"anchors (rank {rank})", disable=not progress)):
        batch = torch.stack([images[i] for i in idx]).to(device)
        seeds = [settings.seed * 1_000_003 + i for i in idx]  # by album position: independent of sharding
        result = invert_w(generator, batch, settings, lpips=lpips, w_scale=scale, progress=False, photo_seeds=seeds)
        for j, i in enumerate(idx):
            w_rows[i] = result.w[j].cpu()
            lpips_rows[i] = float(result.lpips[j])
    if world_size > 1:
        w_rows, lpips_rows = _gather_rows(w_rows, lpips_rows, world_size)
    w = torch.stack([w_rows[i] for i in range(len(names))])
    per_photo = [lpips_rows[i] for i in range(len(names))]
    metadata = {
        "lpips": dict(zip(names, per_photo)),
        "lpips_mean": sum(per_photo) / max(len(per_photo), 1),
        "settings": settings.key(),
        "cache_key": key,
        "generator_family": generator.family,
    }
    if rank == 0:
        save_anchors(cached, w, names, metadata=metadata)
    return Anchors(w=w, names=names, metadata=metadata, w_flip=None, path=cached)


def _gather_rows(w_rows: dict, lpips_rows: dict, world_size: int) -> tuple[dict, dict]:
    import torch.distributed as dist  # lazy: only a multi-rank run gathers

    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, ({i: t for i, t in w_rows.items()}, lpips_rows))
    all_w, all_lpips = {}, {}
    for part_w, part_lpips in gathered:
        all_w.update(part_w)
        all_lpips.update(part_lpips)
    return all_w, all_lpips
