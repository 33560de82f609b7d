"""rosinality/stylegan2-pytorch checkpoints -> ``StyleGAN2Generator``.

What the files are
------------------
``torch.save`` of a dict. ``train.py`` writes ``{"g", "d", "g_ema", "g_optim", "d_optim",
"args" (an argparse.Namespace), "ada_aug_p"}``; ``convert_weight.py`` (the TF converter)
writes ``{"g_ema", "latent_avg"}``. A bare ``g_ema`` state dict is accepted too. pSp, e4e,
ReStyle and HyperStyle checkpoints (``{"state_dict", "latent_avg", "opts"}``) hold a rosinality
generator as the ``decoder.*`` entries of ``state_dict`` next to their encoder: the decoder is
what is loaded (``find_generators`` finds a generator under any entry or name prefix; ``key=`` /
``--key`` picks one when there are several). Files are read with ``torch.load(weights_only=True)``
only (``argparse.Namespace`` is the one extra allowed global: a bag of attributes).

The tensor layout, why the weights copy unchanged and how the architecture is inferred:
:mod:`.rosinality_layout` (its names are re-exported here).
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..stylegan2 import StyleGAN2Generator
from .errors import CheckpointError
from .native import load_state_strict
from .readers import torch_load_weights_only
from .rosinality_layout import (  # re-exported: the layout's names are imported from here too
    ROSINALITY_LR_MLP,
    architecture_hint,
    convert_state,
    fit_channel_schedule,
    infer_config,
    map_name,
)

# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def read_checkpoint(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file (and a refused global)."""
    return torch_load_weights_only(path, map_location=map_location, safe_globals=[argparse.Namespace])


# The tensors that make a state dict (or a prefixed part of one) a rosinality generator.
_GENERATOR_MARKERS = ("input.input", "style.1.weight", "to_rgb1.conv.weight")
_SEARCH_DEPTH = 3  # nested dicts searched for generators: ckpt["state_dict"]["decoder.*"] is depth 1


@dataclass(frozen=True)
class FoundGenerator:
    """A rosinality generator state dict found inside a checkpoint.

    ``key`` names it for ``key=`` / ``--key``: the dict entries leading to it and the tensor-name
    prefix, joined by dots (``"g_ema"``, ``"g"``, ``"state_dict.decoder"``; ``""`` = the whole file
    is a bare state dict).
    """

    key: str  # how to ask for it (key= / --key)
    state: dict[str, torch.Tensor]  # tensor names without the prefix, i.e. rosinality's own names
    where: str  # human-readable location, for messages


def find_generators(ckpt: Any) -> list[FoundGenerator]:
    """Every rosinality StyleGAN2 generator state dict inside ``ckpt``, in file order.

    Recognised layouts: a bare ``Generator.state_dict()``; rosinality ``train.py`` /
    ``convert_weight.py`` dicts (``g_ema``, ``g``); pSp / e4e / ReStyle / HyperStyle checkpoints
    (``ckpt["state_dict"]`` whose ``decoder.*`` entries are the generator); any other dict entry or
    tensor-name prefix (``module.``, ``generator.``) around rosinality's names.
    """
    found: list[FoundGenerator] = []

    def visit(node: Any, path: list[str]) -> None:
        if not isinstance(node, dict) or len(path) > _SEARCH_DEPTH:
            return
        names = [k for k, v in node.items() if isinstance(k, str) and isinstance(v, torch.Tensor)]
        marker = _GENERATOR_MARKERS[0]
        for prefix in sorted({k[: -len(marker)] for k in names if k.endswith(marker)}):
            if prefix and not prefix.endswith("."):
                continue
            if not all(prefix + m in node for m in _GENERATOR_MARKERS):
                continue
            state = {k[len(prefix):]: node[k] for k in node if isinstance(k, str) and k.startswith(prefix)}
            key = ".".join([*path, prefix[:-1]] if prefix else path)
            where = "".join(f"[{p!r}]" for p in path) or "the top level"
            where += f", tensors '{prefix}*'" if prefix else ""
            found.append(FoundGenerator(key=key, state=state, where=where))
        for k, v in node.items():
            if isinstance(v, dict):
                visit(v, [*path, str(k)])

    visit(ckpt, [])
    return found


def _how_to_pick(source: str, keys: list[str]) -> str:
    example = keys[0] if keys else "KEY"
    return (
        f"choose one with `mystyle-pl convert {source} OUT.safetensors --key {example}` (then use "
        f"OUT.safetensors anywhere a generator is asked for), `mystyle-pl info {source} --key {example}`, "
        f"or load_generator({source!r}, key={example!r}) in Python"
    )


def select_state(ckpt: Any, key: str | None, source: str) -> tuple[dict[str, torch.Tensor], Any]:
    """``(generator state dict, latent_avg or None)`` from a checkpoint (see ``find_generators``).

    ``key=None`` takes the only generator in the file, or ``g_ema`` (the EMA weights) when
    ``train.py`` saved several; ``key`` names one explicitly (``FoundGenerator.key``).
    Raises :class:`CheckpointError` naming the file, the generators found and how to choose.
    """
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: expected a dict checkpoint, found {type(ckpt).__name__}")
    found = find_generators(ckpt)
    keys = [f.key for f in found]
    listed = ", ".join(f"{f.key!r} ({f.where})" for f in found)
    if key is not None:
        chosen = [f for f in found if f.key == key]
        if not chosen:
            if found:
                raise CheckpointError(
                    f"{source}: no generator under key {key!r}; the file holds: {listed}; {_how_to_pick(source, keys)}"
                )
            raise CheckpointError(f"{source}: no generator under key {key!r}; {_no_generator(ckpt, source)}")
    elif not found:
        raise CheckpointError(f"{source}: {_no_generator(ckpt, source)}")
    elif len(found) == 1:
        chosen = found
    else:
        chosen = [f for f in found if f.key == "g_ema" or f.key.endswith(".g_ema")]
        if len(chosen) != 1:
            raise CheckpointError(f"{source}: several generators in one file: {listed}; {_how_to_pick(source, keys)}")
    state = chosen[0].state
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: state dict entries that are not tensors: {not_tensors[:8]}")
    return dict(state), ckpt.get("latent_avg")


def _no_generator(ckpt: dict, source: str) -> str:
    """Why nothing was found, with what to do instead."""
    top = sorted(map(str, ckpt))
    inner = ckpt.get("state_dict")
    if "pytorch-lightning_version" in ckpt and isinstance(inner, dict):
        if any(str(k).startswith("generator.synthesis.") for k in inner):
            return (
                "this is a mystyle-pl fit checkpoint (Lightning .ckpt), not a generator: write its personal prior "
                f"with `mystyle-pl export {source} PRIOR_DIR`, or resume the fit with `--ckpt_path {source}`"
            )
        return "this is a Lightning training checkpoint without a rosinality StyleGAN2 generator inside"
    return (
        f"no rosinality StyleGAN2 generator found (tensors {', '.join(_GENERATOR_MARKERS)}, at the top level, "
        f"in an entry such as 'g_ema', or under a prefix such as 'decoder.' in 'state_dict'); top-level keys: "
        f"{top[:12]}. Supported are rosinality stylegan2-pytorch, pSp / e4e / ReStyle (decoder), NVIDIA "
        "stylegan2-ada / stylegan3 .pkl and mystyle-pl .safetensors files"
    )


def load(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    size: int | None = None,
    channel_multiplier: float | None = None,
    key: str | None = None,
) -> StyleGAN2Generator:
    """Load a rosinality-layout StyleGAN2 generator from a torch checkpoint.

    Works on rosinality/stylegan2-pytorch files (``g_ema``, the EMA weights, by default) and on
    the decoder of pSp / e4e / ReStyle / HyperStyle checkpoints (``state_dict`` entries
    ``decoder.*``); see ``find_generators``. ``key`` picks one generator when a file holds
    several (``"g"``, ``"g_ema"``, ``"state_dict.decoder"``; the error lists those found).
    ``size`` / ``channel_multiplier`` override the architecture inferred from the shapes.
    ``w_avg`` is the checkpoint's ``latent_avg`` when present (``[w_dim]``, or pSp's
    ``[num_ws, w_dim]`` of equal rows), else estimated from the mapping network
    (``estimate_w_avg``). Raises ``FileNotFoundError`` for a missing file and
    :class:`CheckpointError` for anything unreadable or unsupported, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    source = str(path)
    state, latent_avg = select_state(read_checkpoint(path, map_location), key, source)
    config = infer_config(state, source, size=size, channel_multiplier=channel_multiplier)
    generator = StyleGAN2Generator(**config)
    own = generator.state_dict()

    converted = convert_state(state, source)
    mis_shaped = [
        f"{k}: file {tuple(v.shape)} vs inferred {tuple(own[k].shape)}"
        for k, v in converted.items()
        if k in own and v.shape != own[k].shape
    ]
    if mis_shaped:
        raise CheckpointError(
            f"{source}: the inferred architecture does not reproduce every layer ({'; '.join(mis_shaped[:6])}); "
            + architecture_hint(source)
        )
    # Our FIR filters are buffers built from resample_filter (checked equal to rosinality's above).
    converted.update({k: v for k, v in own.items() if k.endswith("resample_filter")})
    converted["mapping.w_avg"] = own["mapping.w_avg"]
    load_state_strict(generator, converted, source=source)

    with torch.no_grad():
        w_avg = _w_avg_from(latent_avg, generator.w_dim, generator.num_ws, source) if latent_avg is not None else None
        generator.mapping.w_avg.copy_(w_avg if w_avg is not None else generator.estimate_w_avg())
    return generator.to(map_location) if isinstance(map_location, (str, torch.device)) else generator


def _w_avg_from(latent_avg: Any, w_dim: int, num_ws: int, source: str) -> torch.Tensor | None:
    """``[w_dim]`` from ``latent_avg`` ``[w_dim]``, ``[1, w_dim]`` or ``[num_ws, w_dim]`` (pSp repeats it per layer).

    Rows that differ (a W+ average, not StyleGAN's ``w_avg``) give ``None`` with a warning: the
    caller estimates ``w_avg`` from the mapping network instead.
    """
    if isinstance(latent_avg, torch.Tensor):
        rows = latent_avg.detach().float().cpu().reshape(-1, w_dim) if latent_avg.shape[-1:] == (w_dim,) else None
        if rows is not None and rows.shape[0] in (1, num_ws):
            if torch.allclose(rows, rows[:1].expand_as(rows), rtol=1e-5, atol=1e-6):
                return rows[0].clone()
            warnings.warn(f"{source}: latent_avg has {rows.shape[0]} different rows; w_avg is estimated from the mapping network instead")
            return None
    shape = tuple(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
    raise CheckpointError(
        f"{source}: latent_avg must be [w_dim={w_dim}], [1, {w_dim}] or [num_ws={num_ws}, {w_dim}], found {shape}"
    )


__all__ = ["FoundGenerator", "convert_state", "find_generators", "fit_channel_schedule", "infer_config", "load", "map_name", "read_checkpoint", "select_state"]
