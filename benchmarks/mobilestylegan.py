#!/usr/bin/env python
"""Speed of the MobileStyleGAN port beside OpenVINO, and how it responds to Adam (learning rates).

Speed (default): ``synthesis(ws)`` of the FFHQ 1024 model, ``noise_mode='const'``, in
milliseconds per image (median and best of ``--iters`` timed runs after one warm-up), for each of
``--threads`` (default: 1 and all cores; torch and OpenVINO get the same count -- on a machine
shared with other busy processes, the 1-thread rows are the ones to compare):

* forward: ``eval()``, ``torch.no_grad()``;
* forward+backward: every parameter requiring grad, ``img.square().mean().backward()``;
* OpenVINO forward of the original IR on the same CPU in the same run, in f32
  (``INFERENCE_PRECISION_HINT=f32``; on AVX512-BF16/AMX CPUs OpenVINO's default is bf16, shown too);
* CUDA fp32 and bf16-autocast rows when a GPU is present.

``--lr-probe`` instead measures (1) the relative change of every weight tensor, and of the image,
after one Adam step, for this port and for a freshly initialised StyleGAN2 (or ``--compare-weights``),
and (2) short fine-tuning runs (all synthesis parameters, Adam, one w fitted to a different face,
MSE at 256 px) for several learning rates, with how much the images of two other latents changed.

Weights: ``--ir`` (a folder with ``{Mapping,Synthesis}Network.{xml,bin}`` or the random-face
wheel; needed for the OpenVINO rows), else ``--weights`` (a converted ``.safetensors``), else the
asset cache (``mystyle_pl.assets.fetch("mobilestylegan-ffhq")``).

Examples::

    python benchmarks/mobilestylegan.py --ir random_face-2021.7.21.1-py3-none-any.whl
    python benchmarks/mobilestylegan.py --ir IR_DIR --batch-sizes 1 --iters 3 --no-backward
    python benchmarks/mobilestylegan.py --weights mobilestylegan-ffhq.safetensors --lr-probe
    python benchmarks/mobilestylegan.py --lr-probe --compare-weights stylegan2-ffhq-1024.safetensors
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl.generators import StyleGAN2Generator, load_generator  # noqa: E402
from mystyle_pl.generators.formats.openvino_ir import load_openvino_ir  # noqa: E402
from mystyle_pl.generators.mobilestylegan import MobileStyleGANGenerator  # noqa: E402

IR_STEMS = ("MappingNetwork", "SynthesisNetwork")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ir", type=Path, help="folder with the IR files, or the random-face wheel")
    p.add_argument("--weights", type=Path, help="converted native .safetensors (no OpenVINO rows without --ir)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=3, help="timed iterations per measurement (default 3)")
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    p.add_argument(
        "--threads", type=int, nargs="+", default=None,
        help="CPU thread counts to time, each for torch and OpenVINO alike (default: 1 and all cores)",
    )  # fmt: skip
    p.add_argument("--lr-probe", action="store_true", help="measure Adam step sizes and a learning-rate sweep")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    p.add_argument("--steps", type=int, default=20, help="fine-tuning steps per learning rate (--lr-probe)")
    p.add_argument(
        "--compare-weights", type=Path,
        help="--lr-probe: a generator checkpoint (e.g. StyleGAN2 FFHQ) to measure beside this port "
        "(default: a freshly initialised StyleGAN2 at 256 px)",
    )  # fmt: skip
    return p.parse_args(argv)


@contextlib.contextmanager
def ir_folder(path: Path):
    """``path`` if it is a folder, else the IR members of the wheel extracted to a temp folder."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="mobilestylegan-ir-") as tmp, zipfile.ZipFile(path) as zf:
        for stem in IR_STEMS:
            for ext in ("xml", "bin"):
                (Path(tmp) / f"{stem}.{ext}").write_bytes(zf.read(f"random_face/data/{stem}.{ext}"))
        yield Path(tmp)


def load_generator_from(args: argparse.Namespace, ir_dir: Path | None) -> MobileStyleGANGenerator:
    if ir_dir is not None:
        return load_openvino_ir(ir_dir)
    if args.weights is not None:
        return load_generator(args.weights)
    from mystyle_pl import assets

    return load_generator(assets.fetch("mobilestylegan-ffhq"))


def timed(fn: Callable[[], object], iters: int, sync: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """(median, best) seconds of ``fn`` over ``iters`` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def torch_rows(
    generator, batch: int, device: str, dtype: str, iters: int, backward: bool
) -> list[tuple[str, float, float]]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    generator = generator.to(device)
    ws = torch.randn(batch, generator.w_dim, device=device, generator=torch.Generator(device).manual_seed(0))
    ws = generator.broadcast_w(generator.w_avg + 0.7 * (ws - generator.w_avg))

    def forward():
        with torch.no_grad(), autocast:
            generator.synthesis(ws)

    def forward_backward():
        with autocast:
            img = generator.synthesis(ws)
        img.float().square().mean().backward()
        generator.zero_grad(set_to_none=True)

    rows = [(f"ours {device} {dtype} forward", *timed(forward, iters, sync))]
    if backward:
        generator.requires_grad_(True)
        rows.append((f"ours {device} {dtype} forward+backward", *timed(forward_backward, iters, sync)))
    generator.cpu()
    return rows


def openvino_rows(
    ir_dir: Path, batch: int, iters: int, w_avg: np.ndarray, threads: int
) -> list[tuple[str, float, float]]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(ir_dir / "SynthesisNetwork.xml", ir_dir / "SynthesisNetwork.bin")
    model.reshape({"style": [batch, 512]})
    rng = np.random.default_rng(0)
    w = (w_avg + 0.7 * (rng.standard_normal((batch, 512)) - w_avg)).astype(np.float32)
    rows = []
    for label, config in (("f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("default", {})):
        compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_NUM_THREADS": threads})
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        rows.append((f"OpenVINO cpu {label} ({precision}) forward", *timed(lambda c=compiled: c(w), iters)))
    return rows


def speed(args: argparse.Namespace, generator: MobileStyleGANGenerator, ir_dir: Path | None) -> None:
    cores = torch.get_num_threads()
    thread_counts = args.threads or sorted({1, cores})
    print(f"torch {torch.__version__}; image {generator.img_resolution} px; thread counts {thread_counts}")
    table: list[tuple[int, int, str, float, float]] = []
    generator.eval()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            rows = torch_rows(generator, batch, "cpu", "fp32", args.iters, not args.no_backward)
            if ir_dir is not None:
                try:
                    rows += openvino_rows(ir_dir, batch, args.iters, generator.w_avg.numpy(), threads)
                except ImportError:
                    print("openvino is not installed (pip install openvino): no OpenVINO rows")
            new = [(threads, batch, name, median / batch * 1e3, best / batch * 1e3) for name, median, best in rows]
            print_table(new)
            table += new
    torch.set_num_threads(cores)
    if torch.cuda.is_available():
        for batch in args.batch_sizes:
            for dtype in ("fp32", "bf16"):
                rows = torch_rows(generator, batch, "cuda", dtype, max(args.iters, 10), not args.no_backward)
                new = [(0, batch, name, median / batch * 1e3, best / batch * 1e3) for name, median, best in rows]
                print_table(new)
                table += new
    else:
        print("CUDA: not available on this machine")
    print("\nall rows, milliseconds per image:")
    print_table(table)
    for threads in thread_counts:
        for batch in args.batch_sizes:
            ours = [r for r in table if r[:3] == (threads, batch, "ours cpu fp32 forward")]
            theirs = [r for r in table if r[:2] == (threads, batch) and r[2].startswith("OpenVINO cpu f32")]
            if ours and theirs:
                print(
                    f"{threads} thread(s), batch {batch}: ours / OpenVINO f32 forward = "
                    f"{ours[0][3] / theirs[0][3]:.2f} (median), {ours[0][4] / theirs[0][4]:.2f} (best)"
                )


def print_table(rows: list[tuple[int, int, str, float, float]]) -> None:
    for threads, batch, name, median, best in rows:
        where = f"{threads} thr" if threads else "GPU  "
        print(f"  {where}  batch {batch:>2}  {name:<46} {median:9.1f} ms/img (median)  {best:9.1f} (best)")


# ----------------------------------------------------------------------------------------
# learning-rate probe


def weight_groups(generator) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    groups: dict[str, list] = {}
    for name, param in generator.synthesis.named_parameters():
        if "affine.weight" in name:
            key = "style affines"
        elif name.endswith(("conv.weight", "weight_dw", "weight_pw", "conv0.weight", "conv1.weight")):
            key = "conv weights"
        elif "torgb" in name or "to_img" in name:
            key = "to-image weights" if name.endswith("weight") else "biases"
        elif name.endswith("bias"):
            key = "biases"
        else:
            continue
        groups.setdefault(key, []).append((name, param))
    return groups


def adam_relative_steps(generator, ws: torch.Tensor, target: torch.Tensor, lr: float) -> tuple[dict[str, float], float]:
    """One Adam step on the full-resolution MSE to ``target``; the generator is restored afterwards.

    Returns the median over tensors of ``||dW|| / ||W|| / lr`` per group (W as stored; the gains are
    fixed, so this is also the relative change of the weight the network uses) and the mean
    absolute change of the image (``ws``, const noise) that the step causes.
    """
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    generator.requires_grad_(False)
    generator.synthesis.requires_grad_(True)
    before = {n: p.detach().clone() for n, p in generator.synthesis.named_parameters()}
    optimizer = torch.optim.Adam(generator.synthesis.parameters(), lr=lr, betas=(0.9, 0.999))
    img = generator.synthesis(ws)
    (img - target).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        image_change = (generator.synthesis(ws) - img).abs().mean().item()
    out = {}
    for group, params in weight_groups(generator).items():
        ratios = [
            ((p.detach() - before[n]).norm() / before[n].norm()).item() / lr for n, p in params if before[n].norm() > 0
        ]
        if ratios:
            out[group] = statistics.median(ratios)
    generator.zero_grad(set_to_none=True)
    generator.load_state_dict(state)
    return out, image_change


def finetune_curve(generator, ws, target, lr: float, steps: int, ws_other: torch.Tensor) -> tuple[list[float], float]:
    """Fit ``synthesis(ws)`` to ``target`` (MSE at 256 px); return the losses and the collateral change.

    The collateral change is the MSE (at 256 px) between the images of ``ws_other`` after and before
    tuning: how much of the rest of the latent space the tuning disturbed. The generator is restored.
    """
    state = {k: v.clone() for k, v in generator.state_dict().items()}

    def small(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 256)

    with torch.no_grad():
        others_before = small(generator.synthesis(ws_other))
    generator.requires_grad_(False)
    generator.synthesis.requires_grad_(True)
    optimizer = torch.optim.Adam(generator.synthesis.parameters(), lr=lr, betas=(0.9, 0.999))
    losses = []
    for _ in range(steps + 1):
        loss = (small(generator.synthesis(ws)) - target).square().mean()
        losses.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        collateral = (small(generator.synthesis(ws_other)) - others_before).square().mean().item()
    generator.load_state_dict(state)
    return losses, collateral


def lr_probe(args: argparse.Namespace, generator: MobileStyleGANGenerator) -> None:
    torch.manual_seed(0)
    z = torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = generator.mapping(z, truncation_psi=0.7)
        ws, ws_target, ws_other = (
            generator.broadcast_w(w[:1]),
            generator.broadcast_w(w[1:2]),
            generator.broadcast_w(w[2:]),
        )
        target = generator.synthesis(ws_target)
    probe_lr = 1e-3
    print(f"One Adam step (lr {probe_lr:g}, full-resolution MSE to another image): median over tensors of")
    print("||dW|| / ||W|| / lr, i.e. 1.0 = every weight tensor moves by lr relative to its RMS")
    ours, ours_change = adam_relative_steps(generator, ws, target, lr=probe_lr)
    if args.compare_weights is None:
        other, other_name = StyleGAN2Generator(img_resolution=256).eval(), "StyleGAN2 (fresh init)"
    else:
        other, other_name = load_generator(args.compare_weights).eval(), args.compare_weights.name
    with torch.no_grad():
        z_other = torch.randn(2, other.z_dim, generator=torch.Generator().manual_seed(3))
        w_other = other.mapping(z_other, truncation_psi=0.7)
        ws_cmp, target_cmp = other.broadcast_w(w_other[:1]), other.synthesis(other.broadcast_w(w_other[1:]))
    theirs, theirs_change = adam_relative_steps(other, ws_cmp, target_cmp, lr=probe_lr)
    for group in sorted(set(ours) | set(theirs)):
        a, b = ours.get(group), theirs.get(group)
        print(f"  {group:<18} MobileStyleGAN (converted) {a if a is None else f'{a:6.3f}'}   "
              f"{other_name} {b if b is None else f'{b:6.3f}'}")  # fmt: skip
    print(f"  mean |change| of the image after that step: MobileStyleGAN {ours_change:.4f}, ", end="")
    print(f"{other_name} {theirs_change:.4f} (images in [-1, 1])")
    target_small = torch.nn.functional.adaptive_avg_pool2d(target, 256)
    print(
        "\nfine-tuning all synthesis parameters so that one w renders another face "
        f"(MSE at 256 px, Adam, default betas), {args.steps} steps:"
    )
    checkpoints = sorted({0, 1, 2, 5, 10, args.steps} & set(range(args.steps + 1)))
    print("  lr        " + "".join(f"step {s:<5}" for s in checkpoints) + "other faces changed (MSE)")
    for lr in args.lrs:
        losses, collateral = finetune_curve(generator, ws, target_small, lr, args.steps, ws_other)
        row = "".join(f"{losses[s]:<10.4f}" for s in checkpoints)
        print(f"  {lr:<9.0e} {row}{collateral:.4f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        ir_dir = stack.enter_context(ir_folder(args.ir)) if args.ir is not None else None
        generator = load_generator_from(args, ir_dir)
        if args.lr_probe:
            lr_probe(args, generator)
        else:
            speed(args, generator, ir_dir)


if __name__ == "__main__":
    main()
