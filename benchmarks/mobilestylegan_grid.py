#!/usr/bin/env python
"""A PNG grid of random MobileStyleGAN faces (a visual check of the converted FFHQ weights).

Samples ``--count`` faces from seeded ``z`` at ``--psi`` truncation (``noise_mode='const'``),
shrinks each to ``--size`` px and writes one ``--cols``-wide grid to ``--out`` (PIL only).
Optionally counts the faces dlib's frontal detector finds (``--dlib``; ``pip install dlib-bin``).

The generator comes from ``--weights`` (a converted native ``.safetensors``), else from ``--ir``
(a folder with the IR files or the random-face wheel, converted in memory), else from the
project's asset cache (``mystyle_pl.assets.fetch("mobilestylegan-ffhq")``).

Examples::

    python benchmarks/mobilestylegan_grid.py --out faces.png
    python benchmarks/mobilestylegan_grid.py --ir random_face-2021.7.21.1-py3-none-any.whl --out faces.png --dlib
    python benchmarks/mobilestylegan_grid.py --weights mobilestylegan-ffhq.safetensors --count 16 --dlib --out g.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl.generators import load_generator  # noqa: E402
from mystyle_pl.generators.formats.openvino_ir import load_openvino_ir  # noqa: E402


def load(args: argparse.Namespace):
    if args.weights:
        return load_generator(args.weights)
    if args.ir:
        return load_openvino_ir(args.ir)
    from mystyle_pl import assets

    return load_generator(assets.fetch("mobilestylegan-ffhq"))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] -> ``[B, H, W, 3]`` uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--weights", help="converted native .safetensors file")
    p.add_argument("--ir", help="folder with {Mapping,Synthesis}Network.{xml,bin}, or the random-face wheel")
    p.add_argument("--count", type=int, default=8, help="number of faces (default 8)")
    p.add_argument("--cols", type=int, default=4, help="faces per row (default 4)")
    p.add_argument("--size", type=int, default=256, help="size of each face in the grid, px (default 256)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--seed", type=int, default=0, help="seed of the z samples (default 0)")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--dlib", action="store_true", help="count faces found by dlib's frontal face detector")
    args = p.parse_args(argv)

    generator = load(args).eval()
    z = torch.randn(args.count, generator.z_dim, generator=torch.Generator().manual_seed(args.seed))
    detector = None
    if args.dlib:
        import dlib

        detector = dlib.get_frontal_face_detector()
    tiles, found = [], 0
    with torch.no_grad():
        for chunk in z.split(args.batch):
            images = generator(chunk, truncation_psi=args.psi, noise_mode="const")
            for pixels in to_uint8(images):
                if detector is not None:
                    found += len(detector(pixels, 0)) > 0
                tiles.append(Image.fromarray(pixels).resize((args.size, args.size), Image.LANCZOS))
    rows = (len(tiles) + args.cols - 1) // args.cols
    grid = Image.new("RGB", (args.cols * args.size, rows * args.size))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % args.cols) * args.size, (i // args.cols) * args.size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    grid.save(tmp, format="PNG")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(tiles)} faces, psi={args.psi}, seed={args.seed})")
    if detector is not None:
        print(f"dlib frontal face detector: {found}/{len(tiles)} images with a face ({found / len(tiles):.0%})")


if __name__ == "__main__":
    main()
