#!/usr/bin/env python
"""Seconds per LPIPS forward + backward, and per ``PersonalTuner`` step, before and after session 14's
LPIPS changes; same weights, inputs and machine, one run, the two versions interleaved.

* ``before``: the target ``y`` and the result ``x`` go through the trunk in one batch
  (``torch.cat([x, y])``), contiguous (NCHW): every convolution's backward also computes the gradient
  of ``y``'s half, which no loss here needs (``y`` is the photo or the observation).
* ``after``: as shipped (:meth:`mystyle_pl.losses.LPIPS.layer_distances`): ``y``'s features are taken
  without autograd and the trunk runs channels-last (oneDNN and cuDNN's faster layout).

Rows: ``lpips-<net> <precision> <version>``: the distance of one ``[1, 3, S, S]`` pair and its
gradient to ``x``; ``tuning <precision> <version>``: one cpu_quick tuning step (render ``w``, LPIPS +
MSE at ``S`` px, backward to the synthesis weights, an Adam step at lr 0). Each row: ``--warmup``
untimed calls, then the median of ``--steps`` timed ones, alternating before / after.

    python benchmarks/lpips_speed.py                                   # VGG and AlexNet, 256 px, 2 threads
    python benchmarks/lpips_speed.py --generator tiny --lpips random --size 64 --steps 1   (a smoke run)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl.imaging import downsample_to  # noqa: E402
from mystyle_pl.losses import LPIPS  # noqa: E402
from mystyle_pl.losses.lpips import _unit_normalize  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from step_precision import make_generator  # noqa: E402


def lpips_before(module: LPIPS):
    """LPIPS as computed before session 14: one batch of ``x`` and ``y`` through a contiguous copy of the trunk."""
    trunk = copy.deepcopy(module.backbone).to(memory_format=torch.contiguous_format)

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = torch.cat([x, y]).to(module.shift.dtype)
        feats = trunk((both - module.shift) / module.scale)
        total = 0.0
        with torch.autocast(device_type=x.device.type, enabled=False):
            for feat, lin in zip(feats, module.lins):
                normed = _unit_normalize(feat)
                total = total + F.conv2d((normed[: len(x)] - normed[len(x) :]).square(), lin.weight.float()).mean(
                    dim=(1, 2, 3)
                )
        return total

    return distance


def median_seconds(steps: dict, n: int, warmup: int) -> dict[str, float]:
    """Time each callable of ``steps`` ``n`` times, interleaved (after ``warmup`` untimed rounds): medians."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(n):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="mobilestylegan-ffhq", help="asset name, checkpoint, or tiny")
    p.add_argument("--lpips", default="vgg,alex", help="LPIPS networks, comma-separated (random: untrained AlexNet)")
    p.add_argument("--size", type=int, default=256, help="image side in px (default 256, the losses' resolution)")
    p.add_argument("--steps", type=int, default=8, help="timed calls per row (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per row first (default 2)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 3, args.size, args.size, generator=gen) * 2 - 1
    y = torch.rand(1, 3, args.size, args.size, generator=gen) * 2 - 1
    figures: dict = {"size": args.size, "threads": args.threads, "seconds": {}}

    def lpips_step(fn, bf16: bool):
        def step():
            x = x0.clone().requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                value = fn(x, y).sum()
            value.backward()

        return step

    modules = {}
    for net in args.lpips.split(","):
        module = LPIPS("alex", pretrained=False) if net == "random" else LPIPS(net)
        modules[net] = module
        for precision in ("32", "bf16-mixed"):
            bf16 = precision != "32"
            rows = median_seconds(
                {"before": lpips_step(lpips_before(module), bf16), "after": lpips_step(module, bf16)},
                args.steps, args.warmup,
            )  # fmt: skip
            for version, seconds in rows.items():
                figures["seconds"][f"lpips-{net} {precision} {version}"] = seconds
                print(f"lpips-{net:6s} {precision:10s} {version:6s} {seconds:.3f} s", flush=True)

    g = make_generator(args.generator)
    g.requires_grad_(True)
    w = g.mapping(torch.randn(1, g.z_dim, generator=gen)).detach()
    size = min(args.size, g.img_resolution)
    target = downsample_to(y, size)
    net = args.lpips.split(",")[0]
    adam = torch.optim.Adam(g.synthesis.parameters(), lr=0.0)

    def tuning(distance, bf16: bool):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as Lightning's bf16-mixed
                fake = downsample_to(g.synthesis(g.broadcast_w(w), noise_mode="const"), size)
                loss = (distance(fake, target) + (fake.float() - target).square().mean()).mean()
            adam.zero_grad()
            loss.backward()
            adam.step()

        return step

    for precision in ("32", "bf16-mixed"):
        bf16 = precision != "32"
        rows = median_seconds(
            {"before": tuning(lpips_before(modules[net]), bf16), "after": tuning(modules[net], bf16)},
            args.steps, args.warmup,
        )  # fmt: skip
        for version, seconds in rows.items():
            figures["seconds"][f"tuning {precision} {version}"] = seconds
            print(f"tuning ({net}) {precision:10s} {version:6s} {seconds:.3f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
