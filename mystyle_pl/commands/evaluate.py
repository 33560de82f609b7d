"""``mystyle-pl evaluate``: the options of :func:`mystyle_pl.evaluation.evaluate` on the command line, generated
from :class:`~mystyle_pl.evaluation.settings.EvaluateSettings` (its fields' defaults and help)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields

from .. import evaluation
from ..data.faces import FaceModelsUnavailable
from ..errors import UserError, check_paths
from ..evaluation import EvaluateSettings


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
    for f in fields(EvaluateSettings):  # every other option: generated from the settings (one home of each default)
        meta = dict(f.metadata)
        help_text, default_text, flag = meta.pop("help"), meta.pop("default_text"), meta.pop("flag", None)
        default = None if meta.get("action") == "append" else f.default  # argparse appends to a list it owns
        shown = default_text if default_text is not None else _shown(f.default)
        parser.add_argument(flag or "--" + f.name.replace("_", "-"), dest=f.name, default=default,
                            help=f"{help_text} (default: {shown})", **meta)  # fmt: skip
    parser.add_argument("--wandb", action="store_true", help="also log tables and images to W&B (offline unless a key is set)")


def _shown(value) -> str:
    """A default as typed on the command line: sequences comma-separated, floats in short form."""
    if isinstance(value, (tuple, list)):
        return ",".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings(args: argparse.Namespace, settings_class: type):
    """The parsed options as ``settings_class`` (:class:`~mystyle_pl.evaluation.EvaluateSettings`); an append
    option never given keeps the field's default."""
    values = {f.name: getattr(args, f.name) for f in fields(settings_class)}
    appended = {f.name for f in fields(settings_class) if f.metadata.get("action") == "append"}
    return settings_class(**{k: v for k, v in values.items() if v is not None or k not in appended})


def _run_evaluate(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mystyle_pl.evaluation").setLevel(logging.INFO)
    check_paths(inputs={"--prior": [args.prior], "--photos": args.photos or [], "--album-refs": [args.album_refs]},
                outputs={"--out": args.out})  # fmt: skip
    options = _settings(args, EvaluateSettings)
    try:
        result = evaluation.evaluate(args.prior, args.photos, **vars(options), logger="wandb" if args.wandb else None)
    except FaceModelsUnavailable as e:
        raise UserError(f"the identity metric needs dlib's face models: {e}") from e
    print(f"report: {result.report}\nmetrics: {result.metrics_path}")
    return 0
