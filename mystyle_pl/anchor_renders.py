"""The anchors' renders a prior bundle caches for the start scan of a projection.

A W+ projection starts at the anchor whose render best matches the observation
(:func:`mystyle_pl.tasks.anchored.scan_anchors`, at most 64 px). Rendering 13 anchors at 1024 px
costs about 6 s on a 2-core CPU, every time a process projects its first photo (a tenth of a
60-step projection). The bundle therefore keeps them, written once at export:

``anchor_renders.safetensors``
    tensor ``renders`` ``[N, 3, S, S]`` float16 in ``[-1, 1]``: anchor ``i`` (row ``i`` of
    ``anchors.safetensors``) rendered with constant noise, area-down-sampled to ``S`` =
    :data:`RENDER_SIZE` px (or the generator's resolution when smaller); metadata ``format``,
    ``format_version``, ``noise_mode`` and ``anchors_sha256`` (the digest of the anchors they were
    rendered from: a file that does not match its anchors is ignored, never used).

Bundles written before this file existed load as before; their renders are made in the process.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open

from .generators.fileutil import save_safetensors_atomic

RENDERS_FILE = "anchor_renders.safetensors"
RENDER_SIZE = 128  # px; the start scan compares at <= 64 px (tasks.anchored.SCAN_SIZE), half of this
RENDER_NOISE_MODE = "const"  # the projections' noise (ProjectionSettings.noise_mode, the official 'const')
FORMAT_TAG = "mystyle_pl.anchor_renders"
FORMAT_VERSION = "1"


def anchors_digest(w: torch.Tensor) -> str:
    """Hex sha256 of the anchors ``[N, w_dim]`` as float32 bytes: what a renders file is tied to."""
    return hashlib.sha256(w.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


@torch.no_grad()
def render_anchors(generator, w: torch.Tensor, noise_mode: str = RENDER_NOISE_MODE, size: int = RENDER_SIZE) -> torch.Tensor:
    """The anchors ``w [N, w_dim]`` rendered one at a time (memory stays that of one render) and
    area-down-sampled: ``[N, 3, s, s]`` float32 in ``[-1, 1]`` on the generator's device, ``s =
    min(size, generator.img_resolution)``."""
    if w.ndim != 2 or w.shape[1] != generator.w_dim:
        raise ValueError(f"render_anchors needs anchors [N, {generator.w_dim}], got {tuple(w.shape)}")
    size = min(int(size), int(generator.img_resolution))
    device = generator.w_avg.device
    out = []
    for row in w.to(device):
        img = generator.synthesis(generator.broadcast_w(row[None]), noise_mode=noise_mode).float()
        out.append(F.interpolate(img, size=(size, size), mode="area") if img.shape[-1] != size else img)
    return torch.cat(out) if out else torch.zeros(0, 3, size, size, device=device)


def save_anchor_renders(path: str | os.PathLike, renders: torch.Tensor, w: torch.Tensor) -> Path:
    """Write ``renders [N, 3, S, S]`` (rendered with :data:`RENDER_NOISE_MODE`) of the anchors ``w [N,
    w_dim]``: float16, atomically. Raises ``ValueError`` for renders that do not match the anchors."""
    if renders.ndim != 4 or renders.shape[0] != w.shape[0] or renders.shape[1] != 3:
        raise ValueError(f"renders must be [N={w.shape[0]}, 3, S, S], got {tuple(renders.shape)}")
    metadata = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "noise_mode": RENDER_NOISE_MODE, "anchors_sha256": anchors_digest(w)}
    return save_safetensors_atomic({"renders": renders.detach().to("cpu", torch.float16).contiguous()}, path, metadata)


def load_anchor_renders(path: str | os.PathLike, w: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """The cached renders ``[N, 3, S, S]`` float32 of the anchors ``w [N, w_dim]``, and a note. ``(None,
    reason)`` when the file is absent, unreadable, of another format, or rendered from other anchors
    (the caller then renders them itself; a stale cache is never used)."""
    path = Path(path)
    if not path.is_file():
        return None, f"no {path.name} (a bundle from before the renders were cached)"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            renders = f.get_tensor("renders")
    except (SafetensorError, OSError, KeyError) as e:
        return None, f"{path}: unreadable ({type(e).__name__}: {e})"
    if meta.get("format") != FORMAT_TAG:
        return None, f"{path}: not an anchor-renders file (format {meta.get('format')!r})"
    if meta.get("noise_mode") != RENDER_NOISE_MODE:
        return None, f"{path}: rendered with noise {meta.get('noise_mode')!r}, not {RENDER_NOISE_MODE!r}"
    if meta.get("anchors_sha256") != anchors_digest(w):
        return None, f"{path}: rendered from other anchors than the bundle's (re-export the prior to refresh it)"
    if renders.ndim != 4 or renders.shape[0] != w.shape[0] or renders.shape[1] != 3 or renders.shape[2] != renders.shape[3]:
        return None, f"{path}: renders of shape {tuple(renders.shape)} for {w.shape[0]} anchors"
    return renders.float(), f"{path.name}: {renders.shape[0]} renders at {renders.shape[-1]} px"
