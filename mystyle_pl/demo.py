"""``mystyle-pl demo``: the whole method on one command, on a fresh machine with no photos of one's own.

:func:`run_demo` runs seven stages, logging each one's name and seconds, into one output folder::

    1 assets     fetch the face generator (mobilestylegan-ffhq) and the LPIPS backbones into the cache
    2 album      synthesise a demo person's album with that generator (mystyle_pl.demo_album):
                 OUT/demo_album/{photos,held_out}/demo_XX.png + album.json   (skipped with --album)
    3 prepare    detect, align and curate the photos (mystyle-pl prepare): OUT/album (training photos)
                 and OUT/held_out (photos kept out of training, for evaluation)
    4 fit        anchors + tuning through LightningCLI (configs/fit/demo.yaml, or configs/fit/mystyle.yaml
                 for --quality full): OUT/fit (logs, checkpoints, grids) and the prior bundle OUT/prior
    5 tasks      the prior on a held-out photo: x8 super-resolution, inpainting of a box, an edit along
                 a principal direction at five strengths, four new samples: OUT/results/*.png + tasks.json
                 (with PSNR to the truth, consistency with the input, steps and seconds of each projection)
    6 evaluate   the personal prior against the generic one on the held-out photos: OUT/report
                 (mystyle_pl.evaluation; skipped with a note while that module is not installed)
    7 summary    where everything is, and the x8 super-resolution's fidelity (personal vs bicubic: PSNR to
                 the truth, consistency, steps, seconds per image); OUT/demo.json: settings, stage timings,
                 those figures

Both projecting stages use a named projection preset (:mod:`mystyle_pl.tasks.presets`, the budgets
``predict``, ``evaluate`` and Python share): ``quick`` for ``--quality quick``, ``full`` for
``--quality full``.

A stage whose output already exists is skipped, so running the same command again resumes after
an interruption (an interrupted fit resumes from OUT/fit/checkpoints/last.ckpt). ``--album DIR``
runs the same on one's own photos (DIR is only read; a few photos are held out by a name hash);
``--quality full`` uses the paper's tuning budgets (about 100 photos, 300-step anchors, 1000 passes)
and the ``full`` projection preset (400 steps), and wants a GPU.

The code: :mod:`mystyle_pl.demo_settings` (the budgets of each quality), :mod:`mystyle_pl.demo_stages`
(the run's state and the stages up to the prior, the summary) and this module (the tasks and evaluate
stages, :func:`run_demo`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data.anchors_io import Anchors
from .data.dataset import load_photo
from .demo_album import slot_resolutions
from .demo_settings import HELD_OUT_FILE, QUALITIES, STAGES, DemoResult, DemoSettings, StageRecord, demo_projection_settings
from .demo_stages import _Demo, _find_report, _image_files, _inside, _write_json, fidelity_lines, resolve_device
from .evaluation import evaluate
from .generators import StyleGAN2Generator
from .imaging import downsample_to
from .losses import LPIPS
from .metrics.image import psnr
from .prior import PersonalPrior
from .provenance.writing import Provenance
from .tasks import Colorize, Edit, Inpaint, Invert, Sample, SuperResolve, principal_directions
from .tasks.colorize import luminance
from .tasks.consistency import consistency_psnr
from .tasks.superres import Downsample
from .tuning.callbacks import make_grid


# ----------------------------------------------------------------------------------------
# small helpers


def tiny_generator(resolution: int = 32, seed: int = 0):
    """A small seeded StyleGAN2 (random weights, every path active) for notebooks and tests on a CPU."""
    torch.manual_seed(seed)
    g = StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=resolution, channel_base=16 * resolution, channel_max=32)
    with torch.no_grad():
        for name, p in g.named_parameters():  # noise strengths and biases start at zero: wake them up
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.normal_(0, 0.1)
        g.mapping.w_avg.copy_(g.estimate_w_avg(num_samples=1000, seed=seed))
    return g.eval()


def tiny_prior(num_anchors: int = 8, resolution: int = 32, seed: int = 0):
    """A :class:`~mystyle_pl.prior.PersonalPrior` built in a second: a tiny random generator and the
    mapped codes of ``num_anchors`` seeded ``z`` as anchors (untuned: for trying the API, not for faces)."""
    g = tiny_generator(resolution, seed)
    with torch.no_grad():
        z = torch.randn(num_anchors, g.z_dim, generator=torch.Generator().manual_seed(seed + 1))
        w = g.w_avg + 0.7 * (g.mapping(z) - g.w_avg)
    return PersonalPrior(g, Anchors(w=w, names=[f"tiny_{i:02d}.png" for i in range(num_anchors)]), info={"tiny": True})


# ----------------------------------------------------------------------------------------
# the tasks stage


def run_tasks(
    prior_dir: str | Path,  # the prior bundle folder
    held_out_dir: str | Path,  # folder of aligned held-out photos (the first one is used)
    out_dir: str | Path,  # where the PNGs and tasks.json go
    settings: DemoSettings | None = None,  # budgets; None = the "quick" quality
    device: str | torch.device | None = None,  # None = CUDA when available
    seed: int = 0,  # seeds the samples
    overrides: dict | None = None,  # ProjectionSettings fields over the preset's (e.g. {"lpips_weight": 0})
    cell: int = 256,  # side of each image in gallery.png, px
    log: Callable[[str], None] | None = print,
    progress: bool = False,  # each projection's progress bar (steps, loss)
    provenance: bool = True,  # label the PNGs (watermark in the results, XMP, C2PA); False = plain (research)
) -> StageRecord:
    """Run every task of the prior on a held-out photo and write ``OUT/{superres,inpaint,edit,samples,
    invert,gallery}.png`` and ``tasks.json`` (settings, timings; per restoration the PSNR to the truth,
    the consistency with the input, the steps used and the seconds). Projections use the preset
    ``settings.preset`` with ``overrides`` (:func:`demo_projection_settings`).

    The metrics are computed on the unmarked results; with ``provenance`` the results' cells of the
    PNGs are then watermarked (cells of at least :data:`~mystyle_pl.provenance.watermark.MIN_CROP_PX`
    px) and every PNG carries IPTC XMP and a signed C2PA manifest (the held-out photo as the ingredient;
    ``samples.png`` is ``c2pa.created``); ``tasks.json`` says ``"provenance"`` and the watermark's state."""
    say = log or (lambda msg: None)
    settings = settings or QUALITIES["quick"]
    device = resolve_device(device)
    out_dir = Path(out_dir)
    prior = PersonalPrior.load(prior_dir, device=device)
    g = prior.generator
    res = int(g.img_resolution)
    photos = _image_files(Path(held_out_dir))
    if not photos:
        raise FileNotFoundError(f"no held-out photo in {held_out_dir}")
    x = load_photo(photos[0], res)[None].to(device)
    projection = replace(demo_projection_settings(settings, overrides), progress=progress)
    lpips = None
    cell = min(cell, res)

    def small(t: torch.Tensor) -> torch.Tensor:
        return downsample_to(t.detach().float().cpu(), cell)

    labels = Provenance(enabled=provenance, prior=prior)
    watermark: list[str] = []

    def made(t: torch.Tensor) -> torch.Tensor:
        """A result's cells (the model's pictures, not the inputs or the truth), watermarked."""
        marked, note, _ = labels.mark_faces(small(t))
        watermark.append(note)
        return marked

    def dB(v) -> float:
        return round(float(v), 2)

    timings: dict[str, float] = {}
    record: dict[str, Any] = {"photo": str(photos[0]), "preset": settings.preset, "projection": asdict(projection)}
    if projection.lpips_weight > 0:
        lpips = LPIPS("alex").to(device)  # one LPIPS module for every task

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - start, 2)
        say(f"  {name}: {timings[name]:.1f} s")
        return value

    # super-resolution x8 (or the largest factor the resolution allows)
    factor = 8 if res // 8 >= 2 else 2
    down = Downsample(res // factor)
    lo = down(x)
    sr = timed("superres", lambda: prior.run(SuperResolve(projection=projection), lo, factor=factor, lpips=lpips))
    lo_up = F.interpolate(lo, size=(res, res), mode="nearest")
    bicubic = F.interpolate(lo, size=(res, res), mode="bicubic").clamp(-1, 1)
    record["superres"] = {
        "factor": factor,
        "psnr": dB(psnr(sr.images, x)),  # the data-consistent result (back-projected): what the gallery shows
        "psnr_raw": dB(psnr(sr.raw, x)),  # the projection before back-projection
        "psnr_bicubic": dB(psnr(bicubic, x)),
        "consistency": dB(sr.consistency),  # PSNR of D(result) against the input, at the input's size
        "consistency_raw": dB(sr.raw_consistency),
        "consistency_bicubic": dB(consistency_psnr(bicubic, lo, down)),
        "steps_used": int(sr.steps_used),
        "seconds": timings["superres"],
    }
    sr_row = torch.cat([small(lo_up), made(sr.images), small(x)])

    # inpainting of a box over the nose and mouth (1 = known pixel, 0 = hole)
    box = (round(0.32 * res), round(0.5 * res), round(0.68 * res), round(0.8 * res))
    ip = timed("inpaint", lambda: prior.run(Inpaint(projection=projection), x, [box], lpips=lpips))
    mask = ip.mask.to(x)
    record["inpaint"] = {"box": list(box), "psnr_hole": round(float(_masked_psnr(ip.blended, x, 1 - mask)), 2),
                         "psnr": dB(psnr(ip.blended, x)), "consistency": dB(ip.consistency),
                         "steps_used": int(ip.steps_used), "seconds": timings["inpaint"]}  # fmt: skip
    ip_row = torch.cat([small(x * mask), made(ip.blended), small(x)])

    # inversion, and an edit of the photo along a principal direction in the coarse layers. The edit projects the
    # photo itself (pivotal tuning): the inversion's feature offset would hold the coarse layout the edit moves.
    inv = timed("invert", lambda: prior.run(Invert(projection=projection), x, lpips=lpips))
    coarse = [i for i, r in enumerate(slot_resolutions(g)) if r <= 8]
    dirs, std = principal_directions(g, k=settings.edit_direction + 1, return_std=True)
    d = dirs[settings.edit_direction].to(device)
    sigma = float(std[settings.edit_direction])
    strengths = [s * sigma for s in settings.edit_strengths]
    try:  # MyStyle's edits: the direction's component in the anchors' span
        editor = Edit(layers=coarse, projection=projection).bind(prior, lpips=lpips)
        ed = timed("edit", lambda: editor(x, d, strengths))
        span = True
    except ValueError as e:  # anchors with no spread along it (e.g. tiny budgets): the raw direction
        say(f"  edit: {e}; using the direction as it is")
        editor = Edit(layers=coarse, span=False, projection=projection).bind(prior, lpips=lpips)
        ed = timed("edit", lambda: editor(x, d, strengths))
        span = False
    record["edit"] = {"direction": f"principal direction {settings.edit_direction}", "layers": coarse, "in_span": span,
                      "strengths_sigma": list(settings.edit_strengths), "sigma": round(sigma, 4),
                      "applied": [round(float(a), 4) for a in ed.applied[0]], "inside": [bool(b) for b in ed.inside[0]]}  # fmt: skip
    edit_row = made(ed.images[0])

    # colourisation of the photo's luminance (ITU-R BT.601)
    gray = luminance(x)
    col = timed("colorize", lambda: prior.run(Colorize(projection=projection), gray, lpips=lpips))
    record["colorize"] = {"psnr": dB(psnr(col.images, x)), "psnr_raw": dB(psnr(col.raw, x)),
                          "psnr_gray": dB(psnr(gray, x)), "consistency": dB(col.consistency),
                          "steps_used": int(col.steps_used), "seconds": timings["colorize"]}  # fmt: skip
    col_row = torch.cat([small(gray), made(col.images), small(x)])

    # new photos of the person
    smp = timed("sample", lambda: prior.run(Sample(), settings.num_samples, seed=seed))
    sample_row = made(smp.images)
    record["invert"] = {"psnr": dB(psnr(inv.images, x)), "consistency": dB(inv.consistency),
                        "steps_used": int(inv.steps_used), "seconds": timings["invert"]}  # fmt: skip

    rows = {"superres": [sr_row], "inpaint": [ip_row], "invert": [torch.cat([small(x), made(inv.images)])],
            "colorize": [col_row], "edit": [edit_row], "samples": [sample_row]}  # fmt: skip
    record["provenance"], record["watermark"] = labels.state, watermark[0]
    for name, r in rows.items():
        label = labels.label(name, kind="created" if name == "samples" else "edited", source=photos[0],
                             watermark=watermark[0])  # fmt: skip
        labels.write(out_dir / f"{name}.png", make_grid(r), label)
    gallery = labels.label("gallery", kind="edited", source=photos[0], watermark=watermark[0])
    labels.write(out_dir / "gallery.png", make_grid([sr_row, ip_row, col_row, edit_row, sample_row]), gallery)
    record["gallery_rows"] = [
        f"super-resolution x{factor}: input (nearest), result, original",
        "inpainting: input with the hole, result, original",
        "colourisation: gray input (BT.601 luminance), result, original",
        f"edit: principal direction {settings.edit_direction} at {list(settings.edit_strengths)} sigma (coarse layers)",
        f"{settings.num_samples} samples of the person",
    ]
    record["seconds"] = timings
    _write_json(out_dir / "tasks.json", record)
    sr_psnr = record["superres"]
    note = (f"x{factor} superres PSNR {sr_psnr['psnr']} dB, consistency {sr_psnr['consistency']} dB "
            f"(bicubic {sr_psnr['psnr_bicubic']} / {sr_psnr['consistency_bicubic']} dB), gallery {out_dir / 'gallery.png'}")  # fmt: skip
    return StageRecord("tasks", "done", 0.0, str(out_dir / "gallery.png"), note)


def _masked_psnr(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, images in [-1, 1]) over the pixels where ``weight`` [B, 1, H, W] is 1."""
    w = weight.expand_as(x)
    mse = ((x.float() - y.float()).square() * w).sum() / w.sum().clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


# ----------------------------------------------------------------------------------------
# the tasks and evaluate stages of a run


def _stage_tasks(demo: _Demo) -> StageRecord:
    """:func:`run_tasks` on the held-out photos -> ``OUT/results``."""
    return run_tasks(demo.prior, demo.held_out / "images", demo.results, demo.settings, device=demo.device,
                     seed=demo.seed, overrides=demo.task_overrides, log=demo.log, progress=demo.progress,
                     provenance=demo.provenance)  # fmt: skip


def _stage_evaluate(demo: _Demo) -> StageRecord:
    """``mystyle-pl evaluate`` on the held-out photos -> ``OUT/report`` (personal vs generic vs baseline)."""
    s = demo.settings
    result = evaluate(
        str(demo.prior),
        str(demo.held_out / "images"),
        out=str(demo.report),
        generic=demo.generator_source,
        tasks=s.eval_tasks,
        generic_tasks=s.eval_generic_tasks,
        preset=s.preset,  # evaluate resolves the preset itself; the demo's overrides (tests) come as settings
        settings=demo_projection_settings(s, demo.task_overrides) if demo.task_overrides else None,
        max_photos=s.eval_max_photos,
        betas=s.eval_betas or None,
        seed=demo.seed,
        device=str(demo.device),
        progress=demo.progress,
        provenance="on" if demo.provenance else "off",
    )
    return StageRecord("evaluate", "done", 0.0, str(result.report), f"report {result.report}")


# ----------------------------------------------------------------------------------------
# entry point


def run_demo(
    out_dir: str | Path = "outputs/demo",  # everything goes here; re-running resumes
    album: str | Path | None = None,  # a folder of one's own photos (read only); None = synthesise the demo person
    quality: str = "quick",  # "quick" (minutes) or "full" (the paper's budgets)
    device: str | torch.device | None = "auto",  # "auto" = CUDA when available, else CPU
    seed: int = 1,  # the demo person (album seed), the held-out split and the samples
    generator: str = "mobilestylegan-ffhq",  # the generic face prior: an asset name or a checkpoint path
    settings: DemoSettings | None = None,  # budgets; None = QUALITIES[quality]
    align: bool = True,  # run prepare's dlib alignment; False = use the synthesised crops as they are
    identity: Any = "dlib",  # the demo album's identity check: "dlib", a function image -> descriptor, or None
    fit_args: Sequence[str] = (),  # extra LightningCLI arguments for the fit, e.g. ["--trainer.max_epochs=2"]
    task_overrides: dict | None = None,  # ProjectionSettings fields for the tasks, e.g. {"lpips_weight": 0.0}
    evaluate: bool = True,  # run the evaluate stage (when mystyle_pl.evaluation is available)
    progress: bool = True,  # progress bars
    log: Callable[[str], None] = print,  # where stage messages go
    provenance: bool = True,  # label the gallery's PNGs and measure the mark in evaluate; False = research runs
) -> DemoResult:
    """Run the demo (see the module docstring); returns where things are and each stage's status."""
    start = time.perf_counter()
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {sorted(QUALITIES)}, got {quality!r}")
    settings = settings or QUALITIES[quality]
    out = Path(out_dir)
    user_album = Path(album) if album is not None else None
    if user_album is not None:
        if not user_album.is_dir():
            raise FileNotFoundError(f"--album folder not found: {user_album}")
        if _inside(out, user_album) or _inside(user_album, out):
            raise ValueError(f"--out {out} and --album {user_album} must be separate folders (the album is only read)")
    demo = _Demo(out, user_album, quality, settings, resolve_device(device), seed, generator, align, identity,
                 fit_args, task_overrides or {}, progress, log, provenance=provenance)  # fmt: skip
    demo.check_state()
    out.mkdir(parents=True, exist_ok=True)
    log(f"[demo] {quality} demo into {out} on {demo.device}" + (f" with the photos of {user_album}" if user_album else ""))
    if quality == "full" and demo.device.type == "cpu":
        log("[demo] note: --quality full on a CPU takes days (1000 passes over ~100 photos at 1024 px); a GPU is advised")

    demo.stage("assets", None, demo.run_assets, "generator and LPIPS weights")
    if user_album is None:
        demo.stage("album", demo.demo_album / "album.json", demo.run_album,
                   f"synthesising {settings.num_photos} + {settings.num_held_out} photos of one person with {generator}")  # fmt: skip
    else:
        demo.records.append(StageRecord("album", "skipped", 0.0, str(user_album), "own photos (--album)"))
    demo.stage("prepare", demo.held_out / HELD_OUT_FILE, demo.run_prepare, "detect, align, curate")
    demo.stage("fit", demo.prior / "prior.json", demo.run_fit, f"anchors + tuning ({settings.fit_config})")
    demo.stage("tasks", demo.results / "gallery.png", lambda: _stage_tasks(demo),
               "super-resolution, inpainting, editing, sampling")
    report = _find_report(demo.report)
    if not evaluate:
        demo.records.append(StageRecord("evaluate", "skipped", 0.0, None, "evaluate=False"))
        log(f"[demo {STAGES.index('evaluate') + 1}/{len(STAGES)}] evaluate: skipped (turned off)")
    else:
        demo.stage("evaluate", report, lambda: _stage_evaluate(demo), "personal vs generic prior on the held-out photos")
    total = time.perf_counter() - start
    demo.stage("summary", None, lambda: demo.run_summary(total))
    log(f"[demo] open the app on this prior: mystyle-pl serve --prior {demo.prior}   (needs: pip install 'mystyle-pl[app]')")
    return DemoResult(out, demo.prior, demo.results, _find_report(demo.report), demo.records, total)


__all__ = [
    "HELD_OUT_FILE",
    "QUALITIES",
    "DemoResult",
    "DemoSettings",
    "StageRecord",
    "demo_projection_settings",
    "fidelity_lines",
    "resolve_device",
    "run_demo",
    "run_tasks",
    "tiny_generator",
    "tiny_prior",
]
