#!/usr/bin/env python
"""Tuning throughput: the official MyStyle recipe against mystyle-pl's default, same generator and machine.

Each configuration runs the tuner's own training computation (``PersonalTuner.render`` +
``reconstruction_loss`` + backward + Adam step) on synthetic photos and anchors, and prints
images per second and peak memory:

* ``official``: batch 1, fp32, AlexNet LPIPS at full resolution (google/mystyle);
* ``ours``: batch ``--batch`` (default 8), bf16 autocast where the device supports it, loss at 256 px.

Examples::

    python benchmarks/tuning.py                                   # CPU, mobilestylegan-ffhq
    python benchmarks/tuning.py --device cuda --generators mobilestylegan-ffhq stylegan2-config-f
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl.tuning.module import PersonalTuner  # noqa: E402


def build_tuner(generator: str, lpips_net: str, loss_resolution: int | None, compile: bool = False) -> PersonalTuner:
    """A ``PersonalTuner`` on ``generator`` (an asset name, a checkpoint path or ``stylegan2-config-f``);
    ``compile``: its synthesis network wrapped in ``torch.compile`` (compiled on the first steps)."""
    source = generator
    if generator == "stylegan2-config-f":  # random weights are fine for speed
        from mystyle_pl.generators import StyleGAN2Generator, save_generator

        source = str(Path("/tmp") / "mystyle-bench-stylegan2-1024.safetensors")
        if not Path(source).exists():
            save_generator(StyleGAN2Generator(img_resolution=1024), source)
    tuner = PersonalTuner(generator=source, lpips_net=lpips_net, loss_resolution=loss_resolution, compile=compile)
    if compile:
        tuner.setup("benchmark")  # wraps the synthesis (any stage but "fit": no data module needed)
    return tuner


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(tuner: PersonalTuner, device: torch.device, batch: int, bf16: bool, steps: int, warmup: int) -> tuple[float, float]:
    """``(images per second, peak memory in MiB)`` of ``steps`` timed training steps (median step time)
    after ``warmup`` untimed ones, on random photos ``[batch, 3, R, R]`` and anchors near ``w_avg``."""
    tuner = tuner.to(device).train()
    g = tuner.generator
    params = [p for p in g.synthesis.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3e-4)
    photos = torch.rand(batch, 3, g.img_resolution, g.img_resolution, device=device) * 2 - 1
    w = g.w_avg.detach().expand(batch, -1).clone() + 0.1 * torch.randn(batch, g.w_dim, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = tuner.reconstruction_loss(tuner.render(w), photos)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return batch / median, peak_memory_mb(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--generators", nargs="+", default=["mobilestylegan-ffhq"],
                   help="asset names or paths; 'stylegan2-config-f' = random config-f StyleGAN2 at 1024")  # fmt: skip
    p.add_argument("--batch", type=int, default=8, help="our default's batch size")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 5 on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps = args.steps or (20 if device.type == "cuda" else 3)
    warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {steps} timed steps after {warmup} warm-up")
    print(f"{'generator':<22} {'recipe':<10} {'batch':>5} {'precision':>9} {'loss px':>7} {'img/s':>8} {'peak MB':>8}")
    for generator in args.generators:
        results = {}
        for recipe, batch, bf16, loss_res in (("official", 1, False, None), ("ours", args.batch, bf16_ok, 256)):
            tuner = build_tuner(generator, "alex", loss_res)
            ips, mem = run(tuner, device, batch, bf16, steps, warmup)
            results[recipe] = ips
            res = loss_res or tuner.generator.img_resolution
            print(f"{generator:<22} {recipe:<10} {batch:>5} {'bf16' if bf16 else 'fp32':>9} {res:>7} {ips:>8.2f} {mem:>8.0f}")
            del tuner
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"{generator:<22} ours / official throughput: {results['ours'] / results['official']:.2f}x")


if __name__ == "__main__":
    main()
