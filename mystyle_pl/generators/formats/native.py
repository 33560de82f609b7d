"""The native checkpoint format: safetensors with the architecture in its metadata.

A native file says what it is: its metadata holds ``format`` (``"mystyle_pl.generator"``),
``family`` (``"stylegan2"``, ...), ``config`` (JSON of the constructor arguments) and
``format_version``; the tensors are the generator's ``state_dict``. Loading never unpickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..base import Generator
from ..fileutil import save_safetensors_atomic
from ..registry import GENERATOR_FAMILIES
from .errors import CheckpointError
from .readers import read_safetensors_metadata

FORMAT_TAG = "mystyle_pl.generator"
FORMAT_VERSION = "1"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` (without reading the tensors)."""
    return read_safetensors_metadata(path)


def save(generator: Generator, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write ``generator`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "family": generator.family,
        "config": json.dumps(generator.config, sort_keys=True),
    }
    for key, value in (extra_metadata or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    # safetensors refuses shared or non-contiguous storage: save independent contiguous copies.
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in generator.state_dict().items()}
    return save_safetensors_atomic(tensors, path, metadata)


def build(family: str, config: dict[str, Any], source: str = "<config>") -> Generator:
    """Instantiate an (uninitialised) generator of ``family`` from its config."""
    if family not in GENERATOR_FAMILIES:
        raise CheckpointError(f"{source}: unknown generator family {family!r}; known: {sorted(GENERATOR_FAMILIES)}")
    try:
        return GENERATOR_FAMILIES[family](**config)
    except TypeError as e:
        raise CheckpointError(f"{source}: config does not fit the {family!r} generator: {e}") from e


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Generator:
    """Load a native generator file."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{path}: safetensors file without mystyle_pl generator metadata "
            f"(format={metadata.get('format')!r}); convert it with `mystyle-pl convert`"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported native format version {metadata.get('format_version')!r}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: metadata has no valid 'config' JSON ({e})") from e
    generator = build(metadata.get("family", ""), config, source=str(path))
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: could not read tensors ({e}); the file may be truncated") from e
    load_state_strict(generator, state, source=str(path))
    return generator.to(map_location)


def load_state_strict(generator: Generator, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that names every missing, unexpected or mis-shaped tensor."""
    own = generator.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_short(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatches: {_short(mis_shaped)}")
    if problems:
        raise CheckpointError(f"{source}: weights do not match the {generator.family} architecture; " + "; ".join(problems))
    generator.load_state_dict(state, strict=True)


def _short(items: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
