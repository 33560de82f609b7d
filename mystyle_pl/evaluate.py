"""Evaluate a personal prior on held-out photos of the person: ``mystyle-pl evaluate``.

Every held-out photo (an FFHQ-aligned crop, or a raw photo aligned on the fly) is degraded
synthetically, and each degraded input is restored side by side by

* ``personal``: the personal prior, projection into ``P+`` (the MyStyle tasks);
* ``generic``: the untuned generator the prior was tuned from, free ``W+`` projection from
  ``w_avg`` with the same loss and step budget (:func:`~mystyle_pl.tasks.generic.generic_task`);
* ``baseline``: no prior at all: bicubic up-sampling (super-resolution, blind restoration),
  OpenCV Telea inpainting when ``cv2`` imports, else the known pixels' mean colour.

Conditions (``tasks``; a group name selects all its conditions):

==================  =====================================================================
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
with mean and spread. A beta sweep repeats one condition with the personal prior at several
dilations ``beta`` of its space (the paper's identity-vs-LPIPS trade-off). The output folder gets
``report.md`` (tables, image strips), ``metrics.json`` (every number and the settings), the strips
and the sweep plot as PNG, and optionally a W&B run.

The code lives in :mod:`mystyle_pl.evaluation`, one job per module: ``degradations`` (the synthetic
degradations and the no-prior baselines), ``inputs`` (options, held-out photos, real pairs),
``runner`` (the run itself: :func:`evaluate`), ``report`` (strips, the sweep plot, ``report.md``)
and ``wandb_log`` (W&B tables and images). This module is the public entry point and re-exports
their public names.
"""

from __future__ import annotations

from .evaluation.degradations import (
    EYES_BOX,
    MOUTH_BOX,
    BlindDegradation,
    bicubic,
    box_mask,
    fill_holes,
    irregular_mask,
)
from .evaluation.inputs import (
    CONDITIONS,
    DEFAULT_BETAS,
    DEFAULT_TASKS,
    METHODS,
    TASK_GROUPS,
    Condition,
    Photo,
    expand_tasks,
    list_photos,
    parse_betas,
    parse_pair,
)
from .evaluation.report import make_strip, plot_tradeoff, write_report
from .evaluation.runner import FORMAT, VERSION, EvaluationResult, aggregate, evaluate
from .evaluation.wandb_log import log_to_wandb, make_wandb_logger

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
    "EvaluationResult",
    "Photo",
    "aggregate",
    "bicubic",
    "box_mask",
    "evaluate",
    "expand_tasks",
    "fill_holes",
    "irregular_mask",
    "list_photos",
    "log_to_wandb",
    "make_strip",
    "make_wandb_logger",
    "parse_betas",
    "parse_pair",
    "plot_tradeoff",
    "write_report",
]
