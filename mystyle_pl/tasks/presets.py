"""Named projection budgets: the one home of the projection defaults that ``predict``, ``evaluate``,
the demo and Python share.

* ``quick`` (default): W+ anchored to the person's space (:mod:`.anchored`), 60 steps, the loss
  computed at 256 px and weighted toward the face (background weight 0.1; 0 for super-resolution,
  whose back-projection takes the background from the input); 30-40 s per image on a 2-core CPU
  with MobileStyleGAN under bfloat16 (0.58 s per step; docs/fidelity.md, "Session 10"). Chosen in
  float32, where 60 steps took 63 s for x8 on album 00001 and 100 steps 106 s for LPIPS 0.346
  against 0.356 and dlib 0.302 against 0.326 (docs/fidelity.md).
  Inversion pivots on 40 bfloat16 steps and then fits offsets to the generator's 64 and 256 px
  features together for 40 steps (:mod:`.features`), under an extra MSE at the photo's own 1024 px
  (``l2_full_weight``): about 55-60 s per photo. Editing tunes a copy of the generator on the
  photo for 50 steps (pivotal tuning, :mod:`.pivotal`) under the same full-size MSE, so its edits
  keep the photo's details.
* ``full``: the same method, 400 steps, 150 feature-offset steps for inversion and 200
  pivotal-tuning steps for editing (a GPU budget).
* ``pplus``: the paper's P+ (anchors' coefficients per layer) at a CPU budget: 300 steps with early
  stopping, proximal offsets, lr ramp-down (what ``predict`` shipped before the W+ method).
  Inversion and editing are refined afterwards as in ``quick`` (a feature offset, pivotal tuning).
* ``official``: google/mystyle's projection exactly (``reconstruct/hyperparams.py``): P+, 1000 Adam
  steps at lr 5e-3, LPIPS-alex + MSE at full resolution, no early stopping.

Learning-rate schedules are fractions of the step budget (:func:`~.base.lr_factor`), so a preset
with another ``steps`` keeps its shape. The values of ``quick`` were chosen by measurement
(``benchmarks/fidelity.py``, ``docs/fidelity.md``).

>>> task_settings("quick").method, task_settings("quick", steps=50).steps
('wplus', 50)
>>> task_settings("quick").for_task("invert").pull, task_settings("quick", pull=(1, 1, 0)).for_task("invert").pull
((0.0, 0.0, 0.0), (1.0, 1.0, 0.0))
"""

from __future__ import annotations

from dataclasses import fields, replace

from .projection import ProjectionSettings

QUICK_PIVOTAL, FULL_PIVOTAL = 50, 200  # pivotal tuning steps of editing in "quick" and "full"
QUICK_FEATURE, FULL_FEATURE = 40, 150  # feature-offset steps of inversion in "quick" and "full" (tasks.features)
# An MSE at the observation's own size next to the loss at 256 px, in the refinements after the pivot: a held-out
# inversion's consistency at 1024 px (album 00027, outputs/s11/inv_probe.py) with 50 pivotal-tuning steps 24.7 ->
# 28.0 dB (weight 30), with a feature offset 28.6 (weight 3) -> 30.5 (10) -> 31.6 dB (30), LPIPS-VGG 0.163 -> 0.122
# -> 0.103; four albums through evaluate 30.4 dB on average (docs/fidelity.md, "Session 11").
L2_FULL = 30.0
# The blocks whose features the inversion's offsets fit, together: 64 px holds the photo's layout and light, 256 px its
# detail, which the person's codes paint only approximately. A held-out inversion's consistency at 1024 px on album
# 00001 (outputs/s12/joint.py, 40 steps after the same pivot): 64 px 28.9 dB, 64 + 256 px 34.0 dB (64 + 128 + 256
# 34.0; 256 alone 28.9; 64 then 256 sequentially, 20 + 20 steps, 33.4); four albums in docs/fidelity.md, "Session 12".
FEATURE_RESOLUTION = (64, 256)
# Editing: pivotal tuning (float32) under the same full-size MSE. The held-out photo's edit projection (pplus: 300 P+
# steps + 50 tuning steps), strength 0 against the photo (outputs/s12/edit_probe.py): consistency at 1024 px album
# 00001 21.95 -> 25.33 dB, 00027 24.87 -> 27.67 dB; dlib 0.293 -> 0.271, 0.329 -> 0.204 (docs/fidelity.md, "Session 12").
EDIT = dict(pivotal_steps=QUICK_PIVOTAL, precision="32", l2_full_weight=L2_FULL)
# Inversion: a bfloat16 W+ pivot (40 steps), then the feature offsets (docs/fidelity.md, "Session 11" and "Session 12").
INVERT = dict(
    face_weight=None, pull=(0.0, 0.0, 0.0), steps=40, feature_steps=QUICK_FEATURE, feature_resolution=FEATURE_RESOLUTION,
    l2_full_weight=L2_FULL,
)
PRESETS: dict[str, dict] = {
    "official": dict(method="pplus", steps=1000, lr=5e-3, patience=None, resolution=0, lr_rampdown=0.0, delta_prox=False),
    "pplus": dict(method="pplus", steps=300, lr=5e-3, patience=50, resolution=256, lr_rampdown=0.25, delta_prox=True, precision="auto",
                  per_task={"invert": dict(feature_steps=QUICK_FEATURE, feature_resolution=FEATURE_RESOLUTION, l2_full_weight=L2_FULL),
                            "edit": EDIT}),
    "quick": dict(
        method="wplus", steps=60, w_lr=0.05, lr_rampup=0.05, lr_rampdown=0.25, patience=None, resolution=256,
        face_weight=0.1, face_weight_consistent=0.0, pull=(0.03, 0.03, 0.0), pull_target="hull", start="scan",
        # The steps render under bfloat16 autocast where the device computes it natively (mystyle_pl.precision): x8 on the
        # four albums 21% faster per image (67 s against 86 s), PSNR / LPIPS / dlib within 0.1 dB / 0.002 / 0.01.
        # Not for inversion and editing, whose pivot pivotal tuning builds on: album 00001's held-out inversion
        # from a bfloat16 pivot 25.05 dB / LPIPS-VGG 0.268 / dlib 0.308 against 25.10 / 0.249 / 0.257, for 5% less time.
        precision="auto",
        # An observation of <= 16 px (x16 of a 256 px crop) is pulled hard on the coarse and middle layers and lightly on
        # the fine ones (four albums at x16: dlib 0.560 -> 0.501; at x8, 32 px, album 00001 0.33 -> 0.46: light there).
        pull_low_res=(10.0, 10.0, 0.03), low_res_px=16,
        # Blind inputs keep the face-only weighting (face_weight_blind None): fitting their background at 0.3 gave
        # +0.3 dB on four real pairs but broke the face on a fifth prior (dlib 0.501 -> 0.643; docs/fidelity.md "Session 9").
        # Held-out inversion (D = identity: the whole photo is observed) fits all of it, free of the pull:
        # on album 00001 (60 steps) 21.7 dB / LPIPS-VGG 0.328, against 16.3 / 0.389 with the face
        # weighting and the pull, and 18.8 / 0.372 with the pull alone (docs/fidelity.md).
        # Inversion then fits feature offsets at 64 and 256 px (tasks.features); editing tunes a copy of the generator on the
        # photo (pivotal tuning, tasks.pivotal: QUICK_PIVOTAL steps, docs/fidelity.md "Pivotal tuning"), whose edits
        # can still move the coarse layout a feature offset would fix.
        per_task={
            "invert": INVERT,
            "edit": EDIT,
        },
    ),  # fmt: skip
}
PRESETS["full"] = {
    **PRESETS["quick"],
    "steps": 400,
    "per_task": {
        "invert": {**INVERT, "steps": 400, "feature_steps": FULL_FEATURE},
        "edit": {**PRESETS["quick"]["per_task"]["edit"], "pivotal_steps": FULL_PIVOTAL},
    },
}
DEFAULT_PRESET = "quick"


def task_settings(preset: str = DEFAULT_PRESET, **overrides) -> ProjectionSettings:
    """:class:`~.base.ProjectionSettings` of a named preset with fields replaced by ``overrides``
    (``None`` values are ignored, so unset CLI options keep the preset's value).

    Raises ``ValueError`` for an unknown preset or field."""
    if preset not in PRESETS:
        raise ValueError(f"unknown projection preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(ProjectionSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown projection setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    given = given_values(overrides)
    values = {**PRESETS[preset], **given}
    # A value the caller gave wins over the preset's per-task value for that field.
    values["per_task"] = {
        task: {k: v for k, v in fields_.items() if k not in given}
        for task, fields_ in dict(values.get("per_task") or {}).items()
    }
    for key in ("pull", "pull_low_res"):
        if values.get(key) is not None:
            values[key] = tuple(float(p) for p in values[key])
    return replace(ProjectionSettings(), **values)


def given_values(overrides: dict) -> dict:
    """The settings a caller gave (``None`` = not given), as the presets apply them: a ``pull`` given
    without a ``pull_low_res`` applies to every observation, so it also replaces the preset's
    low-resolution pull (``pull_low_res=None``); likewise a ``face_weight`` given replaces the
    preset's ``face_weight_consistent`` and ``face_weight_blind`` unless those are given too.

    >>> given_values({"steps": None, "pull": (1, 1, 0)})
    {'pull': (1, 1, 0), 'pull_low_res': None}
    >>> given_values({"face_weight": 0.5})
    {'face_weight': 0.5, 'face_weight_consistent': None, 'face_weight_blind': None}
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if "pull" in given and "pull_low_res" not in given:
        given["pull_low_res"] = None
    if "face_weight" in given:
        for key in ("face_weight_consistent", "face_weight_blind"):
            given.setdefault(key, None)
    return given
