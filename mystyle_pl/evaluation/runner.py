"""The evaluation run: :func:`evaluate` checks the options, loads the prior, the photos and the models,
has :class:`~.session._Evaluation` restore every condition with every method, measure and run the beta
sweep, and writes ``metrics.json``, ``report.md``, the strips and optionally a W&B run.

See :mod:`mystyle_pl.evaluation` (the public entry point) for the conditions, methods and metrics.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.io import write_bytes_atomic
from ..losses import LPIPS
from ..metrics.identity import IdentityScorer, album_centre
from ..prior import PersonalPrior
from ..tasks.presets import DEFAULT_PRESET, given_values, task_settings
from ..tasks.projection import ProjectionSettings
from .aggregates import _public
from .degradations import EYES_BOX, MOUTH_BOX, BlindDegradation
from .generic_prior import _resolve_generic
from .inputs import (
    CONDITIONS,
    METHODS,
    _held_out_from_prior,
    _load_pairs,
    _load_photos,
    expand_tasks,
    list_photos,
    parse_betas,
)
from .report import _finite, write_report
from .session import _Evaluation
from .settings import EvaluateSettings
from .wandb_log import log_to_wandb, make_wandb_logger

log = logging.getLogger(__name__)  # under "mystyle_pl.evaluation", whose level the CLI sets

FORMAT = "mystyle_pl.evaluation"
VERSION = 2  # 2: personal-raw, the invert condition, consistency / steps_used / seconds, input dependence


@dataclass
class EvaluationResult:
    out: Path  # the output folder
    report: Path  # report.md
    metrics_path: Path  # metrics.json
    metrics: dict  # the content of metrics.json
    strips: list[Path]  # every strip written


def projection_settings(
    preset: str = DEFAULT_PRESET,  # a name of mystyle_pl.tasks.presets.PRESETS
    settings: ProjectionSettings | None = None,  # replaces the preset's values (the overrides still apply)
    progress: bool = False,  # each projection's bar (steps, loss)
    **overrides,  # ProjectionSettings fields; None = the preset's (or settings') value
) -> ProjectionSettings:
    """The projection settings ``evaluate`` runs with: :func:`~mystyle_pl.tasks.presets.task_settings` of
    ``preset`` (the budgets ``predict``, the demo and Python share) with the non-None ``overrides``."""
    base = task_settings(preset) if settings is None else settings
    task_settings(preset, **overrides)  # unknown fields fail here, with the list of known ones
    values = given_values(overrides)
    # a value given here wins over the preset's per-task value of that field (as in task_settings)
    per_task = {task: {k: v for k, v in f.items() if k not in values} for task, f in base.per_task.items()}
    return replace(base, **values, per_task=per_task, progress=bool(progress))


def budget_summary(settings: ProjectionSettings, conditions: list[str]) -> str:
    """The step budgets of a run, for its log line (the inversion's own budget, when it differs).

    >>> budget_summary(task_settings("quick"), ["superres-x8", "invert"])
    '60 steps; invert 40 + 40 feature-offset steps'
    >>> budget_summary(task_settings("official"), ["invert"])
    '1000 steps'
    """
    out = f"{settings.steps} steps"
    if "invert" in conditions:
        inv = settings.for_task("invert")
        extra = [f"{n} {name} steps" for n, name in ((inv.pivotal_steps, "pivotal-tuning"), (inv.feature_steps, "feature-offset")) if n]
        if extra or inv.steps != settings.steps:
            out += f"; invert {' + '.join([str(inv.steps)] + extra)}"
    return out


def evaluate(
    prior,  # a PersonalPrior or the path of a prior folder
    photos=None,  # held-out photos: a folder, a file, or a list of them (aligned crops or raw photos)
    options: EvaluateSettings | None = None,  # the run's options; None = EvaluateSettings() (its defaults)
    *,
    blind: BlindDegradation | None = None,  # the synthetic blind degradation; None = BlindDegradation()
    identity: IdentityScorer | None = None,  # face descriptor + scoring; None = dlib through FaceAnalyzer
    lpips=None,  # LPIPS module of the projection loss; None = LPIPS("alex") (official)
    metric_lpips=None,  # LPIPS module of the metric; None = the pretrained options.lpips_net
    settings: ProjectionSettings | None = None,  # replaces the preset's values (the options still override)
    logger=None,  # W&B-like logger (log_table, log_image); "wandb" = an offline-unless-key AutoWandbLogger
    **overrides,  # fields of EvaluateSettings (tasks=, out=, steps=, ...), replacing those of ``options``
) -> EvaluationResult:
    """Run the evaluation and write ``report.md``, ``metrics.json``, ``strips/`` and the sweep plot into
    ``options.out``. The options and their defaults are :class:`~.settings.EvaluateSettings`'s fields;
    an unknown keyword raises ``TypeError``, a bad value ``ValueError`` naming the option."""
    o = replace(options if options is not None else EvaluateSettings(), **overrides)
    tasks, out, pairs, methods, generic, generic_tasks = o.tasks, o.out, o.pairs, o.methods, o.generic, o.generic_tasks
    resolution, preset, steps, patience, lr, generic_lr = o.resolution, o.preset, o.steps, o.patience, o.lr, o.generic_lr
    lr_rampdown, delta_prox, loss_resolution, pivotal_steps, feature_steps, pull = (
        o.lr_rampdown, o.delta_prox, o.loss_resolution, o.pivotal_steps, o.feature_steps, o.pull
    )
    beta, betas, sweep_task, seed, blind_factor = o.beta, o.betas, o.sweep_task, o.seed, o.blind_factor
    batch_size, max_photos, album_refs, lpips_net, align = o.batch_size, o.max_photos, o.album_refs, o.lpips_net, o.align
    device, progress, max_strips = o.device, o.progress, o.max_strips
    if o.provenance not in ("on", "off"):
        raise ValueError(f"provenance must be 'on' or 'off', got {o.provenance!r}")
    t_start = time.time()
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if batch_size is None:  # measured: on a 2-core CPU one image per step is the fastest per image
        batch_size = 4 if torch.device(device).type == "cuda" else 1
    batch_size = max(1, int(batch_size))
    prior_dir = None
    if not isinstance(prior, PersonalPrior):
        prior_dir = Path(prior)
        prior = PersonalPrior.load(prior_dir, device=device)
    else:
        prior.to(device)
    R = int(prior.generator.img_resolution)
    E = int(resolution) if resolution else min(256, R)
    methods, conditions, betas = _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor)
    generic_conditions = set(expand_tasks(generic_tasks)) if generic_tasks is not None else None
    out = Path(out)
    files, pair_specs = list_photos(photos), list(pairs or [])
    if not files and not pair_specs and prior_dir is not None:
        files = _held_out_from_prior(prior)
    _check_out(out, files, prior_dir)
    files = files[: int(max_photos)] if max_photos is not None else files

    settings = projection_settings(
        preset, settings, progress=progress, steps=steps, patience=patience, lr=lr, lr_rampdown=lr_rampdown,
        delta_prox=delta_prox, resolution=loss_resolution, pivotal_steps=pivotal_steps, feature_steps=feature_steps,
        pull=pull,
    )  # fmt: skip
    projecting = {"personal", "personal-raw", "generic"} & set(methods)
    if lpips is None and settings.lpips_weight > 0 and projecting:
        lpips = LPIPS("alex")
    lpips = lpips.to(device) if lpips is not None else None
    if metric_lpips is None:
        metric_lpips = LPIPS(lpips_net)
    metric_lpips = metric_lpips.to(device)
    min_size = int(getattr(metric_lpips, "min_input_size", 1))
    if min_size > E:
        raise ValueError(f"resolution {E} is below the LPIPS metric's smallest input ({min_size} px)")
    identity = identity if identity is not None else IdentityScorer()
    notes: list[str] = []
    centre_note = "given"
    if identity.centre is None:
        identity.centre, centre_note = album_centre(prior, refs=album_refs, scorer=identity, prior_dir=prior_dir)
    log.info("identity centre: %s", centre_note)

    generic_g, generic_note = None, "not evaluated"
    if "generic" in methods:
        generic_g, generic_note = _resolve_generic(prior, generic, device)
        if generic_g is None:
            methods = [m for m in methods if m != "generic"]
            notes.append(f"The generic prior is left out: {generic_note}.")

    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    held = _load_photos(files, max(R, E), align, skipped)
    pair_photos = _load_pairs(pair_specs, max(R, E), skipped)
    # Per-input failures, as predict records them: each file and why; the run goes on without them.
    failed = [{"source": source, "error": error} for source, error in skipped.items()]
    write_bytes_atomic(out / "failed.json", (json.dumps(failed, indent=1) + "\n").encode())
    if not held and not pair_photos:
        raise ValueError("nothing to evaluate: no usable held-out photo (--photos) and no pair (--pairs)")
    trained = {Path(n).stem for n in prior.names}
    overlap = [p.name for p in held if p.name in trained]
    if overlap:
        notes.append(
            f"{len(overlap)} 'held-out' photo(s) share a name with the prior's training photos "
            f"({', '.join(overlap[:5])}): they may not be held out."
        )
        log.warning(notes[-1])
    if not held:
        conditions, betas = [], []

    run = _Evaluation(
        prior=prior,
        generic=generic_g,
        out=out,
        resolution=E,
        settings=settings,
        lpips=lpips,
        metric_lpips=metric_lpips,
        lpips_net=lpips_net,
        identity=identity,
        batch_size=batch_size,
        seed=int(seed),
        blind=blind if blind is not None else BlindDegradation(),
        blind_factor=int(blind_factor),
        generic_lr=generic_lr,
        generic_conditions=generic_conditions,
        provenance=o.provenance == "on",
    )
    plan = [(c, held) for c in conditions] + ([("real", pair_photos)] if pair_photos else [])
    log.info(
        "evaluating %d photo(s)%s on %s with %s (E=%d px, preset %s: %s, %s, device %s)",
        len(held),
        f" + {len(pair_photos)} pair(s)" if pair_photos else "",
        ", ".join(c for c, _ in plan),
        ", ".join(methods),
        E,
        preset,
        settings.method,
        budget_summary(settings, [c for c, _ in plan]),
        device,
    )
    # one unit per image restored (personal-raw comes with the personal projection)
    total = sum(len(ph) * len([m for m in run.methods(c, methods) if m != "personal-raw"]) for c, ph in plan)
    bar = tqdm(total=total, desc="evaluating", unit="img", disable=not progress)
    for name, ph in plan:
        run.run_condition(name, ph, methods, beta, bar)
    bar.close()
    sweep = run.sweep(sweep_task, held, betas, beta, progress) if betas and held else None

    gt_identity = run.ground_truth_identity()
    missing_gt = [n for n, g in gt_identity.items() if not g["found"]]
    if missing_gt:
        notes.append(
            f"No face found in the ground truth of {', '.join(missing_gt)}: identity to the ground truth "
            "is unavailable there and counts as a failure for every method."
        )
    metrics = {
        "format": FORMAT,
        "version": VERSION,
        "settings": {
            "prior": str(prior_dir) if prior_dir is not None else "(in memory)",
            "photos": len(held),
            "pairs": len(pair_photos),
            "resolution": E,
            "generator_resolution": R,
            "preset": preset,
            "method": settings.method,
            "projection": asdict(settings),
            "steps": settings.steps,
            "patience": settings.patience,
            "lr_rampdown": settings.lr_rampdown,
            "delta_prox": settings.delta_prox,
            "lr": settings.lr,
            "generic_lr": run.generic_lr,
            "generic_tasks": sorted(generic_conditions) if generic_conditions is not None else None,
            "loss_resolution": settings.resolution,
            "beta": beta,
            "betas": betas,
            "sweep_task": sweep_task if betas else None,
            "seed": int(seed),
            "blind": run.blind.__dict__,
            "blind_factor": int(blind_factor),
            "batch_size": batch_size,
            "lpips_net": getattr(metric_lpips, "net", lpips_net),
            "device": str(device),
            "align": align,
            "conditions": [c for c, _ in plan],
            "methods": methods,
            "eye_box": EYES_BOX,
            "mouth_box": MOUTH_BOX,
            "provenance": o.provenance,
        },
        "methods": methods,
        "provenance": o.provenance,
        "watermark": run.watermark,
        "generic_note": generic_note,
        "baselines": dict(run.baseline_names),
        "identity": {
            "scorer": identity.name,
            "threshold": identity.threshold,
            "centre": None if identity.centre is None else [round(float(v), 6) for v in identity.centre],
            "centre_note": centre_note,
        },
        "conditions": run.cond_info,
        "aggregates": run.aggregates,
        "input_dependence": {c: d for c, d in run.dependence.items() if d is not None},
        "records": [_public(r) for r in run.records],
        "ground_truth_identity": gt_identity,
        "beta_sweep": sweep,
        "skipped_photos": skipped,
        "notes": notes,
        "timing_s": {**run.timing, "total": round(time.time() - t_start, 2)},
    }
    metrics = _finite(metrics)
    metrics_path = write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=1) + "\n").encode())
    report = write_report(out, metrics, run.strips, max_strips)
    if logger is not None:
        own = isinstance(logger, str)
        if own:
            if logger != "wandb":
                raise ValueError(f"logger must be a logger object or 'wandb', got {logger!r}")
            logger = make_wandb_logger(out, name=f"evaluate-{prior_dir.name if prior_dir else 'prior'}")
        log_to_wandb(logger, metrics, run.strips, out, max_strips)
        if own:
            logger.experiment.finish()
    log.info("report: %s (%.0fs)", report, time.time() - t_start)
    strips = [p for items in run.strips.values() for _, p in items]
    return EvaluationResult(out=out, report=report, metrics_path=metrics_path, metrics=metrics, strips=strips)


def _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor):
    """Validated ``(methods, conditions, betas)``; a ``ValueError`` naming the option otherwise."""
    if E > R or R % E != 0:
        raise ValueError(f"resolution {E} must divide the generator's resolution {R} (e.g. {min(256, R)})")
    requested = [m for m in methods.replace(" ", "").split(",") if m] if isinstance(methods, str) else list(methods)
    bad = [m for m in requested if m not in METHODS]
    if bad or not requested:
        raise ValueError(f"unknown method(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METHODS)}")
    conditions = expand_tasks(tasks)
    betas = parse_betas(betas)
    if betas and (sweep_task not in CONDITIONS or sweep_task == "real"):
        raise ValueError(f"sweep_task must be one of {', '.join(c for c in CONDITIONS if c != 'real')}")
    for name in [*conditions, sweep_task if betas else ""]:
        if name.startswith("superres-x") and E % int(name.split("x")[-1]):
            raise ValueError(f"{name}: the evaluation resolution {E} is not divisible by {name.split('x')[-1]}")
    if blind_factor < 2 or E % blind_factor:
        raise ValueError(f"blind_factor {blind_factor} must be >= 2 and divide the evaluation resolution {E}")
    return [m for m in METHODS if m in requested], conditions, betas


def _check_out(out: Path, files: list[Path], prior_dir: Path | None) -> None:
    """The output folder must lie outside the photos' folders and the prior (never write into inputs)."""
    target = out.resolve()
    for folder in sorted({f.parent.resolve() for f in files}):
        if target == folder or folder in target.parents:
            raise ValueError(f"--out {out} is inside the photos' folder {folder}; choose another output folder")
    if prior_dir is not None and (target == prior_dir.resolve() or prior_dir.resolve() in target.parents):
        raise ValueError(f"--out {out} is inside the prior folder {prior_dir}; choose another output folder")
