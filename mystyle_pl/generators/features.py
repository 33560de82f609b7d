"""Feature-space offsets: a generator whose synthesis adds a fixed tensor to the features one block
outputs, so that a photo's layout and colour at that resolution are its own while every finer layer
is still rendered by the generator from ``ws``.

This is the "FS" latent space of Barbershop (Zhu, Abdal, Femiani & Wonka, SIGGRAPH Asia 2021,
arXiv 2106.01505: the 32 px features of StyleGAN2's 8th layer plus the W+ codes of the later
layers) and the feature layers of SAM (Parmar et al., "Spatially-Adaptive Multilayer Selection for
GAN Inversion and Editing", CVPR 2022, arXiv 2206.08357): inverting into a feature layer trades
editability (coarse edits can no longer move what the feature fixes) for fidelity.
:mod:`mystyle_pl.tasks.features` fits such an offset per photo.

The offset enters through a forward hook on ``synthesis.b{resolution}`` (both architectures here
name their blocks so), so the synthesis code is unchanged and the base generator's weights are
shared, not copied. Offsets at several blocks nest: a :class:`FeatureOffsetGenerator` may wrap
another (SAM's multilayer inversion; here 64 and 256 px: the layout and light, then the detail).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .base import Generator


def offset_resolution(generator: Generator, resolution: int) -> int:
    """The feature resolution an offset of ``resolution`` px takes on ``generator``: ``resolution``,
    capped at half the generator's output (a 64 px request on a 32 px generator takes 16 px), so a
    preset's value fits every generator. Raises ``ValueError`` naming the resolutions the generator
    has when it has no block there."""
    res = min(int(resolution), int(generator.img_resolution) // 2)
    feature_block(generator, res)
    return res


def offset_resolutions(generator: Generator, resolutions: int | Sequence[int]) -> tuple[int, ...]:
    """:func:`offset_resolution` of each of ``resolutions`` (one int or several), ascending, each once
    (64 and 256 px on a 32 px generator are both 16 px: one offset). Raises ``ValueError`` for an
    empty list or a resolution the generator has no block at."""
    values = [resolutions] if isinstance(resolutions, int) else list(resolutions)
    if not values:
        raise ValueError("feature_resolution needs at least one block resolution, got none")
    return tuple(sorted({offset_resolution(generator, r) for r in values}))


def feature_block(generator: Generator, resolution: int) -> nn.Module:
    """The synthesis block whose output features are ``resolution`` px (``synthesis.b{resolution}``).

    Raises ``ValueError`` naming the resolutions the generator has when it has no such block. On a
    :class:`FeatureOffsetGenerator` it is the base's block, so offsets at several resolutions nest."""
    synthesis = generator.synthesis
    while isinstance(synthesis, OffsetSynthesis):
        synthesis = synthesis.base
    blocks = [int(r) for r in getattr(synthesis, "block_resolutions", [])]
    if int(resolution) not in blocks:
        raise ValueError(
            f"feature_resolution {resolution} is not a block of this generator "
            f"({type(generator).__name__}); choose one of {', '.join(map(str, blocks))}"
        )
    return getattr(synthesis, f"b{int(resolution)}")


def _add_offset(output: Any, offset: torch.Tensor) -> Any:
    # MobileStyleGAN's blocks return the features; StyleGAN2's return (features, skip image).
    if isinstance(output, tuple):
        return (output[0] + offset.to(output[0].dtype), *output[1:])
    return output + offset.to(output.dtype)


@torch.no_grad()
def block_features(generator: Generator, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
    """The features ``[B, C, resolution, resolution]`` that block ``b{resolution}`` outputs for ``ws``."""
    return blocks_features(generator, ws, [resolution], noise_mode)[int(resolution)]


@torch.no_grad()
def blocks_features(
    generator: Generator, ws: torch.Tensor, resolutions: Sequence[int], noise_mode: str = "const"
) -> dict[int, torch.Tensor]:
    """``{R: [B, C_R, R, R]}``: the features each block ``b{R}`` of ``resolutions`` outputs for ``ws``
    ``[B, num_ws, w_dim]``, from one render (with the offsets of a :class:`FeatureOffsetGenerator`)."""
    seen: dict[int, torch.Tensor] = {}

    def keep(resolution: int):
        def hook(_module, _inputs, output) -> None:  # returns None: a hook's return value would replace the output
            seen.setdefault(resolution, output[0] if isinstance(output, tuple) else output)

        return hook

    handles = [feature_block(generator, int(r)).register_forward_hook(keep(int(r))) for r in resolutions]
    try:
        generator.synthesis(ws, noise_mode=noise_mode)
    finally:
        for handle in handles:
            handle.remove()
    return seen


class OffsetSynthesis(nn.Module):
    """``base(ws)`` with ``offset`` added to block ``b{resolution}``'s output features."""

    def __init__(self, base: nn.Module, block: nn.Module, offset: torch.Tensor) -> None:
        super().__init__()
        self.base, self.block = base, block
        self.offset = offset  # [1 or B, C, R, R]; a plain attribute: the fitting loop may optimise it in place
        for name in ("w_dim", "num_ws", "img_resolution", "img_channels", "block_resolutions"):
            if hasattr(base, name):
                setattr(self, name, getattr(base, name))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", **kwargs) -> torch.Tensor:
        handle = self.block.register_forward_hook(lambda _module, _inputs, output: _add_offset(output, self.offset))
        try:
            return self.base(ws, noise_mode=noise_mode, **kwargs)
        finally:
            handle.remove()


class FeatureOffsetGenerator(Generator):
    """``base`` with a feature offset at ``resolution`` px: ``synthesis(ws)`` renders
    ``base.synthesis`` with ``offset [1, C, resolution, resolution]`` added to the output of block
    ``b{resolution}`` (the shape :func:`block_features` gives). ``base`` may itself be a
    FeatureOffsetGenerator (offsets at several blocks; :attr:`offsets` lists them). The mapping network and every weight
    are ``base``'s own (shared). Raises ``ValueError`` for a resolution the generator has no block at
    or an offset of another shape."""

    def __init__(self, base: Generator, resolution: int, offset: torch.Tensor) -> None:
        super().__init__()
        block = feature_block(base, resolution)
        if offset.ndim != 4 or offset.shape[-1] != resolution or offset.shape[-2] != resolution:
            raise ValueError(f"offset must be [1, C, {resolution}, {resolution}], got {tuple(offset.shape)}")
        self.family = base.family
        self.z_dim, self.w_dim, self.num_ws = base.z_dim, base.w_dim, base.num_ws
        self.img_resolution, self.img_channels = base.img_resolution, base.img_channels
        self.feature_resolution = int(resolution)
        self.mapping = base.mapping
        self.synthesis = OffsetSynthesis(base.synthesis, block, offset)
        self._base = [base]  # a list: not a submodule again (its parameters are reached through mapping and synthesis)

    @property
    def offset(self) -> torch.Tensor:
        """This generator's own offset ``[1, C, R, R]`` (R = ``feature_resolution``)."""
        return self.synthesis.offset

    @property
    def offsets(self) -> dict[int, torch.Tensor]:
        """``{R: offset}`` of this generator and every FeatureOffsetGenerator it wraps."""
        inner = self._base[0]
        return {**(inner.offsets if isinstance(inner, FeatureOffsetGenerator) else {}), self.feature_resolution: self.offset}

    @property
    def config(self) -> dict[str, Any]:
        return self._base[0].config

    @property
    def ws_resolutions(self) -> list[int]:
        return self._base[0].ws_resolutions
