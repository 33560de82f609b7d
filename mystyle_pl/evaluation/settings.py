"""What :func:`~.runner.evaluate` runs with: :class:`EvaluateSettings`, the one home of evaluate's
defaults and of the help text of its options.

Each field is a keyword of :func:`~.runner.evaluate` and an option of ``mystyle-pl evaluate``
(``--generic-lr`` for ``generic_lr``, unless its metadata names another flag): the command line is
generated from the fields (:func:`mystyle_pl.commands.evaluate._add_evaluate_arguments`), with the
help in the field's metadata and the default shown from the field itself. What takes Python objects
(the prior, the LPIPS modules, an identity scorer, a logger, full projection settings) stays an
argument of :func:`~.runner.evaluate` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..space import DEFAULT_BETA
from ..tasks.presets import DEFAULT_PRESET, PRESETS
from .inputs import DEFAULT_BETAS, DEFAULT_TASKS, METHODS, parse_beta, parse_pull


def option(help: str, default_text: str | None = None, **argparse_kwargs) -> dict:
    """A field's metadata: its ``help`` on the command line, ``default_text`` shown as its default
    (None: the default itself), and ``argparse_kwargs`` for ``add_argument`` (``type``, ``choices``,
    ``metavar``, ``action``, ``flag``: the option's name when it is not the field's)."""
    return {"help": help, "default_text": default_text, **argparse_kwargs}


_THE_PRESETS = "the preset's"


@dataclass
class EvaluateSettings:
    """The options of an evaluation (see :mod:`mystyle_pl.evaluation` for the conditions and methods)."""

    tasks: str | Sequence[str] = field(
        default=DEFAULT_TASKS, metadata=option("comma-separated groups or conditions (see below)")
    )
    pairs: Sequence = field(
        default=(),
        metadata=option(
            "a real degraded photo and its ground truth (aligned crops), or a folder holding degraded.png and "
            "gt.png (repeatable)", "none", action="append", metavar="DEGRADED:GT",
        ),
    )  # fmt: skip
    out: str = field(default="evaluation", metadata=option("output folder"))
    methods: str | Sequence[str] = field(
        default=METHODS, metadata=option(f"which of {', '.join(METHODS)}", "all four")
    )
    generic_tasks: str | Sequence[str] | None = field(
        default=None, metadata=option("conditions or groups the generic prior runs on", "all of --tasks", metavar="TASKS")
    )
    generic: Any = field(  # a Generator, an asset name or a checkpoint path
        default=None,
        metadata=option("the untuned generator (asset name or checkpoint)", "the prior's generator_source",
                        metavar="GENERATOR"),
    )  # fmt: skip
    resolution: int | None = field(
        default=None,
        metadata=option(
            "evaluation resolution E in px: ground truth, metrics, SR factors; must divide the generator's resolution",
            "256, or the generator's if smaller", type=int,
        ),
    )  # fmt: skip
    preset: str = field(
        default=DEFAULT_PRESET,
        metadata=option("projection budget of both priors (see below); the options below override its values",
                        choices=list(PRESETS)),
    )  # fmt: skip
    steps: int | None = field(default=None, metadata=option("projection steps, both priors", _THE_PRESETS, type=int))
    patience: int | None = field(
        default=None,
        metadata=option("stop a projection after this many steps without improvement", _THE_PRESETS, type=int),
    )
    lr: float | None = field(
        default=None, metadata=option("personal P+ learning rate on the anchors' coefficients", _THE_PRESETS, type=float)
    )
    generic_lr: float | None = field(
        default=None, metadata=option("generic W+ learning rate", "the preset's w_lr", type=float)
    )
    lr_rampdown: float | None = field(
        default=None,
        metadata=option("cosine decay of both learning rates to 0 over this final fraction of the steps",
                        "the preset's; 0 = constant, official", type=float),
    )  # fmt: skip
    delta_prox: bool | None = field(  # personal P+: the offsets' penalty by a proximal step; None = the preset's
        default=None,
        metadata=option("personal P+: the offsets' penalty through Adam's gradient, as google/mystyle",
                        _THE_PRESETS, flag="--official-optimizer", action="store_const", const=False),
    )  # fmt: skip
    loss_resolution: int | None = field(
        default=None,
        metadata=option("compute the projection loss at this size in px", "the preset's; 0 = as observed", type=int),
    )
    pivotal_steps: int | None = field(
        default=None,
        metadata=option("pivotal tuning (PTI) steps of a generator copy per photo after the projection, 0 = off",
                        "the preset's: editing only", type=int),
    )  # fmt: skip
    feature_steps: int | None = field(
        default=None,
        metadata=option("steps of a feature-space offset per photo after the projection (high-fidelity inversion), "
                        "0 = off", "the preset's: inversion only", type=int),
    )  # fmt: skip
    pull: tuple[float, float, float] | None = field(
        default=None,
        metadata=option("personal W+: weights of the pull toward the person's space, coarse,middle,fine layers "
                        "(e.g. 1,1,0.03)", "the preset's, per task", type=parse_pull),
    )  # fmt: skip
    beta: float | None = field(
        default=DEFAULT_BETA,
        metadata=option("dilation of the personal space for the comparison ('none' = affine hull)", type=parse_beta),
    )
    betas: str | Sequence[float | None] | None = field(
        default=DEFAULT_BETAS, metadata=option("beta sweep values, personal prior only ('' = no sweep)")
    )
    sweep_task: str = field(default="superres-x16", metadata=option("condition of the beta sweep"))
    blind_factor: int = field(
        default=8, metadata=option("blind/real inputs are restored from a copy down-sampled by this factor", type=int)
    )
    seed: int = field(
        default=0,
        metadata=option("seeds the blind degradations, the irregular mask and the blind operator's noise", type=int),
    )
    album_refs: Any = field(
        default=None,
        metadata=option("the person's reference photos, for the identity centre when the prior's album manifest "
                        "is unreachable", "the manifest, else no centre", metavar="DIR"),
    )  # fmt: skip
    lpips_net: str = field(
        default="vgg", metadata=option("LPIPS trunk of the metric (the projection loss uses alex)", choices=["alex", "vgg"])
    )
    align: str = field(
        default="auto",
        metadata=option("held-out photos: auto = square images are aligned crops, others are aligned",
                        choices=["auto", "always", "never"]),
    )  # fmt: skip
    max_photos: int | None = field(
        default=None, metadata=option("use at most this many held-out photos", "all", type=int)
    )
    batch_size: int | None = field(
        default=None,
        metadata=option("images projected at once", "4 on a GPU, 1 on a CPU, where batching is slower per image",
                        type=int),
    )  # fmt: skip
    max_strips: int = field(default=6, metadata=option("strips shown per condition in report.md (all are written)", type=int))
    device: str | None = field(default=None, metadata=option("torch device", "cuda if available, else cpu"))
    provenance: str = field(
        default="on",
        metadata=option("on: the metrics are computed on the unmarked results, and the watermark's PSNR cost (each "
                        "prior result marked vs unmarked, in the face's mark box, dB) is reported beside them; the "
                        "strips are labelled (C2PA, XMP, the mark in the results). off: research runs, nothing "
                        "marked or measured. Written into metrics.json as \"provenance\"", choices=["on", "off"]),
    )  # fmt: skip
    progress: bool = field(
        default=True,
        metadata=option("no progress bars (the run's and each projection's)", "shown", flag="--no-progress",
                        action="store_false"),
    )  # fmt: skip
