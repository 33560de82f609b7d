"""Edits of one aligned photo along a principal direction (coarse layers), without and with pivotal
tuning: a PNG with two rows (no tuning / ``--pivotal-steps``), columns = the input, then -2..2 standard
deviations. Prints each row's inversion consistency (dB at the generator's resolution) and seconds.

    PYTHONPATH=. python scripts/edit_pivotal_strip.py --prior outputs/demo/prior \
        --photo outputs/demo/held_out/images/demo_12.png --out edit_strip.png
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from PIL import Image

from mystyle_pl import Edit, Invert, PersonalPrior
from mystyle_pl.demo_album import slot_resolutions
from mystyle_pl.imaging import resize_square
from mystyle_pl.losses import LPIPS
from mystyle_pl.tasks import principal_directions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", required=True, help="personal prior bundle folder")
    ap.add_argument("--photo", required=True, help="an aligned face photo (any size; resized to the generator's)")
    ap.add_argument("--out", required=True, help="the strip (PNG)")
    ap.add_argument("--direction", type=int, default=1, help="principal direction of W (1 turns the head)")
    ap.add_argument("--pivotal-steps", type=int, default=50, help="pivotal tuning steps of the second row")
    ap.add_argument("--size", type=int, default=192, help="thumbnail side in px")
    args = ap.parse_args()

    prior = PersonalPrior.load(args.prior)
    g, lpips = prior.generator, LPIPS("alex")
    x = resize_square(prior.as_images(args.photo), int(g.img_resolution)).clamp(-1, 1)
    coarse = [i for i, r in enumerate(slot_resolutions(g)) if r <= 8]
    dirs, std = principal_directions(g, k=args.direction + 1, return_std=True)
    strengths = [s * float(std[args.direction]) for s in (-2, -1, 0, 1, 2)]
    rows = []
    for steps in (0, args.pivotal_steps):
        start = time.time()
        inv = Invert(preset="quick", pivotal_steps=steps).bind(prior, lpips=lpips)(x)
        edit = Edit(layers=coarse, preset="quick").bind(prior, lpips=lpips)(x, dirs[args.direction], strengths, projection=inv)
        print(f"pivotal_steps {steps}: consistency {float(inv.consistency[0]):.2f} dB, {time.time() - start:.0f} s")
        rows.append(F.interpolate(torch.cat([x, edit.images[0]]), size=args.size, mode="area"))
    grid = torch.cat([torch.cat(list(row), dim=-1) for row in rows], dim=-2)
    Image.fromarray(((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
