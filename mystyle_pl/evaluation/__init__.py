"""Evaluate a personal prior on held-out photos of the person: ``mystyle-pl evaluate``, :func:`evaluate`.

Every held-out photo (an FFHQ-aligned crop, or a raw photo aligned on the fly) is degraded
synthetically, and each degraded input is restored side by side by

* ``personal``: the personal prior (the MyStyle tasks), projected with the projection preset
  (``preset``: :mod:`mystyle_pl.tasks.presets`, the budgets ``predict``, the demo and Python share;
  default ``quick``, W+ anchored to the person's space), its result made consistent with the input
  (super-resolution: back-projection, so that ``D(result)`` reproduces the input; inpainting: the
  projection blended into the known pixels);
* ``personal-raw``: the same projection before back-projection (super-resolution and blind only; taken
  from the same projection, not projected again), so the report shows what each output gives;
* ``generic``: the untuned generator the prior was tuned from, free ``W+`` projection from
  ``w_avg`` with the same loss and step budget (:func:`~mystyle_pl.tasks.generic.generic_task`);
  ``generic_tasks`` limits it to some conditions;
* ``baseline``: no prior at all: bicubic up-sampling (super-resolution, blind restoration),
  OpenCV Telea inpainting when ``cv2`` imports, else the known pixels' mean colour (none for inversion).

Conditions (``tasks``; a group name selects all its conditions):

==================  =====================================================================
invert              held-out inversion (D = identity): the photo itself at the generator's
                    resolution, the upper bound of every other task
superres-x8/-x16    area down-sampling by 8 / 16 relative to the evaluation resolution
blind               blur + down-sampling + noise + JPEG (seeded per photo), resized back;
                    restored by blind super-resolution from a ``blind_factor`` down-sampled copy
inpaint-eyes        a box over both eyes (FFHQ-aligned coordinates)
inpaint-mouth       a box over the mouth
inpaint-irregular   seeded brush strokes over the face (the same mask for every photo)
real                real degraded photos with a ground truth (``pairs``), restored like blind
==================  =====================================================================

Results are measured against the ground truth at the evaluation resolution ``E`` (default 256):
identity (dlib descriptors, see :mod:`mystyle_pl.metrics.identity`), LPIPS, PSNR and SSIM, each
with mean and spread; and against their input: consistency, the PSNR of ``D(result)`` against the
input at the input's size (inpainting: ``G(ws)`` on the known pixels, before blending); with the
projection steps used and the seconds per image. Input dependence: the pairwise PSNR between the
results of different photos next to that between their ground truths (do results differ as their
inputs do, or look alike whatever the input?). A beta sweep repeats one condition with the personal prior at several
dilations ``beta`` of its space (the paper's identity-vs-LPIPS trade-off). The output folder gets
``report.md`` (tables, image strips), ``metrics.json`` (every number and the settings), the strips
and the sweep plot as PNG, and optionally a W&B run.

The options and their defaults are :class:`EvaluateSettings` (the command line is generated from it).
One job per module: ``settings`` (the options), ``degradations`` (the synthetic degradations and the
no-prior baselines), ``inputs`` (the options' vocabulary, held-out photos, real pairs), ``runner`` (the
run itself: :func:`evaluate`), ``session`` (one run's conditions, restorations and measurements),
``aggregates`` (means and spreads, input dependence), ``generic_prior`` (the untuned generator),
``report`` (strips, the sweep plot, ``report.md``) and ``wandb_log`` (W&B tables and images). This
package re-exports their public names; ``mystyle_pl.evaluate`` is an older name of it.
"""

from __future__ import annotations

from .aggregates import aggregate, input_dependence
from .degradations import (
    EYES_BOX,
    MOUTH_BOX,
    BlindDegradation,
    bicubic,
    box_mask,
    fill_holes,
    irregular_mask,
)
from .inputs import (
    CONDITIONS,
    DEFAULT_BETAS,
    DEFAULT_TASKS,
    METHODS,
    TASK_GROUPS,
    Condition,
    Photo,
    condition_kind,
    expand_tasks,
    list_photos,
    methods_for,
    parse_beta,
    parse_betas,
    parse_pair,
)
from .report import make_strip, plot_tradeoff, write_report
from .runner import FORMAT, VERSION, EvaluationResult, evaluate, projection_settings
from .session import Restored
from .settings import EvaluateSettings
from .wandb_log import log_to_wandb, make_wandb_logger

__all__ = [
    "CONDITIONS",
    "DEFAULT_BETAS",
    "DEFAULT_TASKS",
    "EYES_BOX",
    "FORMAT",
    "METHODS",
    "MOUTH_BOX",
    "TASK_GROUPS",
    "VERSION",
    "BlindDegradation",
    "Condition",
    "EvaluateSettings",
    "EvaluationResult",
    "Photo",
    "Restored",
    "aggregate",
    "bicubic",
    "box_mask",
    "condition_kind",
    "evaluate",
    "expand_tasks",
    "fill_holes",
    "input_dependence",
    "irregular_mask",
    "list_photos",
    "log_to_wandb",
    "make_strip",
    "make_wandb_logger",
    "methods_for",
    "parse_beta",
    "parse_betas",
    "parse_pair",
    "plot_tradeoff",
    "projection_settings",
    "write_report",
]
