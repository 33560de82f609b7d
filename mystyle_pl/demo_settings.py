"""The demo's settings: the budgets of each quality (:data:`QUALITIES`), its file names and stages, and
what a run returns (:class:`DemoResult`, one :class:`StageRecord` per stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .tasks.presets import task_settings

STATE_FILE = "demo.json"
HELD_OUT_FILE = "held_out.json"
LPIPS_ASSETS = ("alexnet-imagenet", "vgg16-imagenet")  # tuning / projection loss, anchor inversion loss
STAGES = ("assets", "album", "prepare", "fit", "tasks", "evaluate", "summary")


@dataclass(frozen=True)
class DemoSettings:
    """The budgets of one demo quality (``QUALITIES``); any field can be overridden."""

    num_photos: int  # training photos of the synthesised album
    num_held_out: int  # held-out photos (synthesised, or taken from --album by a name hash)
    photo_size: int  # side of the synthesised photos in px (the generator renders at its own resolution)
    fit_config: str  # the fit recipe, a path relative to configs/ (or absolute); its callbacks are the demo's
    preset: str = "quick"  # projection preset of the tasks and evaluate stages (mystyle_pl.tasks.presets)
    eval_tasks: str = "invert,superres,inpaint,blind"  # evaluate's conditions or groups (mystyle-pl evaluate --tasks)
    eval_generic_tasks: str | None = None  # conditions the generic prior runs on in evaluate; None = all
    eval_max_photos: int | None = None  # held-out photos evaluated; None = all
    eval_betas: str = "0,0.03,0.1,0.3"  # evaluate's beta sweep ("" = none)
    edit_strengths: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # in units of W's std along the direction
    edit_direction: int = 1  # principal direction of W for the edit (1 turns the head in the coarse layers)
    num_samples: int = 4  # new photos of the person in the tasks stage


# fmt: off
QUALITIES: dict[str, DemoSettings] = {
    # ~15 min on a 2-core CPU, a few minutes on one GPU. Measured before the presets (make demo, 2-core CPU):
    # album 14 s, prepare 11 s, fit 239 s; a projection step with MobileStyleGAN at 1024 px, loss at 256 px,
    # ~0.8 s, so one projection of the quick preset (60 steps) ~50-65 s. Tasks: 3 projections (super-resolution,
    # inpainting, inversion; the edit reuses the inversion) ~4 min. Evaluate, kept to ~3.5 min: ONE held-out
    # photo (the input-dependence figure needs >= 2 and is left out here) on two conditions, x8
    # super-resolution (personal, its raw projection for free, generic, bicubic) and the mouth box (personal,
    # Telea): 3 projections; the generic prior only at x8, no beta sweep. The held-out inversion of that photo
    # (with a feature offset, ~55 s) is measured once, in the tasks stage, and the summary reports it from there
    # (session 7: with it in evaluate too the demo took ~17 min).
    "quick": DemoSettings(num_photos=12, num_held_out=4, photo_size=512, fit_config="fit/demo.yaml",
                          preset="quick", eval_tasks="superres-x8,inpaint-mouth",
                          eval_generic_tasks="superres-x8", eval_max_photos=1, eval_betas=""),
    # The paper's tuning budgets: ~100 photos, configs/fit/mystyle.yaml (300-step anchors, 1000 passes); the
    # full projection preset (400 steps); evaluate's default conditions (with the inversion) and beta sweep
    # on every held-out photo. For a GPU.
    "full": DemoSettings(num_photos=100, num_held_out=10, photo_size=1024, fit_config="fit/mystyle.yaml",
                         preset="full"),
}
# fmt: on


@dataclass
class StageRecord:
    name: str
    status: str  # "done", "skipped" (output found) or "unavailable"
    seconds: float
    output: str | None = None
    note: str = ""


@dataclass
class DemoResult:
    """Where the demo put things, and how each stage went."""

    out_dir: Path
    prior: Path
    results: Path  # folder of the task images (gallery.png, ...)
    report: Path | None  # the evaluation report folder, None when evaluate did not run
    stages: list[StageRecord] = field(default_factory=list)
    seconds: float = 0.0

    def status(self, name: str) -> str:
        return next(s.status for s in self.stages if s.name == name)


def demo_projection_settings(settings: DemoSettings, overrides: dict | None = None):
    """The demo's projection settings: :func:`~mystyle_pl.tasks.presets.task_settings` of
    ``settings.preset`` with the ``overrides`` (``ProjectionSettings`` fields) replacing its values.
    A field given here wins over the preset's per-task value of that field (as in predict, evaluate
    and Python): ``{"pivotal_steps": 0}`` turns pivotal tuning off for editing, ``{"feature_steps": 0}`` the
    feature offset off for inversion."""
    return task_settings(settings.preset, **(overrides or {}))
