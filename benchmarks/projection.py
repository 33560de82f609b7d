#!/usr/bin/env python
"""Projection throughput: images per minute of the official MyStyle setting against ours, same machine, one run.

Both recipes run the project's own task (``SuperResolve``, or ``Invert``) through the shared
``Projector`` on the same prior and the same observations; only the settings differ:

* ``official`` (google/mystyle ``reconstruct/``): batch 1, ``--steps`` (1000) Adam steps, no early
  stopping, constant learning rate (``lr_rampdown 0``), the last state returned (``keep_best``
  off), LPIPS-alex + 1 x MSE;
* ``ours``: batch ``--batch-size`` (default 8 on CUDA, 1 on CPU, where batching is slower per image), early stopping
  (``--patience`` 50 steps without a ``--min-delta`` improvement of the batch mean loss), a cosine
  ramp-down of the lr over the last ``--lr-rampdown`` (0.25) of the steps, the best state kept,
  the P+ offsets' penalty by a proximal step (``delta_prox``), the same loss and the same maximum
  number of steps.

Both compute the loss at ``--resolution`` px (``ProjectionSettings.resolution``); super-resolution
(default, x``--factor`` 8) returns its result at ``--resolution`` (``SuperResolve(output_resolution=)``)
from an input of ``resolution / factor`` px. The generator itself always runs at its own resolution.

What is measured:

1. seconds per Adam step at batch 1 and at batch B: one untimed call of ``--warmup-steps`` (2)
   steps, then ``time(--timing-steps steps) - time(0 steps)`` over ``--timing-steps`` (10) so the
   per-run overhead (setup, final synthesis) cancels out (``torch.cuda.synchronize`` around every
   call on CUDA);
2. the steps ours actually takes: ``--full`` runs ours to completion on the batch (its
   ``steps_used``, early stopping being on the batch mean), and the official recipe for its
   ``--steps`` on the same batch for the quality reference (the official results do not depend on
   the batch: the loss is a sum of per-image losses and Adam is element-wise). Without ``--full``
   the steps can be given with ``--assume-steps N`` (reported as *assumed*), else ours is charged the
   full ``--steps`` (reported as *max*: batching alone);
3. ``images/min = 60 * batch / (sec_per_step(batch) * steps)`` for both, and their ratio;
4. with ``--full``, the mean final loss (reconstruction + space penalties) of both on the same
   images at the same maximum budget, plus the official loss after as many steps as ours took, so
   that the speed-up is not bought with quality;
5. peak memory: ``torch.cuda.max_memory_allocated`` per recipe on CUDA, the process's
   ``ru_maxrss`` after each recipe on CPU (cumulative: official is measured first).

With ``--official-preset NAME`` and ``--ours-preset NAME`` the two recipes are instead named
projection presets (:mod:`mystyle_pl.tasks.presets`: ``official`` and ``quick``, what ``predict``
ships), each with its own steps, method and loss resolution (``--steps`` then overrides both;
``--patience``, ``--min-delta`` and ``--lr-rampdown`` are the presets' own). The official recipe then
has no back-projection (google/mystyle has none) and ours ``--back-projection`` iterations (default:
``SuperResolve``'s). Besides the step-based figures, ``images_per_min_with_overhead`` charges each
recipe its per-run overhead too (the anchor scan of ``quick``, the back-projection, the final
render), and with ``--full`` ``truth_psnr`` is each result's PSNR (dB) to the clean image: the
presets' objectives differ, so their final losses are not comparable, the PSNR to the truth is.
With ``--json`` the file is rewritten after each phase, so an interrupted run keeps what it measured.

The prior is ``--prior PRIOR_DIR`` (a bundle from ``fit``) or, by default, one built here from
``--generator`` with ``--anchors`` (20) random anchors (mapped seeded z). ``--generator`` takes an
asset name (``mobilestylegan-ffhq``, default), a checkpoint path, ``stylegan2-random-<R>`` (a
config-f StyleGAN2 at R px with random weights, e.g. ``stylegan2-random-1024``) or ``tiny`` (a
32 px StyleGAN2 for tests). The observations are aligned crops from ``--photos DIR`` or, by default,
images rendered from seeded random points of the person's space, then degraded (area x``--factor``
for super-resolution). ``--lpips random`` swaps the pretrained AlexNet for a random one (same
cost, meaningless losses) where the weights are not available.

Reproduce::

    # CPU, loss at 256 px, batch 1; a full 1000-step run is hours here, so give ours' steps
    # (e.g. the steps_used of a GPU --full run) or run --full once overnight:
    OMP_NUM_THREADS=2 python benchmarks/projection.py --device cpu --threads 2 --resolution 256 \\
        --assume-steps 300 --json outputs/bench-projection-cpu.json
    # lent GPU, loss and output at 1024 px, batch 8, ours run to completion (default on CUDA):
    python benchmarks/projection.py --device cuda --resolution 1024 --json outputs/bench-projection-gpu.json
    python benchmarks/projection.py --device cuda --generator stylegan2-random-1024 --resolution 1024
    python benchmarks/projection.py --prior outputs/demo/prior --photos outputs/demo/album  # a real prior
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mystyle_pl import StyleGAN2Generator, load_generator
from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.space import PersonalSpace
from mystyle_pl.metrics.image import psnr
from mystyle_pl.tasks import Invert, ProjectionSettings, SuperResolve
from mystyle_pl.tasks.presets import PRESETS, task_settings
from mystyle_pl.tasks.superres import check_factor

LEGACY_STEPS = 1000  # both recipes' maximum steps without presets (official: 1000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a table of sec/step, steps, images/min, peak memory, loss.",
        epilog=__doc__.split("Reproduce::")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        metavar="PRIOR_DIR",
        help="a prior bundle (default: one built from --generator)",
    )
    p.add_argument("--generator", default="mobilestylegan-ffhq",
                   help="asset name or checkpoint path, 'stylegan2-random-<R>' (random config-f at R px) or 'tiny' (default: mobilestylegan-ffhq)")  # fmt: skip
    p.add_argument("--anchors", type=int, default=20, help="random anchors of the built prior (default 20)")
    p.add_argument("--photos", type=Path, default=None, metavar="DIR",
                   help="aligned face crops (default: renders of seeded random points of the space)")  # fmt: skip
    p.add_argument("--task", choices=["superres", "invert"], default="superres", help="default: superres")
    p.add_argument("--factor", type=int, default=8, help="super-resolution factor (default 8)")
    p.add_argument("--resolution", type=int, default=None,
                   help="loss (and super-resolution output) resolution (default: 256 on CPU, 1024 on CUDA; at most the generator's)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="ours' batch (default: 8 on CUDA, 4 on CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"maximum Adam steps of both recipes (default {LEGACY_STEPS}, official; "
                        "with presets: each preset's own)")  # fmt: skip
    p.add_argument("--official-preset", choices=sorted(PRESETS), default=None,
                   help="the official recipe is this projection preset (e.g. 'official'); "
                        "default: the settings above")  # fmt: skip
    p.add_argument("--ours-preset", choices=sorted(PRESETS), default=None,
                   help="ours is this projection preset (e.g. 'quick', what predict ships); "
                        "needs --official-preset")  # fmt: skip
    p.add_argument("--beta", type=float, default=None, help="dilation of the person's space (default: the tasks' 0.03)")
    p.add_argument("--back-projection", type=int, default=None,
                   help="with presets: ours' super-resolution back-projection iterations "
                        "(default: SuperResolve's)")  # fmt: skip
    p.add_argument("--patience", type=int, default=50, help="ours: early-stopping patience in steps (default 50)")
    p.add_argument(
        "--min-delta", type=float, default=ProjectionSettings.min_delta, help="ours: smallest improvement that counts"
    )
    p.add_argument("--lr-rampdown", type=float, default=0.25, help="ours: cosine lr ramp-down fraction (default 0.25)")
    p.add_argument("--timing-steps", type=int, default=10, help="timed steps per recipe (default 10)")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--full", action=argparse.BooleanOptionalAction, default=None,
                   help="run ours to completion (its steps and loss) and the official recipe for its loss (default: on for CUDA, off for CPU)")  # fmt: skip
    p.add_argument(
        "--assume-steps", type=int, default=None, metavar="N", help="without --full: the steps ours is taken to use"
    )
    p.add_argument("--lpips", choices=["alex", "random"], default="alex",
                   help="'alex' = pretrained (the official loss); 'random' = untrained AlexNet, same cost (tests, offline)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    p.add_argument("--progress", action="store_true", help="progress bars during the --full runs")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if (args.official_preset is None) != (args.ours_preset is None):
        p.error("--official-preset and --ours-preset go together (e.g. --official-preset official --ours-preset quick)")
    args.presets = args.official_preset is not None
    if args.steps is None and not args.presets:
        args.steps = LEGACY_STEPS
    for name in ("anchors", "factor", "steps", "patience", "timing_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 0:
        p.error("--warmup-steps must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.resolution is not None and args.resolution < 1:
        p.error("--resolution must be >= 1")
    if args.assume_steps is not None:
        if args.full:
            p.error("--assume-steps and --full exclude each other (--full measures the steps)")
        if args.presets:
            p.error("--assume-steps needs no presets: a preset fixes its own steps")
        if not 1 <= args.assume_steps <= args.steps:
            p.error(f"--assume-steps must be in 1..--steps ({args.steps})")
    if args.back_projection is not None and args.back_projection < 0:
        p.error("--back-projection must be >= 0 iterations")
    return args


# ---------------------------------------------------------------------------------------------
# The prior, the observations, the tasks


def build_generator(spec: str, seed: int):
    """A generator from ``--generator``: 'tiny', 'stylegan2-random-<R>', an asset name or a path."""
    torch.manual_seed(seed)
    if spec == "tiny":  # as tests/helpers.make_tiny_stylegan2 (32 px: LPIPS-alex needs >= 31 px)
        return StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=16 * 32, channel_max=32)
    match = re.fullmatch(r"stylegan2-random-(\d+)", spec)
    if match:  # config-f (channel_base 32768, channel_max 512), random weights: fine for speed
        return StyleGAN2Generator(img_resolution=int(match.group(1)))
    return load_generator(spec)


def build_prior(args: argparse.Namespace, device: torch.device) -> tuple[PersonalPrior, str]:
    if args.prior is not None:
        prior = PersonalPrior.load(args.prior, device=device)
        return prior, f"prior {args.prior} ({len(prior.names)} anchors)"
    generator = build_generator(args.generator, args.seed).to(device).eval()
    z = torch.randn(args.anchors, generator.z_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    with torch.no_grad():
        w = generator.mapping(z).float().cpu()
    anchors = Anchors(w=w, names=[f"random_{i:03d}" for i in range(args.anchors)])
    return PersonalPrior(generator=generator, anchors=anchors), f"{args.generator}, {args.anchors} random anchors"


def load_photos(folder: Path, count: int, resolution: int, device: torch.device) -> torch.Tensor:
    """``count`` crops from ``folder`` (sorted, repeated when fewer) at ``resolution`` px in [-1, 1]."""
    from mystyle_pl.data.dataset import list_album_files
    from mystyle_pl.data.io import read_image, to_tensor

    files = list_album_files(folder)
    if not files:
        raise SystemExit(f"--photos {folder}: no images found")
    images = []
    for i in range(count):
        x = to_tensor(read_image(files[i % len(files)]), device=device)
        if tuple(x.shape[2:]) != (resolution, resolution):  # aligned crops: only the size may differ
            mode = "area" if x.shape[-1] >= resolution else "bilinear"
            x = F.interpolate(x, size=(resolution, resolution), mode=mode)
        images.append(x)
    return torch.cat(images)


def render_points(prior: PersonalPrior, count: int, seed: int) -> torch.Tensor:
    """Images ``[count, 3, R, R]`` of seeded random points of the person's space (P_0)."""
    g = prior.generator
    space = PersonalSpace.from_prior(prior)
    w = space.sample(count, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        return g.synthesis(g.broadcast_w(w.to(g.w_avg.device)), noise_mode="const").float()


def make_task(prior: PersonalPrior, args: argparse.Namespace, settings: ProjectionSettings, lpips,
              recipe: str = "ours"):  # fmt: skip
    """The task of ``recipe`` (``official`` / ``ours``) with ``settings``."""
    extra = {} if args.beta is None else {"beta": args.beta}
    if args.task == "superres":
        if args.presets:  # google/mystyle has no back-projection; ours: the shipped one
            if recipe == "official":
                extra["back_projection"] = 0
            elif args.back_projection is not None:
                extra["back_projection"] = args.back_projection
        return SuperResolve(projection=settings, output_resolution=args.resolution, **extra).bind(prior, lpips=lpips)
    return Invert(projection=settings, **extra).bind(prior, lpips=lpips)


def observations(prior, args, clean: torch.Tensor, lpips) -> torch.Tensor:
    """The task's inputs: the clean crops, area-down-sampled x factor for super-resolution."""
    if args.task == "invert":
        return clean
    task = make_task(prior, args, ProjectionSettings(), lpips)
    size = args.resolution // args.factor
    with torch.no_grad():
        return task.operator(size, args.factor, noise=False)(clean)


# ---------------------------------------------------------------------------------------------
# Measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed_run(prior, args, settings: ProjectionSettings, lpips, y: torch.Tensor, device: torch.device,
              recipe: str = "ours"):  # fmt: skip
    """``(wall seconds, result)`` of one task call of ``recipe`` with ``settings``."""
    task = make_task(prior, args, settings, lpips, recipe)
    sync(device)
    t0 = time.perf_counter()
    result = task(y)
    sync(device)
    return time.perf_counter() - t0, result


def seconds_per_step(prior, args, settings, lpips, y, device, recipe: str = "ours") -> tuple[float, float]:
    """``(seconds per Adam step, per-run overhead in seconds)`` at the batch of ``y``: after a warm-up
    call, ``time(T steps) - time(0 steps)`` over ``T`` (early stopping off: exactly T steps)."""
    fixed = replace(settings, patience=None, progress=False)
    if args.warmup_steps:
        timed_run(prior, args, replace(fixed, steps=args.warmup_steps), lpips, y, device, recipe)
    overhead, _ = timed_run(prior, args, replace(fixed, steps=0), lpips, y, device, recipe)
    total, _ = timed_run(prior, args, replace(fixed, steps=args.timing_steps), lpips, y, device, recipe)
    return max(total - overhead, 1e-9) / args.timing_steps, overhead


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    full = args.full if args.full is not None else device.type == "cuda"
    # On a 2-core CPU one image per step is the fastest per image (batching is slower there), so
    # ours batches only on a GPU.
    batch = args.batch_size or (8 if device.type == "cuda" else 1)

    prior, prior_desc = build_prior(args, device)
    g = prior.generator
    gen_res = int(g.img_resolution)
    requested = args.resolution or (1024 if device.type == "cuda" else 256)
    args.resolution = min(requested, gen_res)
    if args.task == "superres":
        size = args.resolution // args.factor
        try:
            if size < 1:
                raise ValueError(f"the input would be {args.resolution / args.factor:g} px")
            check_factor(torch.zeros(1, 3, size, size), args.resolution, args.factor)
        except ValueError as e:
            raise SystemExit(f"--resolution {args.resolution} / --factor {args.factor}: {e}") from e
    lpips = None
    if args.lpips == "random":
        from mystyle_pl.losses import LPIPS

        lpips = LPIPS("alex", pretrained=False)
    if args.presets:  # the named budgets (predict ships "quick"); --steps, when given, caps both
        official = task_settings(args.official_preset, steps=args.steps)
        ours = task_settings(args.ours_preset, steps=args.steps)
    else:  # the official settings (ProjectionSettings' defaults are the official values) and ours
        base = ProjectionSettings(steps=args.steps, resolution=args.resolution)
        official = replace(base, patience=None, lr_rampdown=0.0, keep_best=False)
        ours = replace(base, patience=args.patience, min_delta=args.min_delta, lr_rampdown=args.lr_rampdown,
                       keep_best=True, delta_prox=True)  # fmt: skip

    if args.photos is not None:
        clean = load_photos(args.photos, batch, gen_res, device)
        source = f"{batch} crops from {args.photos}"
    else:
        clean = render_points(prior, batch, args.seed)
        source = f"{batch} renders of random points of the space (seed {args.seed})"
    y = observations(prior, args, clean, lpips)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    task_desc = (
        f"superres x{args.factor}: {y.shape[-1]} px -> {args.resolution} px"
        if args.task == "superres"
        else f"invert {gen_res} px"
    )
    recipe_desc = (f"official = preset {args.official_preset!r} ({official.steps} steps), ours = preset "
                   f"{args.ours_preset!r} ({ours.steps} steps, {ours.method})" if args.presets else
                   f"max steps {args.steps}; ours: patience {args.patience}, "
                   f"lr ramp-down {args.lr_rampdown}")  # fmt: skip
    print(f"device: {name}; torch {torch.__version__}")
    print(f"generator: {g.family} {gen_res} px, {g.num_ws} ws; {prior_desc}; LPIPS {args.lpips}")
    print(f"task: {task_desc}; observations: {source}")
    print(f"timing: {args.timing_steps} steps after {args.warmup_steps} warm-up, per-run overhead excluded; "
          f"{recipe_desc}", flush=True)  # fmt: skip

    recipes = {"official": {"batch": 1, "settings": asdict(official)},
               "ours": {"batch": batch, "settings": asdict(ours)}}  # fmt: skip
    figures = {
        "device": args.device,
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "generator": str(args.prior) if args.prior is not None else args.generator,
        "family": g.family,
        "img_resolution": gen_res,
        "num_ws": int(g.num_ws),
        "anchors": len(prior.names),
        "lpips": args.lpips,
        "task": args.task,
        "factor": args.factor if args.task == "superres" else None,
        "input_size": int(y.shape[-1]),
        "resolution": args.resolution,
        "observations": source,
        "presets": {"official": args.official_preset, "ours": args.ours_preset} if args.presets else None,
        "max_steps": args.steps,
        "timing_steps": args.timing_steps,
        "warmup_steps": args.warmup_steps,
        "patience": ours.patience,
        "min_delta": ours.min_delta,
        "lr_rampdown": ours.lr_rampdown,
        "delta_prox": ours.delta_prox,
        "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss (process, cumulative)",
        "official": recipes["official"],
        "ours": recipes["ours"],
        "official_loss_at_ours_steps": None,
        "speedup": None,
        "speedup_with_overhead": None,
        "complete": False,
    }

    def save() -> None:
        """Fill the derived figures of what is measured so far; rewrite ``--json`` (atomically)."""
        for r in recipes.values():
            known = "sec_per_step" in r and r.get("steps") is not None
            r["images_per_min"] = 60.0 * r["batch"] / (r["sec_per_step"] * r["steps"]) if known else None
            r["images_per_min_with_overhead"] = (
                60.0 * r["batch"] / (r["sec_per_step"] * r["steps"] + r["overhead_s"]) if known else None
            )
            r.setdefault("final_loss", None)
            r.setdefault("truth_psnr", None)
        o, u = recipes["official"], recipes["ours"]
        if o["images_per_min"] and u["images_per_min"]:
            figures["speedup"] = u["images_per_min"] / o["images_per_min"]
            figures["speedup_with_overhead"] = u["images_per_min_with_overhead"] / o["images_per_min_with_overhead"]
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_name(f".{args.json.name}.tmp")
            tmp.write_text(json.dumps(figures, indent=2) + "\n")
            tmp.replace(args.json)

    def truth_psnr(result) -> float:
        """Mean PSNR (dB) of the results against the clean images, at the result's size."""
        truth = clean if clean.shape[-1] == result.images.shape[-1] else F.interpolate(
            clean, size=result.images.shape[-2:], mode="area")  # fmt: skip
        return float(psnr(result.images.float(), truth.float()).mean())

    print("[timing official, batch 1 ...]", file=sys.stderr, flush=True)
    reset_peak(device)
    sps, overhead = seconds_per_step(prior, args, official, lpips, y[:1], device, "official")
    recipes["official"].update(sec_per_step=sps, overhead_s=overhead, steps=official.steps, steps_source="fixed",
                               peak_mb=peak_memory_mb(device))  # fmt: skip
    save()

    print(f"[timing ours, batch {batch} ...]", file=sys.stderr, flush=True)
    reset_peak(device)
    sps, overhead = seconds_per_step(prior, args, ours, lpips, y, device, "ours")
    recipes["ours"].update(sec_per_step=sps, overhead_s=overhead)
    if ours.patience is None:  # no early stopping: the steps are known
        recipes["ours"].update(steps=ours.steps, steps_source="fixed")
    elif args.assume_steps is not None:
        recipes["ours"].update(steps=args.assume_steps, steps_source="assumed")
    else:
        recipes["ours"].update(steps=ours.steps, steps_source="max")
    recipes["ours"]["peak_mb"] = peak_memory_mb(device)
    save()
    if full:
        print(f"[ours to completion, batch {batch}, at most {ours.steps} steps ...]", file=sys.stderr, flush=True)
        wall, result = timed_run(prior, args, replace(ours, progress=args.progress), lpips, y, device, "ours")
        recipes["ours"].update(steps=result.steps_used, steps_source="measured", full_run_s=wall,
                               final_loss=float(result.final_loss.mean()), truth_psnr=truth_psnr(result))  # fmt: skip
        recipes["ours"]["peak_mb"] = max(recipes["ours"]["peak_mb"], peak_memory_mb(device))
        save()
        print(f"[official for its loss: {official.steps} steps on the batch of {batch} ...]", file=sys.stderr,
              flush=True)  # fmt: skip
        wall, result = timed_run(prior, args, replace(official, progress=args.progress), lpips, y, device, "official")
        recipes["official"].update(final_loss=float(result.final_loss.mean()), full_run_batch=batch, full_run_s=wall,
                                   truth_psnr=truth_psnr(result))  # fmt: skip
        steps_ours = recipes["ours"]["steps"]
        # trace[i]: the batch mean loss after i updates; after all of them: the last state (no keep_best)
        at = result.trace[steps_ours] if steps_ours < len(result.trace) else recipes["official"]["final_loss"]
        figures["official_loss_at_ours_steps"] = at
    figures["complete"] = True
    save()

    mem = "peak MiB" if device.type == "cuda" else "maxrss MiB"
    header = (f"{'recipe':<9} {'batch':>5} {'sec/step':>9} {'steps':>6} {'(steps)':>9} {'img/min':>9} "
              f"{'+overhead':>9} {mem:>10} {'final loss':>10} {'PSNR truth':>10}")  # fmt: skip
    print(header)
    for label, r in recipes.items():
        print(f"{label:<9} {r['batch']:>5} {r['sec_per_step']:>9.4f} {r['steps']:>6} {r['steps_source']:>9} "
              f"{fmt(r['images_per_min'], '.3f'):>9} {fmt(r['images_per_min_with_overhead'], '.3f'):>9} "
              f"{r['peak_mb']:>10.0f} {fmt(r['final_loss'], '.4f'):>10} {fmt(r['truth_psnr'], '.2f'):>10}")  # fmt: skip
    o, u = recipes["official"], recipes["ours"]
    print(f"ours / official images per minute: {figures['speedup']:.2f}x "
          f"(batching {o['sec_per_step'] * batch / u['sec_per_step']:.2f}x, steps {o['steps'] / u['steps']:.2f}x); "
          f"with the per-run overhead: {figures['speedup_with_overhead']:.2f}x")  # fmt: skip
    if figures["official_loss_at_ours_steps"] is not None:
        print(f"official batch-mean loss after {u['steps']} steps (ours' budget): "
              f"{figures['official_loss_at_ours_steps']:.4f}")  # fmt: skip
    if args.presets and full:
        print("the presets' objectives differ: compare the PSNR to the truth, not the final losses")
    if not full:
        print("final losses not measured (no --full run)")
    if args.json is not None:
        print(f"wrote {args.json}")
    return figures


if __name__ == "__main__":
    main()
