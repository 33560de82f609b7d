#!/usr/bin/env python
"""Speed and memory of the StyleGAN2 generator (config-f, random weights).

Times ``G(z)`` = mapping + synthesis (``noise_mode='const'``) of
``mystyle_pl.StyleGAN2Generator(img_resolution=R, channel_base=32768, channel_max=512)``:

* forward: ``G.eval()`` under ``torch.no_grad()`` (inference);
* forward+backward: ``G.train()``, every parameter requiring grad, ``img.square().mean().backward()``
  (what tuning the generator costs per step, optimiser excluded).

Figures are milliseconds per image (median over ``--iters`` timed iterations after ``--warmup``
untimed ones, divided by the batch size). On CUDA each iteration is bracketed by
``torch.cuda.synchronize()`` and the peak allocated memory of each measurement is reported; CUDA
runs in fp32 (TF32 off unless ``--tf32``) and under bf16 autocast.

``--nvidia-ref PATH`` points at a checkout of NVlabs/stylegan2-ada-pytorch; its
``training.networks.Generator`` is imported from there at run time, given the very same weights
(``load_state_dict(strict=True)``) and timed side by side (``force_fp32=True``, ``num_fp16_res=0``).
Its custom CUDA ops are disabled by default so both sides run plain PyTorch (``--nvidia-ops auto``
lets it try to build them). Its code asserts fp32/fp16 tensors, so its bf16 rows report a failure.
Nothing of NVIDIA's code ships with this project.

On a shared or busy CPU host, ``--threads 1`` gives far steadier figures (OpenMP threads that
lose their core stall each other); implementations are timed round-robin so they stay comparable.

Examples::

    python benchmarks/generator.py                                  # CPU (+ CUDA if present) defaults
    python benchmarks/generator.py --device cpu --resolutions 256 --batch-sizes 1 4 --iters 5
    python benchmarks/generator.py --nvidia-ref /tmp/sg2ada --resolutions 256
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl import StyleGAN2Generator

DEFAULT_BATCH_SIZES = {256: [1, 4], 1024: [1]}
# Timed iterations when --iters is not given: a few on CPU (1024 px takes seconds per step).
DEFAULT_ITERS = {"cpu": {256: 3, 1024: 1}, "cuda": {256: 20, 1024: 10}}
DEFAULT_WARMUP = {"cpu": 1, "cuda": 5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a table of forward and forward+backward ms/image.",
        epilog="Defaults keep a CPU-only run to about 2-3 minutes on 2 cores.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--resolutions", type=int, nargs="+", default=[256, 1024], help="output resolutions (default: 256 1024)"
    )
    p.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None,
        help="batch sizes for every resolution (default: 1 4 at 256, 1 at 1024, 1 at anything else)",
    )  # fmt: skip
    p.add_argument(
        "--iters", type=int, default=None,
        help="timed iterations per measurement; the median is reported "
        "(default: CPU 3 at <=256 px, 1 above; CUDA 20 / 10)",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default: CPU 1, CUDA 5)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], nargs="+", default=["auto"],
        help="'auto' = cpu, plus cuda when torch.cuda.is_available() (default)",
    )  # fmt: skip
    p.add_argument(
        "--dtypes", choices=["fp32", "bf16"], nargs="+", default=None,
        help="precisions (default: fp32 on CPU; fp32 and bf16 autocast on CUDA)",
    )  # fmt: skip
    p.add_argument("--no-backward", action="store_true", help="time the forward pass only")
    p.add_argument(
        "--fused-modconv", choices=["auto", "on", "off"], default="auto",
        help="modulated-conv form passed to both implementations; 'auto' = each one's own default "
        "(both fuse for inference; in training ours fuses at batch 1 only, NVIDIA's never)",
    )  # fmt: skip
    p.add_argument("--conv-clamp", type=float, default=None, help="conv_clamp (config-f: none; ADA configs: 256)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convs in the CUDA fp32 runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--nvidia-ref", type=Path, default=None, metavar="PATH",
        help="stylegan2-ada-pytorch checkout: also time its Generator on the same weights",
    )  # fmt: skip
    p.add_argument(
        "--nvidia-ops", choices=["ref", "auto"], default="ref",
        help="NVIDIA's custom CUDA ops: 'ref' = its pure-PyTorch reference ops (default), "
        "'auto' = let it try to compile its plugins on CUDA",
    )  # fmt: skip
    args = p.parse_args(argv)
    for name in ("resolutions", "batch_sizes"):
        values = getattr(args, name) or []
        if any(v < 1 for v in values):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.iters is not None and args.iters < 1:
        p.error("--iters must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------
# Implementations under test: each is ``make(G_ours, device) -> (forward_fn(z, fused) -> img)``.


def load_nvidia(path: Path, ops: str):
    """Import ``training.networks.Generator`` from a stylegan2-ada-pytorch checkout."""
    path = path.expanduser().resolve()
    if not (path / "training" / "networks.py").is_file():
        raise SystemExit(f"--nvidia-ref {path}: no training/networks.py there (need a stylegan2-ada-pytorch checkout)")
    sys.path.insert(0, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch_utils.ops import bias_act, upfirdn2d  # type: ignore[import-not-found]
        from training.networks import Generator  # type: ignore[import-not-found]
    if ops == "ref":
        # Make its ops take their reference (plain PyTorch) path on every device.
        bias_act._init = lambda: False
        upfirdn2d._init = lambda: False
    return Generator


def build_nvidia(NVGenerator, ours: StyleGAN2Generator) -> torch.nn.Module:
    cfg = ours.config
    nv = NVGenerator(
        z_dim=cfg["z_dim"], c_dim=0, w_dim=cfg["w_dim"], img_resolution=cfg["img_resolution"],
        img_channels=cfg["img_channels"], mapping_kwargs={"num_layers": cfg["mapping_layers"], "lr_multiplier": cfg["mapping_lr_multiplier"]},
        synthesis_kwargs={
            "channel_base": cfg["channel_base"], "channel_max": cfg["channel_max"], "num_fp16_res": 0,
            "conv_clamp": cfg["conv_clamp"], "resample_filter": cfg["resample_filter"],
        },
    )  # fmt: skip
    nv.load_state_dict(ours.state_dict(), strict=True)
    return nv


def ours_forward(G: torch.nn.Module) -> Callable[[torch.Tensor, bool | None], torch.Tensor]:
    def fn(z: torch.Tensor, fused: bool | None) -> torch.Tensor:
        w = G.mapping(z)
        return G.synthesis(G.broadcast_w(w), noise_mode="const", fused_modconv=fused)

    return fn


def nvidia_forward(G: torch.nn.Module) -> Callable[[torch.Tensor, bool | None], torch.Tensor]:
    def fn(z: torch.Tensor, fused: bool | None) -> torch.Tensor:
        ws = G.mapping(z, None)
        return G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=fused)

    return fn


# ---------------------------------------------------------------------------------------------
# Timing.


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    steps: dict[str, Callable[[], None]], device: torch.device, warmup: int, iters: int
) -> dict[str, tuple[float, float | None]]:
    """Median seconds and (on CUDA) peak allocated MiB of each step.

    The steps are timed round-robin, one iteration of each in turn, so that a busy or throttling
    host slows every implementation alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float | None] = dict.fromkeys(steps)
    for _ in range(iters):
        for name, step in steps.items():
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peaks[name] = max(peaks[name] or 0.0, torch.cuda.max_memory_allocated(device) / 2**20)
    return {name: (statistics.median(times[name]), peaks[name]) for name in steps}


def autocast_ctx(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bench(impls, device, dtype, batch, fused, warmup, iters, backward, seed) -> dict[str, dict[str, float | None]]:
    """Forward and forward+backward figures (ms/image, MiB) of each ``name: (G, forward_fn)``."""
    z = torch.randn(batch, impls[next(iter(impls))][0].z_dim, generator=torch.Generator().manual_seed(seed))
    z = z.to(device)
    rows: dict[str, dict[str, float | None]] = {name: {} for name in impls}

    def make_fwd(forward):
        def fwd() -> None:
            with torch.no_grad(), autocast_ctx(device, dtype):
                forward(z, fused)

        return fwd

    def make_fwd_bwd(G, forward):
        def fwd_bwd() -> None:
            G.zero_grad(set_to_none=True)
            with autocast_ctx(device, dtype):
                img = forward(z, fused)
            img.float().square().mean().backward()

        return fwd_bwd

    for G, _ in impls.values():
        G.eval().requires_grad_(False)
    for name, (t, peak) in measure(
        {name: make_fwd(forward) for name, (_, forward) in impls.items()}, device, warmup, iters
    ).items():
        rows[name]["fwd"], rows[name]["fwd_mem"] = 1000 * t / batch, peak
    if backward:
        for G, _ in impls.values():
            G.train().requires_grad_(True)
        for name, (t, peak) in measure(
            {name: make_fwd_bwd(G, forward) for name, (G, forward) in impls.items()}, device, warmup, iters
        ).items():
            rows[name]["bwd"], rows[name]["bwd_mem"] = 1000 * t / batch, peak
        for G, _ in impls.values():
            G.zero_grad(set_to_none=True)
            G.eval().requires_grad_(False)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    devices: list[str] = []
    for d in args.device:
        if d == "auto":
            devices += ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        elif d == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch.cuda.is_available() is False")
        else:
            devices.append(d)
    devices = list(dict.fromkeys(devices))
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    fused = {"auto": None, "on": True, "off": False}[args.fused_modconv]
    NVGenerator = load_nvidia(args.nvidia_ref, args.nvidia_ops) if args.nvidia_ref else None

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, cpus {os.cpu_count()}", end="")
    if torch.cuda.is_available():
        print(f", CUDA {torch.version.cuda} on {torch.cuda.get_device_name()}", end="")
    print(f"; fused_modconv={args.fused_modconv}, conv_clamp={args.conv_clamp}")
    header = ["device", "impl", "dtype", "res", "batch", "iters", "fwd ms/img", "fwd+bwd ms/img",
              "fwd peak MiB", "fwd+bwd peak MiB"]  # fmt: skip
    widths = [6, 7, 5, 5, 5, 5, 11, 15, 13, 17]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)), flush=True)
    t_start = time.perf_counter()

    for res in args.resolutions:
        torch.manual_seed(args.seed)
        G_cpu = StyleGAN2Generator(
            img_resolution=res, channel_base=32768, channel_max=512, conv_clamp=args.conv_clamp
        )  # random config-f weights
        nv_cpu = build_nvidia(NVGenerator, G_cpu) if NVGenerator is not None else None
        batch_sizes = args.batch_sizes or DEFAULT_BATCH_SIZES.get(res, [1])
        for device_name in devices:
            device = torch.device(device_name)
            dtypes = args.dtypes or (["fp32", "bf16"] if device.type == "cuda" else ["fp32"])
            iters = args.iters or DEFAULT_ITERS[device.type][256 if res <= 256 else 1024]
            warmup = DEFAULT_WARMUP[device.type] if args.warmup is None else args.warmup
            impls = {"ours": (G_cpu.to(device), ours_forward(G_cpu))}
            if nv_cpu is not None:
                impls["nvidia"] = (nv_cpu.to(device), nvidia_forward(nv_cpu))
            for dtype in dtypes:
                for batch in batch_sizes:
                    run = functools.partial(
                        bench, device=device, dtype=dtype, batch=batch, fused=fused, warmup=warmup, iters=iters,
                        backward=not args.no_backward, seed=args.seed,
                    )  # fmt: skip
                    try:
                        rows = run(impls)
                    except Exception:  # noqa: BLE001 - retry one implementation at a time to see which failed
                        rows = {}
                        for name, impl in impls.items():
                            try:
                                rows.update(run({name: impl}))
                            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report and go on
                                message = str(exc).splitlines()[0][:200] if str(exc) else "(no message)"
                                print(f"  {name} {device_name} {dtype} {res}px batch {batch} failed: "
                                      f"{type(exc).__name__}: {message}", flush=True)  # fmt: skip
                                if device.type == "cuda":
                                    torch.cuda.empty_cache()
                    for name, row in rows.items():
                        cells = [device_name, name, dtype, res, batch, iters, fmt(row["fwd"]), fmt(row.get("bwd")),
                                 fmt(row["fwd_mem"], ".0f"), fmt(row.get("bwd_mem"), ".0f")]  # fmt: skip
                        print("  ".join(str(c).rjust(w) for c, w in zip(cells, widths)), flush=True)
            G_cpu.to("cpu")
            if nv_cpu is not None:
                nv_cpu.to("cpu")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
