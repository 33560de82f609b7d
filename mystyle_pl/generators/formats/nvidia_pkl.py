"""NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3) -> ``StyleGAN2Generator``.

The file is read without running it by :mod:`.nvidia_persistence` (what the files are, and the
restricted unpickler; its names are re-exported here).

The generator is then rebuilt from ``G_ema``'s constructor arguments and its tensors
(``G_ema``'s parameter names are exactly ours) and loaded strictly. Supported: the
unconditional StyleGAN2 generator with the ``skip`` output architecture, from either
repository (stylegan3's ``networks_stylegan2.py`` passes the synthesis options flat).
``num_fp16_res``, ``fp16_channels_last`` and ``fused_modconv_default`` are accepted and
ignored: they only choose the precision / kernel layout of the computation, and this
project computes in fp32 (or under autocast). Refused with a clear error: conditional
models (``c_dim > 0``), the ``orig`` / ``resnet`` architectures, StyleGAN3 (alias-free)
generators, and options with no counterpart here (named in the message).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..stylegan2 import StyleGAN2Generator
from .errors import CheckpointError
from .native import load_state_strict
from .nvidia_persistence import (  # re-exported: the reader's names are imported from here too
    AttrDict,
    PersistentRecord,
    RestrictedUnpickler,
    read_pickle,
)

# --------------------------------------------------------------------------------------
# From records to a StyleGAN2Generator
# --------------------------------------------------------------------------------------

# Generator.__init__(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")

# NVIDIA option -> StyleGAN2Generator argument.
_MAPPING_RENAMES = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier"}
_SYNTHESIS_RENAMES = {
    "channel_base": "channel_base",
    "channel_max": "channel_max",
    "conv_clamp": "conv_clamp",
    "resample_filter": "resample_filter",
    "use_noise": "use_noise",
}
# Options with only one value implemented here.
_REQUIRED_VALUES = {"activation": "lrelu", "architecture": "skip", "kernel_size": 3}
# Options that do not change what the generator computes (only how, or only in training).
_IGNORED = {
    "embed_features",  # label embedding width: only used when c_dim > 0 (refused anyway)
    "w_avg_beta",  # decay of the training-time w_avg tracker
    "num_fp16_res",  # fp16 for the top resolutions: we compute in fp32 / autocast
    "fp16_channels_last",  # memory layout under fp16
    "fused_modconv_default",  # grouped vs shared convolution: same math
}


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> StyleGAN2Generator:
    """Load the ``G_ema`` generator of an NVIDIA stylegan2-ada-pytorch / stylegan3 pickle.

    Nothing from the file is imported or executed (see the module docstring). Falls back
    to ``G`` with a warning when the pickle has no ``G_ema``. When the network has no
    ``w_avg`` buffer (``w_avg_beta=None``), it is estimated from the mapping network.
    ``num_fp16_res`` is ignored: the generator always computes in fp32 (or autocast).

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` for
    anything unreadable or unsupported, naming the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    source = str(path)
    record = select_generator(read_pickle(path, map_location=map_location), source)
    check_supported(record, source)
    config = generator_config(record, source)
    state = flatten_state(record, source)
    try:
        generator = StyleGAN2Generator(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot build a StyleGAN2 generator from {config}: {e}") from e
    estimate_w_avg = "mapping.w_avg" not in state
    if estimate_w_avg:  # MappingNetwork(w_avg_beta=None) does not track it
        state["mapping.w_avg"] = generator.mapping.w_avg.clone()
    load_state_strict(generator, state, source=source)
    if estimate_w_avg:
        warnings.warn(f"{source}: the network has no w_avg; estimating it from 10,000 mapped samples", stacklevel=2)
        generator.mapping.w_avg.copy_(generator.estimate_w_avg())
    return generator.to(map_location) if isinstance(map_location, (str, torch.device)) else generator


def select_generator(data: Any, source: str) -> PersistentRecord:
    """``data["G_ema"]`` (or ``data["G"]`` with a warning, or a bare pickled network)."""
    if isinstance(data, PersistentRecord):
        return data
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a pickled dict with 'G_ema', found {type(data).__name__}")
    if isinstance(data.get("G_ema"), PersistentRecord):
        return data["G_ema"]
    if isinstance(data.get("G"), PersistentRecord):
        warnings.warn(
            f"{source}: no 'G_ema' in the pickle; using 'G' (the raw, non-averaged training weights)", stacklevel=3
        )
        return data["G"]
    raise CheckpointError(
        f"{source}: no generator network ('G_ema' or 'G') in the pickle; it holds {sorted(map(str, data))}"
    )


def check_supported(record: PersistentRecord, source: str) -> None:
    """Refuse StyleGAN3, non-generators and non-``skip`` architectures before reading options."""
    names = {rec.class_name for _, rec in record.walk()}
    synthesis = record.child("synthesis")
    if (
        "SynthesisInput" in names
        or (synthesis is not None and "input" in synthesis.children)
        or "class SynthesisInput" in record.module_src
    ):
        raise CheckpointError(
            f"{source}: this is a StyleGAN3 (alias-free) generator, which mystyle-pl does not support; "
            "use a StyleGAN2 / StyleGAN2-ADA checkpoint"
        )
    if record.class_name != "Generator" or synthesis is None or record.child("mapping") is None:
        raise CheckpointError(
            f"{source}: expected a StyleGAN2 Generator network, found {record.class_name} "
            f"with children {sorted(record.children)}"
        )
    for name, block in synthesis.children.items():
        architecture = block.state.get("architecture", "skip") if isinstance(block, PersistentRecord) else "skip"
        if architecture != "skip":
            raise CheckpointError(
                f"{source}: synthesis.{name} uses architecture={architecture!r}; only 'skip' is supported"
            )


def constructor_options(record: PersistentRecord, source: str) -> dict[str, Any]:
    """The Generator's constructor arguments (``_init_args`` named, merged with ``_init_kwargs``)."""
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs")
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{source}: the generator carries no constructor arguments (init_kwargs)")
    if len(args) > len(_GENERATOR_ARGS):
        raise CheckpointError(f"{source}: the generator was built with {len(args)} positional arguments")
    options = dict(zip(_GENERATOR_ARGS, args, strict=False))  # positional arguments, in order
    options.update(kwargs)
    return options


def generator_config(record: PersistentRecord, source: str) -> dict[str, Any]:
    """``StyleGAN2Generator`` arguments from the pickled Generator's constructor arguments."""
    options = constructor_options(record, source)
    if options.get("c_dim", 0):
        raise CheckpointError(
            f"{source}: conditional generator (c_dim={options['c_dim']}); only unconditional models are supported"
        )
    missing = [k for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if k not in options]
    if missing:
        raise CheckpointError(f"{source}: the generator's constructor arguments lack {missing}")
    config = {k: int(options[k]) for k in ("z_dim", "w_dim", "img_resolution", "img_channels")}
    mapping = dict(options.get("mapping_kwargs") or {})
    synthesis = dict(options.get("synthesis_kwargs") or {})
    # stylegan3's networks_stylegan2.Generator takes the synthesis options flat (**synthesis_kwargs).
    synthesis.update({k: v for k, v in options.items() if k not in _GENERATOR_ARGS})

    problems: list[str] = []
    config.update(_translate(mapping, _MAPPING_RENAMES, "mapping_kwargs", problems))
    config.update(_translate(synthesis, _SYNTHESIS_RENAMES, "synthesis_kwargs", problems))
    layer_features = mapping.get("layer_features")
    if layer_features is not None and layer_features != config["w_dim"]:
        problems.append(f"mapping_kwargs.layer_features={layer_features!r} (only None = w_dim is supported)")
    if problems:
        raise CheckpointError(f"{source}: unsupported generator options: " + "; ".join(problems))

    # The two repositories default conv_clamp differently (None vs 256) and the pickle
    # only records arguments that were passed: read what the layers were built with.
    layer = record.child("synthesis", "b4", "conv1")
    for key in ("conv_clamp", "use_noise"):
        if key not in synthesis and layer is not None and key in layer.state:
            config[key] = layer.state[key]
    if config.get("conv_clamp") is not None:
        config["conv_clamp"] = float(config["conv_clamp"])
    if "resample_filter" in config:
        config["resample_filter"] = [float(t) for t in config["resample_filter"]]
    return config


def _translate(options: dict[str, Any], renames: dict[str, str], group: str, problems: list[str]) -> dict[str, Any]:
    """Map one option group through the tables above, collecting what is unsupported."""
    out = {}
    for key, value in options.items():
        if key in renames:
            out[renames[key]] = value
        elif key in _REQUIRED_VALUES:
            if value != _REQUIRED_VALUES[key]:
                problems.append(f"{group}.{key}={value!r} (only {_REQUIRED_VALUES[key]!r} is supported)")
        elif key not in _IGNORED and key != "layer_features":
            problems.append(f"{group}.{key}={value!r} (unknown option)")
    return out


def flatten_state(record: PersistentRecord, source: str) -> dict[str, torch.Tensor]:
    """The network's ``state_dict`` rebuilt from the records' ``_parameters`` / ``_buffers`` / ``_modules``."""
    state: dict[str, torch.Tensor] = {}
    for prefix, node in record.walk():
        non_persistent = set(node.state.get("_non_persistent_buffers_set") or ())
        tensors = dict(node.state.get("_parameters") or {})
        tensors.update({k: v for k, v in (node.state.get("_buffers") or {}).items() if k not in non_persistent})
        for name, tensor in tensors.items():
            if tensor is None:
                continue
            key = f"{prefix}.{name}" if prefix else name
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{source}: {key} is a {type(tensor).__name__}, not a tensor")
            state[key] = tensor.detach()
        for name, child in node.children.items():
            if child is not None and not isinstance(child, PersistentRecord):
                raise CheckpointError(f"{source}: submodule {prefix}.{name} is not a network record")
    return state


__all__ = [
    "AttrDict",
    "PersistentRecord",
    "RestrictedUnpickler",
    "check_supported",
    "flatten_state",
    "generator_config",
    "load",
    "read_pickle",
    "select_generator",
]
