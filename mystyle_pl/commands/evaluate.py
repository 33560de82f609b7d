"""``mystyle-pl evaluate``: the options of :func:`mystyle_pl.evaluation.evaluate` on the command line."""

from __future__ import annotations

import argparse

from ..errors import UserError, check_paths


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
    from ..tasks.presets import DEFAULT_PRESET, PRESETS

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

    from .. import evaluate as evaluation
    from ..data.faces import FaceModelsUnavailable

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mystyle_pl.evaluate").setLevel(logging.INFO)
    beta = evaluation.parse_betas(args.beta)
    if len(beta) != 1:
        raise ValueError(f"--beta takes one value, got {args.beta!r}")
    check_paths(inputs={"--prior": [args.prior], "--photos": args.photos or [], "--album-refs": [args.album_refs]},
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
