#!/usr/bin/env python
"""Seconds per optimisation step of MobileStyleGAN, float32 against bfloat16 autocast, before and after
HaarUpsample's choice of what it modulates; same generator, inputs and machine, one run.

Two steps, at batch 1 (what the CPU configs run):

* ``projection``: render ``ws`` at the generator's resolution, MSE at 256 px, backward to ``ws``
  only (the generator frozen): one step of a W+ projection (``mystyle_pl.tasks``);
* ``tuning``: render ``w``, LPIPS-``--lpips`` + MSE at 256 px (``PersonalTuner.reconstruction_loss``'s
  loss), backward to the synthesis weights, an Adam step at lr 0 (the weights stay as loaded): one
  step of ``PersonalTuner``.

``before``: HaarUpsample always modulates its (tiny) kernel for one image; ``after``: as shipped
(``mobilestylegan._kernel_gradient_is_cheap``: the activation is scaled where a bfloat16 gradient
must reach the styles, because the transposed convolution's kernel gradient is slow in bfloat16 on a
CPU). Each row: one untimed step, then the mean of ``--steps`` timed steps.

    python benchmarks/step_precision.py                   # mobilestylegan-ffhq, 2 threads
    python benchmarks/step_precision.py --generator tiny --steps 1 --lpips random   (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import mystyle_pl.generators.mobilestylegan as msg  # noqa: E402
from mystyle_pl import load_generator  # noqa: E402
from mystyle_pl.imaging import downsample_to  # noqa: E402
from mystyle_pl.losses import LPIPS  # noqa: E402


def make_generator(name: str):
    """``name``: an asset name or checkpoint; ``tiny``: a seeded 64 px MobileStyleGAN (smoke runs)."""
    if name == "tiny":
        torch.manual_seed(0)
        return msg.MobileStyleGANGenerator(z_dim=16, w_dim=16, channels=(16, 8, 8, 8), mapping_layers=1)
    return load_generator(name)


def time_steps(step, steps: int) -> float:
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="mobilestylegan-ffhq", help="asset name, checkpoint, or tiny")
    p.add_argument("--lpips", default="alex", help="the tuning loss's LPIPS network (alex, vgg; random: untrained)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per row (default 4)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = make_generator(args.generator)
    lpips = LPIPS("alex", pretrained=False) if args.lpips == "random" else LPIPS(args.lpips)
    w = g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    real = torch.rand(1, 3, g.img_resolution, g.img_resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    size = min(256, g.img_resolution)
    target = downsample_to(real, size)
    adam = torch.optim.Adam(g.synthesis.parameters(), lr=0.0)

    def projection(bf16: bool):
        g.requires_grad_(False)
        ws = g.broadcast_w(w).clone().requires_grad_(True)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                image = g.synthesis(ws, noise_mode="const")
            downsample_to(image.float(), size).sub(target).square().mean().backward()

        return step

    def tuning(bf16: bool):
        g.requires_grad_(True)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as Lightning's bf16-mixed
                fake = downsample_to(g.synthesis(g.broadcast_w(w), noise_mode="const"), size)
                loss = (lpips(fake, target.to(fake.dtype)) + (fake.float() - target).square().mean()).mean()
            adam.zero_grad()
            loss.backward()
            adam.step()

        return step

    shipped = msg._kernel_gradient_is_cheap
    figures: dict = {"generator": args.generator, "threads": args.threads, "seconds_per_step": {}}
    try:
        for kind, make in (("projection", projection), ("tuning", tuning)):
            for precision in ("32", "bf16-mixed"):
                for version, rule in (("before", lambda x, styles: True), ("after", shipped)):
                    msg._kernel_gradient_is_cheap = rule
                    seconds = time_steps(make(precision != "32"), args.steps)
                    figures["seconds_per_step"][f"{kind} {precision} {version}"] = seconds
                    print(f"{kind:10s} {precision:10s} {version:6s} {seconds:.3f} s/step", flush=True)
    finally:
        msg._kernel_gradient_is_cheap = shipped
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
