"""The ``mystyle-pl`` command: LightningCLI subcommands plus the project's tool commands.

``mystyle-pl fit|validate|test|predict ...`` go to LightningCLI (``--config``,
``--print_config``, class_path/init_args). Tool commands (``convert``, ``info``, ...) are
plain argparse commands registered in ``TOOL_COMMANDS``. ``python cli.py`` is the same
program.

Errors a user can cause (a missing file, an output folder that cannot be written, a wrong option
value: :class:`~mystyle_pl.errors.UserError`, ``FileNotFoundError``, ``PermissionError``,
``ValueError``, ...) end in one line ``mystyle-pl: error: <path>: <problem>`` on stderr and exit
status 2; other exceptions are bugs and keep their traceback. ``--debug`` (anywhere on the line)
or ``MYSTYLE_DEBUG=1`` shows the traceback of user errors too. A ``predict`` stopped by SIGTERM
exits with status 143 after writing ``summary.json`` / ``failed.json``
(:mod:`mystyle_pl.predict.stop`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ._version import __version__
from .errors import PredictInterrupted, UserError, describe_error

LIGHTNING_COMMANDS = {
    "fit": "tune a personal prior (LightningCLI: trainer + model + data from YAML/flags)",
    "validate": "run validation of a model on its data (LightningCLI)",
    "test": "run the test loop (LightningCLI)",
    "predict": "run a task (invert, inpaint, superres, edit, sample) over inputs (LightningCLI)",
}


@dataclass(frozen=True)
class ToolCommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------------------
# info


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
    from . import assets
    from .prior import PersonalPrior

    if PersonalPrior.is_bundle(path):
        return {"path": path, **PersonalPrior.load(path).describe()}
    from .generators import detect_format, load_generator

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
    from .tuning import PersonalTuner, export_prior

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
    import torch

    from .generators import load_generator, save_generator

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


# ----------------------------------------------------------------------------------------
# assets


def _add_assets_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{list,fetch,path}")
    sub.add_parser("list", help="list the named weights, their sources and whether they are cached")
    fetch = sub.add_parser("fetch", help="obtain and convert assets into the cache ($MYSTYLE_HOME)")
    fetch.add_argument("names", nargs="*", help="asset names (see `assets list`)")
    fetch.add_argument("--all", action="store_true", help="fetch every asset that has a reachable source")
    fetch.add_argument("--path", default=None, help="use this local file as the source (one NAME only)")
    path = sub.add_parser("path", help="print the cached path of an asset (fetching it if needed)")
    path.add_argument("name")


def _run_assets(args: argparse.Namespace) -> int:
    from . import assets

    if args.action == "list":
        print(f"cache: {assets.home() / 'assets'}  (set MYSTYLE_HOME to move it)")
        for name in sorted(assets.REGISTRY):
            info = assets.status(name)
            mark = "cached " if info["cached"] else "missing"
            print(f"  {name:<22} {mark}  sources: {', '.join(info['sources']):<12} {info['description']}")
            print(f"  {'':<22} local file: ${info['env_var']}")
        return 0
    if args.action == "path":
        print(assets.fetch(args.name))
        return 0
    names = sorted(assets.REGISTRY) if args.all else args.names
    if not names:
        raise SystemExit("error: name at least one asset, or pass --all")
    if args.path and len(names) != 1:
        raise SystemExit("error: --path takes exactly one asset name")
    failed = 0
    for name in names:
        try:
            print(f"{name}: {assets.fetch(name, path=args.path)}")
        except (assets.AssetError, KeyError) as e:
            failed += 1
            print(f"{name}: FAILED\n{e}", file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------
# prepare


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    from .data.curate import CurationSettings

    d = CurationSettings()
    parser.add_argument("--input", required=True, metavar="RAW_DIR", help="folder of photos (read only; sub-folders included)")
    parser.add_argument("--output", required=True, metavar="ALBUM_DIR", help="album folder: images/*.png + manifest.json")
    parser.add_argument("--resolution", type=int, default=1024, help="side of the aligned images in px (default: 1024)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count up to 8; 0 = none)")
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help=f"smallest face box accepted, px in the source photo (default: {d.min_face:.0f}); "
                             "lower it for small photos")  # fmt: skip
    parser.add_argument("--min-crop", type=float, default=None,
                        help="smallest crop region accepted, px in the source photo (default: 2.5 x --min-face)")
    parser.add_argument("--blur-threshold", type=float, default=d.blur_threshold,
                        help=f"reject faces whose variance of the Laplacian is below this (default: {d.blur_threshold:g}; 0 = off)")
    parser.add_argument("--identity-threshold", type=float, default=d.identity_threshold,
                        help=f"max descriptor distance to the album's identity (default: {d.identity_threshold:g})")
    parser.add_argument("--duplicate-threshold", type=float, default=d.duplicate_threshold,
                        help=f"descriptor distance below which photos are near-duplicates (default: {d.duplicate_threshold:g}; 0 = off)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the manifest's summary as JSON instead of text")


def _run_prepare(args: argparse.Namespace) -> int:
    from .data.curate import CurationSettings
    from .data.faces import FaceModelsUnavailable
    from .data.prepare import PrepareError, prepare_album

    curation = CurationSettings(
        min_face=args.min_face, min_crop=args.min_crop, blur_threshold=args.blur_threshold,
        identity_threshold=args.identity_threshold, duplicate_threshold=args.duplicate_threshold,
    )  # fmt: skip
    try:
        result = prepare_album(args.input, args.output, resolution=args.resolution, workers=args.workers,
                               curation=curation, progress=not args.no_progress)  # fmt: skip
    except (PrepareError, FaceModelsUnavailable) as e:
        raise UserError(describe_error(e)) from e
    if args.json:
        print(json.dumps({**result.manifest["summary"], "album": str(result.album_dir), "analysed": result.analysed,
                          "reused": result.reused, "written": result.aligned, "seconds": round(result.seconds, 2)}, indent=2))  # fmt: skip
    else:
        print(result.summary())
    if result.kept == 0:
        print(f"mystyle-pl: error: {result.album_dir}: no photo was kept; see the reasons in the manifest "
              "(e.g. lower --min-face for small photos)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


# ----------------------------------------------------------------------------------------
# evaluate

_EVALUATE_EPILOG = """\
tasks (--tasks; a group selects all of its conditions):
  invert              held-out inversion (D = identity): the photo itself at the generator's
                      resolution, the upper bound of every other task
  superres            superres-x8 and superres-x16: the ground truth area-down-sampled by 8 / 16
                      relative to --resolution (256 px: 32 px and 16 px inputs)
  inpaint             inpaint-eyes, inpaint-mouth (boxes in FFHQ-aligned coordinates) and
                      inpaint-irregular (seeded brush strokes, the same mask for every photo)
  blind               blur + down-sampling + noise + JPEG (seeded per photo), resized back;
                      restored by blind super-resolution from a copy down-sampled by --blind-factor
  real                (from --pairs) real degraded photos with their ground truth, restored like blind

methods (--methods), run on the same inputs with the same budget (--preset, --steps, --patience):
  personal            the personal prior (beta = --beta), made consistent with the input:
                      super-resolution back-projected (D(result) = input), inpainting blended
  personal-raw        the same projection before back-projection (super-resolution, blind)
  generic             the untuned generator (prior.json's generator_source, or --generic): free W+
                      (--generic-tasks: only on these conditions)
  baseline            bicubic up-sampling; inpainting: OpenCV Telea if cv2 imports, else mean fill

projection presets (--preset; the budgets predict, the demo and Python share; --steps etc. override):
  quick (default)     W+ anchored to the person's space, 60 steps, face-weighted loss at 256 px
  full                the same, 400 steps (a GPU budget)
  pplus               the paper's P+ at a CPU budget: 300 steps, early stopping, proximal offsets
  official            google/mystyle's projection: P+, 1000 steps, loss at full resolution

metrics per result against the ground truth at --resolution: identity (dlib 128-d descriptor:
cosine similarity and distance to the ground truth and to the album's identity centre, share
under dlib's 0.6 same-person threshold; no face found = a failure), LPIPS, PSNR, SSIM; against
the input: consistency (PSNR of D(result) against the input at the input's size; inpainting: the
projection on the known pixels, before blending); steps used, seconds per image; mean ± std.
Input dependence: pairwise PSNR of the results of different photos next to their truths'.

output (--out): report.md (tables, image strips), metrics.json (every per-image number, aggregates,
settings), strips/<condition>/<photo>.png, beta_sweep.png (identity vs LPIPS as beta grows);
with --wandb also a W&B run (offline unless an API key is configured) under OUT/wandb.

example:
  mystyle-pl evaluate --prior runs/me/prior --photos held_out/ --out eval/me
  mystyle-pl evaluate --prior runs/me/prior --photos held_out/ --tasks superres --preset full \\
      --pairs ../shared/data/albums/00082 --album-refs ../shared/data/albums/00082/refs
"""


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EVALUATE_EPILOG
    parser.add_argument("--prior", required=True, metavar="PRIOR_DIR", help="personal prior folder (from fit/export)")
    parser.add_argument("--photos", action="append", default=None, metavar="HELD_OUT",
                        help="held-out photos of the person: a folder or a file (repeatable); aligned crops "
                             "(square) or raw photos, aligned on the fly. Default: the prior's held-out album photos")
    parser.add_argument("--tasks", default="invert,superres,inpaint,blind",
                        help="comma-separated groups or conditions (see below; default: invert,superres,inpaint,blind)")
    parser.add_argument("--pairs", action="append", default=[], metavar="DEGRADED:GT",
                        help="a real degraded photo and its ground truth (aligned crops), or a folder holding "
                             "degraded.png and gt.png (repeatable)")
    parser.add_argument("--out", default="evaluation", help="output folder (default: ./evaluation)")
    parser.add_argument("--methods", default="personal,personal-raw,generic,baseline",
                        help="which of personal, personal-raw, generic, baseline (default: all four)")
    parser.add_argument("--generic-tasks", default=None, metavar="TASKS",
                        help="conditions or groups the generic prior runs on (default: all of --tasks)")
    parser.add_argument("--generic", default=None, metavar="GENERATOR",
                        help="the untuned generator (asset name or checkpoint); default: the prior's generator_source")
    parser.add_argument("--resolution", type=int, default=None,
                        help="evaluation resolution in px: ground truth, metrics, SR factors; must divide the "
                             "generator's resolution (default: 256, or the generator's if smaller)")
    from .tasks.presets import DEFAULT_PRESET, PRESETS

    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                        help=f"projection budget of both priors (see below; default: {DEFAULT_PRESET}); "
                             "the options below override its values")
    parser.add_argument("--steps", type=int, default=None, help="projection steps, both priors (default: the preset's)")
    parser.add_argument("--patience", type=int, default=None,
                        help="stop a projection after this many steps without improvement (default: the preset's)")
    parser.add_argument("--lr", type=float, default=None,
                        help="personal P+ learning rate on the anchors' coefficients (default: the preset's)")
    parser.add_argument("--generic-lr", type=float, default=None,
                        help="generic W+ learning rate (default: the preset's w_lr)")
    parser.add_argument("--lr-rampdown", type=float, default=None,
                        help="cosine decay of both learning rates to 0 over this final fraction of the steps "
                             "(default: the preset's; 0 = constant, official)")
    parser.add_argument("--official-optimizer", action="store_true",
                        help="personal P+: the offsets' penalty through Adam's gradient, as google/mystyle "
                             "(default: the preset's)")
    parser.add_argument("--loss-resolution", type=int, default=None,
                        help="compute the projection loss at this size in px (default: the preset's; 0 = as observed)")
    parser.add_argument("--beta", default="0.03",
                        help="dilation of the personal space for the comparison ('none' = affine hull; default: 0.03)")
    parser.add_argument("--betas", default="0,0.03,0.1,0.3",
                        help="beta sweep values, personal prior only ('' = no sweep; default: 0,0.03,0.1,0.3)")
    parser.add_argument("--sweep-task", default="superres-x16", help="condition of the beta sweep (default: superres-x16)")
    parser.add_argument("--blind-factor", type=int, default=8,
                        help="blind/real inputs are restored from a copy down-sampled by this factor (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the blind degradations and the irregular mask (default: 0)")
    parser.add_argument("--album-refs", default=None, metavar="DIR",
                        help="the person's reference photos, for the identity centre when the prior's album "
                             "manifest is unreachable (default: the manifest, else no centre)")
    parser.add_argument("--lpips-net", default="vgg", choices=["alex", "vgg"],
                        help="LPIPS trunk of the metric (default: vgg; the projection loss uses alex)")
    parser.add_argument("--align", default="auto", choices=["auto", "always", "never"],
                        help="held-out photos: auto = square images are aligned crops, others are aligned (default)")
    parser.add_argument("--max-photos", type=int, default=None, help="use at most this many held-out photos")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images projected at once (default: 4 on a GPU, 1 on a CPU, where batching is slower per image)")
    parser.add_argument("--max-strips", type=int, default=6, help="strips shown per condition in report.md (default: 6)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--wandb", action="store_true", help="also log tables and images to W&B (offline unless a key is set)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_evaluate(args: argparse.Namespace) -> int:
    import logging

    from . import evaluate as evaluation
    from .data.faces import FaceModelsUnavailable

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mystyle_pl.evaluate").setLevel(logging.INFO)
    beta = evaluation.parse_betas(args.beta)
    if len(beta) != 1:
        raise ValueError(f"--beta takes one value, got {args.beta!r}")
    _check_paths(inputs={"--prior": [args.prior], "--photos": args.photos or [], "--album-refs": [args.album_refs]},
                 outputs={"--out": args.out})  # fmt: skip
    try:
        result = evaluation.evaluate(
            args.prior, args.photos, tasks=args.tasks, out=args.out, pairs=args.pairs, methods=args.methods,
            generic=args.generic, resolution=args.resolution, preset=args.preset, steps=args.steps,
            patience=args.patience, lr=args.lr, generic_lr=args.generic_lr, lr_rampdown=args.lr_rampdown,
            delta_prox=False if args.official_optimizer else None, loss_resolution=args.loss_resolution,
            generic_tasks=args.generic_tasks, beta=beta[0], betas=args.betas,
            sweep_task=args.sweep_task, seed=args.seed, blind_factor=args.blind_factor, batch_size=args.batch_size,
            max_photos=args.max_photos, album_refs=args.album_refs, lpips_net=args.lpips_net, align=args.align,
            device=args.device, logger="wandb" if args.wandb else None, progress=not args.no_progress,
            max_strips=args.max_strips,
        )  # fmt: skip
    except FaceModelsUnavailable as e:
        raise UserError(f"the identity metric needs dlib's face models: {e}") from e
    print(f"report: {result.report}\nmetrics: {result.metrics_path}")
    return 0


# ----------------------------------------------------------------------------------------
# demo


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo", help="output folder; re-running resumes (default: outputs/demo)")
    parser.add_argument("--album", default=None, metavar="DIR",
                        help="a folder of your own photos of one person (only read); default: synthesise a demo person")
    parser.add_argument("--quality", default="quick", choices=["quick", "full"],
                        help="quick: minutes (default); full: the paper's budgets (~100 photos, 1000 passes; a GPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--seed", type=int, default=1, help="the demo person, the held-out split and the samples (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _check_paths(inputs={"--album": [args.album]}, outputs={"--out": args.out})
    run_demo(args.out, album=args.album, quality=args.quality, device=args.device, seed=args.seed,
             progress=not args.no_progress)  # fmt: skip
    return 0


# ----------------------------------------------------------------------------------------
# serve (the browser app; the optional extra mystyle-pl[app])


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prior", required=True, metavar="PRIOR_DIR", help="the personal prior bundle folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 makes it public)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--share", action="store_true", help="also ask gradio for a public share link (opt-in)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="keep results (PNG + record.json per run) here; default: a temporary folder removed on exit")
    parser.add_argument("--preset", default=None, help="projection preset: quick, full, pplus, official (default: per task)")
    parser.add_argument("--steps", type=int, default=None, help="projection steps over the preset's")
    parser.add_argument("--faces", default="person", choices=["person", "all", "largest"],
                        help="which faces of a photo are processed (default: person, the prior's own)")


def _run_serve(args: argparse.Namespace) -> int:
    from .app import serve

    _check_paths(inputs={"--prior": [args.prior]}, outputs={"--out": args.out})
    return serve(args.prior, host=args.host, port=args.port, device=args.device, share=args.share, out=args.out,
                 preset=args.preset, steps=args.steps, faces=args.faces)  # fmt: skip


def _check_paths(inputs: dict[str, list], outputs: dict[str, str | None]) -> None:
    """Refuse missing inputs and unwritable output folders before any long work (one-line errors).
    ``inputs``: option -> paths (None entries skipped); ``outputs``: option -> folder (created)."""
    from .errors import ensure_writable_dir

    for option, paths in inputs.items():
        for path in paths:
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(2, f"not found ({option})", str(path))
    for option, folder in outputs.items():
        if folder is not None:
            ensure_writable_dir(folder, f"output folder ({option})", f"choose another with {option}")


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    parser.add_argument("--json", action="store_true", help="one JSON report per file (a JSON list) instead of one line each")
    parser.add_argument("--no-faces", action="store_true", help="read the watermark only as an aligned crop (no face search: faster)")


def _run_verify(args: argparse.Namespace) -> int:
    """One line (or JSON record) per file; a bad file is its own line and the next one is still checked.
    Exit status 0 when every file could be read, 1 when some could not."""
    from .provenance.verify import verify

    reports = []
    for path in args.images:
        report = verify(path, search_faces=not args.no_faces)
        reports.append(report)
        if not args.json:
            print(report.verdict, flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    return 1 if any(r.error for r in reports) else 0


TOOL_COMMANDS: dict[str, ToolCommand] = {
    "assets": ToolCommand("list, fetch and locate named weights (generators, LPIPS backbones)", _add_assets_arguments, _run_assets),
    "convert": ToolCommand("convert a generator checkpoint to the native safetensors format", _add_convert_arguments, _run_convert),
    "info": ToolCommand("describe a checkpoint or a prior (family, resolution, num_ws, parameters)", _add_info_arguments, _run_info),
    "export": ToolCommand("export the personal prior bundle from a fit checkpoint", _add_export_arguments, _run_export),
    "prepare": ToolCommand("raw photos -> curated, FFHQ-aligned album (images/ + manifest.json)", _add_prepare_arguments, _run_prepare),
    "evaluate": ToolCommand("held-out photos -> personal vs generic prior vs baseline: metrics, report.md", _add_evaluate_arguments, _run_evaluate),
    "demo": ToolCommand("the whole method on a synthesised person (or --album DIR): prepare, fit, tasks, evaluate", _add_demo_arguments, _run_demo),
    "verify": ToolCommand("what an image says about itself: Content Credentials, IPTC XMP, the watermark", _add_verify_arguments, _run_verify),
    "serve": ToolCommand("the browser app on a prior (needs mystyle-pl[app]): restore, super-resolve, inpaint, edit, sample", _add_serve_arguments, _run_serve),
}


# ----------------------------------------------------------------------------------------
# entry point


def top_level_help() -> str:
    width = max(len(n) for n in [*LIGHTNING_COMMANDS, *TOOL_COMMANDS])
    lines = [
        f"usage: mystyle-pl COMMAND [options]        (mystyle-pl {__version__})",
        "",
        "MyStyle personalized face priors: tune a StyleGAN on ~100 photos of one person, then",
        "restore, complete, super-resolve and edit photos of that person.",
        "",
        "Training and tasks (LightningCLI; `mystyle-pl COMMAND --help`, `--print_config`):",
        *(f"  {name:<{width}}  {text}" for name, text in LIGHTNING_COMMANDS.items()),
        "",
        "Tools (`mystyle-pl COMMAND --help`):",
        *(f"  {name:<{width}}  {cmd.help}" for name, cmd in TOOL_COMMANDS.items()),
        "",
        "options:",
        "  -h, --help     show this message",
        "  --version      print the version",
    ]
    return "\n".join(lines)


def run_tool(name: str, argv: Sequence[str]) -> int:
    command = TOOL_COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"mystyle-pl {name}", description=command.help)
    command.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return command.run(args)


def run_lightning(argv: Sequence[str] | None) -> int:
    """Hand over to LightningCLI (``argv=None``: it reads ``sys.argv`` itself). ``predict`` runs
    with SIGTERM turned into a clean stop (see :mod:`mystyle_pl.predict.stop`)."""
    from .lightning_cli import MyStyleLightningCLI

    command = (list(sys.argv[1:]) if argv is None else list(argv))[:1]
    if command != ["predict"]:
        MyStyleLightningCLI(args=None if argv is None else list(argv))
        return 0
    from .predict import stop

    stop.enter()  # from the start: a SIGTERM while the prior loads also ends in a clean stop
    try:
        MyStyleLightningCLI(args=None if argv is None else list(argv))
    finally:
        stop.exit()
    return 0


def dispatch(argv: Sequence[str] | None = None) -> int:
    """Run one command; exceptions propagate (what :func:`main` turns into messages and exit codes)."""
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_level_help())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name in TOOL_COMMANDS:
        return run_tool(name, rest)
    if name in LIGHTNING_COMMANDS:
        return run_lightning(None if from_sys_argv else argv)
    print(f"mystyle-pl: error: unknown command {name!r}\n\n{top_level_help()}", file=sys.stderr)
    return 2


# Exceptions a user causes (paths, options, file contents): one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    extra: list[type[BaseException]] = []
    try:  # dlib or its models missing: an installation problem with a clear remedy, not a bug
        from .data.faces import FaceModelsUnavailable

        extra.append(FaceModelsUnavailable)
    except ImportError:  # pragma: no cover
        pass
    return (*USER_ERRORS, *extra)


# jsonargparse wraps an exception raised by a class's __init__ in a ValueError with these words.
_PARSER_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")


def _unwrap(error: BaseException) -> BaseException:
    """The exception a jsonargparse wrapper was made from (e.g. the PriorError of a model's
    ``__init__``), else ``error`` itself."""
    seen = set()
    while str(error).lstrip().startswith(_PARSER_WRAPPERS) and id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mystyle-pl`` program: :func:`dispatch`, with user errors as one line on stderr (exit 2),
    a predict stopped by SIGTERM as exit 143, and tracebacks only for bugs (or with ``--debug`` /
    ``MYSTYLE_DEBUG=1``)."""
    from_sys_argv = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MYSTYLE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    if "--debug" in args:
        debug = True
        args = [a for a in args if a != "--debug"]
        if from_sys_argv:
            sys.argv = [sys.argv[0], *args]
    try:
        return dispatch(None if from_sys_argv else args)
    except KeyboardInterrupt:
        print("mystyle-pl: interrupted", file=sys.stderr)
        return 130
    except BaseException as e:
        if isinstance(e, PredictInterrupted):
            print(f"mystyle-pl: {e}", file=sys.stderr)
            return e.exit_code
        cause = _unwrap(e)
        if debug or not isinstance(e, _user_errors()) or not isinstance(cause, _user_errors()):
            raise
        print(f"mystyle-pl: error: {describe_error(cause)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
