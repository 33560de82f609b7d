"""``mystyle-pl info``, ``export`` and ``convert``: describe a checkpoint or a prior, export a prior bundle
from a fit checkpoint, convert a generator checkpoint to the native format (proven by rendering).

Lazy import: :mod:`mystyle_pl.tuning` (the fit's LightningModule) is imported inside ``_run_export``, so that
``mystyle-pl --help`` and the other commands do not import Lightning (~1.5 s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .. import assets
from ..errors import UserError
from ..generators import detect_format, load_generator, save_generator
from ..prior import PersonalPrior


def _add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        help="a generator checkpoint (.safetensors, NVIDIA .pkl, rosinality or pSp/e4e/ReStyle .pt), an asset name, "
        "or a prior folder",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_torch_checkpoint_arguments(parser)


def _add_torch_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of torch .pt checkpoints (rosinality, pSp / e4e / ReStyle), shared by info and convert."""
    parser.add_argument(
        "--key", default=None,
        help=".pt only: which generator of a file holding several, e.g. g, g_ema, state_dict.decoder "
             "(default: the only one, or g_ema; an error lists those found)",
    )  # fmt: skip
    parser.add_argument("--size", type=int, default=None, help=".pt only: output resolution, if not inferable")
    parser.add_argument(
        "--channel-multiplier", type=int, default=None, help=".pt only: channel multiplier (2 = config-f), if not inferable"
    )


def _torch_checkpoint_options(args: argparse.Namespace) -> dict:
    """The .pt options given on the command line, as ``load_generator`` keyword arguments."""
    names = ("key", "size", "channel_multiplier")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _describe(path: str, **options) -> dict:
    """What ``mystyle-pl info`` prints; ``options``: ``key`` / ``size`` / ``channel_multiplier`` for .pt files."""
    if PersonalPrior.is_bundle(path):
        return {"path": path, **PersonalPrior.load(path).describe()}
    file = assets.fetch(path) if path in assets.REGISTRY else Path(path)
    fmt = detect_format(file)
    return {"path": str(file), "format": fmt, **load_generator(file, format=fmt, **options).describe()}


def _run_info(args: argparse.Namespace) -> int:
    summary = _describe(args.path, **_torch_checkpoint_options(args))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
        return 0
    nested = {k: summary.pop(k) for k in [k for k, v in summary.items() if isinstance(v, dict)]}
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if isinstance(value, int) and key.endswith("parameters"):
            value = f"{value:,}"
        print(f"{key:<{width}}  {value}")
    for title, values in nested.items():
        print(f"{title}:")
        for key, value in sorted(values.items()):
            print(f"  {key}: {value}")
    return 0


# ----------------------------------------------------------------------------------------
# export


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a Lightning .ckpt written by `mystyle-pl fit`")
    parser.add_argument("output", help="folder for the personal prior bundle")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def _run_export(args: argparse.Namespace) -> int:
    from ..tuning import PersonalTuner, export_prior  # lazy: see module docstring

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out}: exists; pass --overwrite to replace it")
    model = PersonalTuner.load_from_checkpoint(args.checkpoint, map_location="cpu", weights_only=False)
    path = export_prior(model, out, metrics={"exported_from": str(args.checkpoint)}, overwrite=args.overwrite)
    print(f"personal prior written to {path}")
    return 0


# ----------------------------------------------------------------------------------------
# convert


def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="checkpoint to convert (NVIDIA .pkl, rosinality .pt, pSp / e4e / ReStyle .pt: its decoder, or native)"
    )
    parser.add_argument("dst", help="output .safetensors path (native format: weights + architecture)")
    parser.add_argument(
        "--format", default="auto", choices=["auto", "native", "nvidia", "rosinality"],
        help="format of SRC (default: detected from the file's contents; rosinality = any torch .pt)",
    )  # fmt: skip
    _add_torch_checkpoint_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def _run_convert(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and not args.overwrite:
        raise UserError(f"{dst}: exists; pass --overwrite to replace it")
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: DST must differ from SRC ({src}); the source is never modified")
    if not src.exists():
        raise FileNotFoundError(2, "No such file or directory", str(src))
    kwargs = _torch_checkpoint_options(args)
    generator = load_generator(src, format=None if args.format == "auto" else args.format, **kwargs).eval()
    save_generator(generator, dst, extra_metadata={"converted_from": src.name})
    # Prove the conversion by rendering: the same latents through the source and the written file.
    reloaded = load_generator(dst, format="native").eval()
    with torch.no_grad():
        z = torch.randn(2, generator.z_dim, generator=torch.Generator().manual_seed(0))
        ws = generator.broadcast_w(generator.mapping(z))
        diff = (generator.synthesis(ws) - reloaded.synthesis(ws)).abs().max().item()
    info = generator.describe()
    print(f"wrote {dst}: {info['family']} {info['img_resolution']}px, num_ws={info['num_ws']}, "
          f"{info['parameters']:,} parameters; render check max |diff| = {diff:.2e}")  # fmt: skip
    if diff > 1e-5:
        raise SystemExit(f"error: the written file renders differently from {src} (max |diff| {diff:.3g})")
    return 0
