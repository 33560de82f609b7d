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
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from . import assets, load_generator
from .imaging import downsample_to
from .data.anchors_io import Anchors
from .data.curate import CurationSettings
from .data.datamodule import hash_fraction
from .data.dataset import load_photo
from .data.io import write_bytes_atomic, write_folder_atomic, write_image
from .data.prepare import prepare_album
from .demo_album import slot_resolutions, synthesize_album
from .errors import UserError
from .evaluation import evaluate
from .generators import StyleGAN2Generator
from .imaging import IMAGE_SUFFIXES
from .lightning_cli import MyStyleLightningCLI, config_path
from .losses import LPIPS
from .metrics.image import psnr
from .prior import PersonalPrior
from .tasks import Colorize, Edit, Inpaint, Invert, Sample, SuperResolve, principal_directions
from .tasks.colorize import luminance
from .tasks.consistency import consistency_psnr
from .tasks.presets import task_settings
from .tasks.superres import Downsample
from .tuning.callbacks import make_grid
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
    fit_config: str  # the fit recipe, a path relative to configs/ (or absolute)
    checkpoint_every: int  # epochs between fit checkpoints (resume points)
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
    # inpainting, inversion; the edit reuses the inversion) ~4 min. Evaluate, kept to ~5.5 min: ONE held-out
    # photo (the input-dependence figure needs >= 2 and is left out here) on three conditions, x8
    # super-resolution (personal, its raw projection for free, generic, bicubic), the mouth box (personal,
    # Telea) and the inversion (personal): 4 projections; the generic prior only at x8, no beta sweep.
    "quick": DemoSettings(num_photos=12, num_held_out=4, photo_size=512, fit_config="fit/demo.yaml",
                          checkpoint_every=1, preset="quick", eval_tasks="superres-x8,inpaint-mouth,invert",
                          eval_generic_tasks="superres-x8", eval_max_photos=1, eval_betas=""),
    # The paper's tuning budgets: ~100 photos, configs/fit/mystyle.yaml (300-step anchors, 1000 passes); the
    # full projection preset (400 steps); evaluate's default conditions (with the inversion) and beta sweep
    # on every held-out photo. For a GPU.
    "full": DemoSettings(num_photos=100, num_held_out=10, photo_size=1024, fit_config="fit/mystyle.yaml",
                         checkpoint_every=10, preset="full"),
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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _trainer_device(device: torch.device) -> dict:
    if device.type == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        devices: Any = [device.index] if device.index is not None else 1
        return {"accelerator": "gpu", "devices": devices, "precision": "bf16-mixed" if bf16 else "16-mixed"}
    return {"accelerator": "cpu", "devices": 1, "precision": "32-true"}


def _write_json(path: Path, data: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _copy_folder_atomic(files: Sequence[Path], dst: Path) -> Path:
    """Copy ``files`` into a new folder ``dst`` (built beside it, then renamed into place)."""

    def fill(tmp: Path) -> None:
        for f in files:
            shutil.copy2(f, tmp / Path(f).name)

    return write_folder_atomic(dst, fill)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in files if not p.name.startswith("."))


# ----------------------------------------------------------------------------------------
# the run


class _Demo:
    """The state of one run: paths, settings, the stage log."""

    def __init__(
        self,
        out_dir: Path,  # the demo's output folder
        album: Path | None,  # the user's photos (--album), None = the synthesised demo album
        quality: str,  # "quick" or "full" (recorded)
        settings: DemoSettings,  # the budgets
        device: torch.device,  # where everything runs
        seed: int,  # demo person, held-out split, samples
        generator: str,  # the generic prior: asset name or checkpoint path
        align: bool,  # run prepare's dlib alignment (False: copy the synthesised crops)
        identity: Any,  # the demo album's identity check ("dlib", a function, None)
        fit_args: Sequence[str],  # extra LightningCLI arguments
        task_overrides: dict,  # ProjectionSettings fields for the tasks
        progress: bool,  # progress bars
        log: Callable[[str], None],  # stage messages
    ):
        self.out, self.user_album, self.quality, self.settings = out_dir, album, quality, settings
        self.device, self.seed, self.generator_source = device, seed, generator
        self.align, self.identity = align, identity
        self.fit_args, self.task_overrides = list(fit_args), dict(task_overrides)
        self.progress, self.log = progress, log
        self.demo_album = out_dir / "demo_album"
        self.album = out_dir / "album"
        self.held_out = out_dir / "held_out"
        self.fit_dir = out_dir / "fit"
        self.prior = out_dir / "prior"
        self.results = out_dir / "results"
        self.report = out_dir / "report"
        self.records: list[StageRecord] = []
        self._generator = None

    # -------------------------------------------------------------- bookkeeping

    @property
    def identity_settings(self) -> dict:
        """What determines the outputs: a different value in an existing OUT/demo.json is refused."""
        s = asdict(self.settings)
        s["edit_strengths"] = list(s["edit_strengths"])
        return {"quality": self.quality, "seed": self.seed, "generator": self.generator_source,
                "album": str(self.user_album.resolve()) if self.user_album else None, "align": self.align, **s}  # fmt: skip

    def check_state(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            return
        try:
            before = json.loads(path.read_text()).get("settings", {})
        except json.JSONDecodeError:
            return
        changed = {k: (before.get(k), v) for k, v in self.identity_settings.items() if k in before and before[k] != v}
        if changed:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ValueError(f"{self.out} holds a demo made with other settings ({what}); "
                             "choose another --out, or delete that folder to start again")  # fmt: skip

    def save_state(self) -> None:
        _write_json(self.out / STATE_FILE, {
            "settings": self.identity_settings,
            "projection": asdict(demo_projection_settings(self.settings, self.task_overrides)),
            "device": str(self.device),
            "stages": [asdict(r) for r in self.records],
            "fidelity": self.fidelity(),
            "paths": {"demo_album": str(self.demo_album) if self.user_album is None else None, "album": str(self.album),
                      "held_out": str(self.held_out), "prior": str(self.prior), "results": str(self.results),
                      "report": str(self.report)},
        })  # fmt: skip

    def stage(self, name: str, done: Path | None, fn: Callable[[], Any], what: str = "") -> Any:
        """Run stage ``name`` unless ``done`` (its output) exists; log and record it."""
        number = f"{STAGES.index(name) + 1}/{len(STAGES)}"
        if done is not None and done.exists():
            self.log(f"[demo {number}] {name}: skipped ({done} exists)")
            self.records.append(StageRecord(name, "skipped", 0.0, str(done)))
            self.save_state()
            return None
        self.log(f"[demo {number}] {name}: {what}" if what else f"[demo {number}] {name}")
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        status, output, note = "done", str(done) if done is not None else None, ""
        if isinstance(value, StageRecord):
            status, output, note = value.status, value.output, value.note
        self.records.append(StageRecord(name, status, round(seconds, 2), output, note))
        if name != "summary":
            timing = f" in {seconds:.1f} s" if status == "done" else ""
            self.log(f"[demo {number}] {name}: {status}{timing}" + (f" ({note})" if note else ""))
        self.save_state()
        return value

    # -------------------------------------------------------------- shared objects

    @property
    def generator(self):
        if self._generator is None:
            self._generator = load_generator(self.generator_source).eval().to(self.device)
        return self._generator

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)

    def fit_config(self) -> Path:
        """The fit recipe: a path, or a config shipped with the package (``fit/demo.yaml``)."""
        p = Path(self.settings.fit_config)
        if p.is_absolute():
            if not p.is_file():
                raise FileNotFoundError(f"fit recipe not found: {p}")
            return p
        return config_path(str(p))

    # -------------------------------------------------------------- stages

    def run_assets(self) -> StageRecord:
        names = [n for n in (self.generator_source, *LPIPS_ASSETS) if n in assets.REGISTRY]
        if self.generator_source not in assets.REGISTRY and not Path(self.generator_source).is_file():
            raise FileNotFoundError(f"generator {self.generator_source!r} is neither an asset name nor a file")
        cached = [n for n in names if assets.status(n)["cached"]]
        for name in names:
            assets.fetch(name, progress=self.progress)
        fetched = [n for n in names if n not in cached]
        if not fetched:
            return StageRecord("assets", "skipped", 0.0, str(assets.home() / "assets"), f"all cached: {', '.join(names)}")
        return StageRecord("assets", "done", 0.0, str(assets.home() / "assets"), f"fetched {', '.join(fetched)}")

    def run_album(self) -> StageRecord:
        s = self.settings
        result = synthesize_album(
            self.demo_album, num_photos=s.num_photos, num_held_out=s.num_held_out, seed=self.seed,
            generator=self.generator, size=s.photo_size, identity=self.identity, device=self.device,
            generator_name=Path(self.generator_source).name,
            overwrite=True, log=self.log,
        )  # fmt: skip
        ident = result.record["identity"]
        note = f"{len(result.photos)} + {len(result.held_out)} photos"
        if ident.get("check"):
            note += f", identity distance median {ident['distances']['median']:.3f} max {ident['distances']['max']:.3f}"
        return StageRecord("album", "done", 0.0, str(self.demo_album / "album.json"), note)

    def _curation(self, size: int | None):
        if size is None:
            return CurationSettings()
        # Synthesised photos are face crops: the face fills the frame, whatever the saved size.
        return CurationSettings(min_face=min(200.0, 0.25 * size), min_crop=min(500.0, 0.6 * size))

    def _prepare(self, src: Path, dst: Path, size: int | None):
        if not self.align:  # already-aligned synthetic crops, used as they are (tests, machines without dlib)
            files = _image_files(src)
            _copy_folder_atomic(files, dst / "images")
            return len(files), 0
        result = prepare_album(src, dst, resolution=self.resolution, curation=self._curation(size),
                               progress=self.progress, log=self.log)  # fmt: skip
        self.log(result.summary())
        return result.kept, sum(result.rejected.values())

    def run_prepare(self) -> StageRecord:
        if self.user_album is None:
            kept, rejected = self._prepare(self.demo_album / "photos", self.album, self.settings.photo_size)
            held, held_rejected = self._prepare(self.demo_album / "held_out", self.held_out, self.settings.photo_size)
            if kept < 2 or (self.settings.num_held_out and held < 1):
                raise RuntimeError(f"prepare kept {kept} training and {held} held-out demo photos: too few to go on")
            record = {"source": "demo_album", "val_names": [], "held_out": [p.name for p in _image_files(self.held_out / "images")]}
            note = f"{kept} training photos ({rejected} rejected), {held} held out ({held_rejected} rejected)"
        else:
            kept, rejected = self._prepare(self.user_album, self.album, None)
            names = [p.name for p in _image_files(self.album / "images")]
            n_held = min(self.settings.num_held_out, max(0, len(names) // 5))
            if len(names) - n_held < 2:
                raise UserError(f"{self.user_album}: prepare kept {len(names)} photos: too few to tune a prior "
                                   "(MyStyle wants tens; see OUT/album/manifest.json for the rejected ones)")  # fmt: skip
            held = sorted(sorted(names, key=lambda n: hash_fraction(n, self.seed))[:n_held])
            _copy_folder_atomic([self.album / "images" / n for n in held], self.held_out / "images")
            record = {"source": str(self.user_album), "val_names": held, "held_out": held}
            note = f"{len(names)} photos kept ({rejected} rejected), {len(held)} of them held out"
        _write_json(self.held_out / HELD_OUT_FILE, record)
        return StageRecord("prepare", "done", 0.0, str(self.held_out / HELD_OUT_FILE), note)

    def run_config(self) -> dict:
        """The demo's layer on top of the fit recipe: its paths, device and album (OUT/fit/demo_run.yaml)."""
        held = json.loads((self.held_out / HELD_OUT_FILE).read_text())
        callbacks = [
            {"class_path": "mystyle_pl.tuning.ImageGridLogger", "init_args": {"every_n_steps": 0}},
            {"class_path": "mystyle_pl.tuning.ExportPrior", "init_args": {"dirpath": str(self.prior)}},
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(self.fit_dir / "checkpoints"), "save_last": True,
                           "every_n_epochs": self.settings.checkpoint_every}},
        ]  # fmt: skip
        data: dict[str, Any] = {"album": str(self.album), "resolution": self.resolution}
        data["val_fraction"] = 0.0  # the held-out photos are chosen here (demo: their own folder; --album: by name)
        if held["val_names"]:
            data["val_names"] = held["val_names"]
        return {
            "trainer": {
                **_trainer_device(self.device),
                "default_root_dir": str(self.fit_dir),
                "enable_progress_bar": self.progress,
                "limit_val_batches": 0,
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                           "init_args": {"save_dir": str(self.fit_dir), "name": "logs"}},
                "callbacks": callbacks,
            },
            "model": {"class_path": "mystyle_pl.tuning.PersonalTuner", "init_args": {"generator": self.generator_source}},
            "data": {"class_path": "mystyle_pl.data.PersonalPhotosDataModule", "init_args": data},
        }

    def fit_argv(self) -> list[str]:
        run_yaml = self.fit_dir / "demo_run.yaml"
        text = "# Written by `mystyle-pl demo`: its paths, device and album, stacked on the fit recipe.\n"
        write_bytes_atomic(run_yaml, (text + yaml.safe_dump(self.run_config(), sort_keys=False)).encode())
        argv = ["fit", "--config", str(self.fit_config()), "--config", str(run_yaml), *self.fit_args]
        last = self.fit_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            self.log(f"resuming the fit from {last}")
            argv += ["--ckpt_path", str(last)]
        return argv

    def run_fit(self) -> StageRecord:
        argv = self.fit_argv()
        self.log("mystyle-pl " + " ".join(argv))
        saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees both args and sys.argv
        try:
            MyStyleLightningCLI(args=argv)
        finally:
            sys.argv = saved
        if not (self.prior / "prior.json").is_file():
            raise RuntimeError(f"the fit finished without writing the prior bundle {self.prior}")
        return StageRecord("fit", "done", 0.0, str(self.prior), f"prior bundle {self.prior}")

    def run_tasks(self) -> StageRecord:
        return run_tasks(self.prior, self.held_out / "images", self.results, self.settings, device=self.device,
                         seed=self.seed, overrides=self.task_overrides, log=self.log, progress=self.progress)  # fmt: skip

    def fidelity(self) -> dict:
        """The x8 super-resolution's fidelity, personal vs bicubic: from the tasks stage (``tasks.json``,
        one held-out photo) and, when it ran, the evaluation (``report/metrics.json``, superres-x8)."""
        out: dict[str, Any] = {}
        tasks = self.results / "tasks.json"
        if tasks.is_file():
            sr = json.loads(tasks.read_text()).get("superres", {})
            if "consistency" in sr:
                out["tasks"] = sr
        metrics = self.report / "metrics.json"
        if metrics.is_file():
            agg = json.loads(metrics.read_text()).get("aggregates", {}).get("superres-x8", {})
            keys = ("psnr", "consistency", "steps_used", "seconds")
            out["evaluate"] = {m: {k: (a.get(k) or {}).get("mean") for k in keys} | {"n": a.get("n")}
                               for m, a in agg.items()}  # fmt: skip
        return out

    def run_summary(self, total: float) -> StageRecord:
        report = _find_report(self.report)
        ran = ", ".join(f"{r.name} {r.seconds:.0f} s" for r in self.records if r.status == "done")
        evaluated = next((r for r in self.records if r.name == "evaluate"), None)
        why = evaluated.note if evaluated is not None and evaluated.note else "evaluate did not run"
        lines = [
            f"[demo] finished in {total:.0f} s ({ran or 'every stage was already done'})",
            f"  album:    {self.demo_album if self.user_album is None else self.user_album} -> {self.album} (training photos)",
            f"  held out: {self.held_out / 'images'} (not seen by the tuning)",
            f"  prior:    {self.prior}   (PersonalPrior.load('{self.prior}'))",
            f"  results:  {self.results / 'gallery.png'}   (and superres.png, inpaint.png, edit.png, samples.png, tasks.json)",
            f"  report:   {report if report else f'not produced ({why})'}",
            f"  log:      {self.out / STATE_FILE}",
        ]
        lines += fidelity_lines(self.fidelity())
        self.log("\n".join(lines))
        return StageRecord("summary", "done", 0.0, str(self.out / STATE_FILE))


def fidelity_lines(fidelity: dict) -> list[str]:
    """The summary's lines on the x8 super-resolution: personal (data-consistent), its raw projection
    and bicubic, each with PSNR to the truth, consistency with the input, steps and seconds per image."""

    def cell(label: str, p, c, steps=None, sec=None) -> str:
        psnr_text, consistency_text = "–" if p is None else f"{p:.2f}", "–" if c is None else f"{c:.1f}"
        text = f"{label} {psnr_text} dB to the truth, consistency {consistency_text} dB"
        if steps is not None:
            text += f", {steps:.0f} steps"
        if sec is not None:
            text += f", {sec:.1f} s/image"
        return text

    lines = []
    t = fidelity.get("tasks")
    if t:
        lines.append(f"  x{t['factor']} super-resolution of a held-out photo (tasks): "
                     + cell("personal", t["psnr"], t["consistency"], t["steps_used"], t["seconds"])
                     + " | " + cell("raw projection", t["psnr_raw"], t["consistency_raw"])
                     + " | " + cell("bicubic", t["psnr_bicubic"], t["consistency_bicubic"]))  # fmt: skip
    e = fidelity.get("evaluate")
    if e:
        parts = [cell(m, a["psnr"], a["consistency"], a["steps_used"], a["seconds"]) for m, a in e.items()]
        n = next(iter(e.values()))["n"]
        lines.append(f"  x8 super-resolution, evaluation ({n} photo(s)): " + " | ".join(parts))
    return lines


def _find_report(folder: Path) -> Path | None:
    """The evaluation report in ``folder`` (written last, atomically), or None."""
    for name in ("report.md", "report.html"):
        if (folder / name).is_file():
            return folder / name
    return None


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
) -> StageRecord:
    """Run every task of the prior on a held-out photo and write ``OUT/{superres,inpaint,edit,samples,
    invert,gallery}.png`` and ``tasks.json`` (settings, timings; per restoration the PSNR to the truth,
    the consistency with the input, the steps used and the seconds). Projections use the preset
    ``settings.preset`` with ``overrides`` (:func:`demo_projection_settings`)."""
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
    sr_row = torch.cat([small(lo_up), small(sr.images), small(x)])

    # inpainting of a box over the nose and mouth (1 = known pixel, 0 = hole)
    box = (round(0.32 * res), round(0.5 * res), round(0.68 * res), round(0.8 * res))
    ip = timed("inpaint", lambda: prior.run(Inpaint(projection=projection), x, [box], lpips=lpips))
    mask = ip.mask.to(x)
    record["inpaint"] = {"box": list(box), "psnr_hole": round(float(_masked_psnr(ip.blended, x, 1 - mask)), 2),
                         "psnr": dB(psnr(ip.blended, x)), "consistency": dB(ip.consistency),
                         "steps_used": int(ip.steps_used), "seconds": timings["inpaint"]}  # fmt: skip
    ip_row = torch.cat([small(x * mask), small(ip.blended), small(x)])

    # inversion, and an edit of it along a principal direction in the coarse layers
    inv = timed("invert", lambda: prior.run(Invert(projection=projection), x, lpips=lpips))
    coarse = [i for i, r in enumerate(slot_resolutions(g)) if r <= 8]
    dirs, std = principal_directions(g, k=settings.edit_direction + 1, return_std=True)
    d = dirs[settings.edit_direction].to(device)
    sigma = float(std[settings.edit_direction])
    strengths = [s * sigma for s in settings.edit_strengths]
    try:  # MyStyle's edits: the direction's component in the anchors' span
        editor = Edit(layers=coarse, projection=projection).bind(prior, lpips=lpips)
        ed = timed("edit", lambda: editor(x, d, strengths, projection=inv))
        span = True
    except ValueError as e:  # anchors with no spread along it (e.g. tiny budgets): the raw direction
        say(f"  edit: {e}; using the direction as it is")
        editor = Edit(layers=coarse, span=False, projection=projection).bind(prior, lpips=lpips)
        ed = timed("edit", lambda: editor(x, d, strengths, projection=inv))
        span = False
    record["edit"] = {"direction": f"principal direction {settings.edit_direction}", "layers": coarse, "in_span": span,
                      "strengths_sigma": list(settings.edit_strengths), "sigma": round(sigma, 4),
                      "applied": [round(float(a), 4) for a in ed.applied[0]], "inside": [bool(b) for b in ed.inside[0]]}  # fmt: skip
    edit_row = small(ed.images[0])

    # colourisation of the photo's luminance (ITU-R BT.601)
    gray = luminance(x)
    col = timed("colorize", lambda: prior.run(Colorize(projection=projection), gray, lpips=lpips))
    record["colorize"] = {"psnr": dB(psnr(col.images, x)), "psnr_raw": dB(psnr(col.raw, x)),
                          "psnr_gray": dB(psnr(gray, x)), "consistency": dB(col.consistency),
                          "steps_used": int(col.steps_used), "seconds": timings["colorize"]}  # fmt: skip
    col_row = torch.cat([small(gray), small(col.images), small(x)])

    # new photos of the person
    smp = timed("sample", lambda: prior.run(Sample(), settings.num_samples, seed=seed))
    sample_row = small(smp.images)
    record["invert"] = {"psnr": dB(psnr(inv.images, x)), "consistency": dB(inv.consistency),
                        "steps_used": int(inv.steps_used), "seconds": timings["invert"]}  # fmt: skip

    rows = {"superres": [sr_row], "inpaint": [ip_row], "invert": [torch.cat([small(x), small(inv.images)])],
            "colorize": [col_row], "edit": [edit_row], "samples": [sample_row]}  # fmt: skip
    for name, r in rows.items():
        write_image(out_dir / f"{name}.png", make_grid(r))
    write_image(out_dir / "gallery.png", make_grid([sr_row, ip_row, col_row, edit_row, sample_row]))
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


def demo_projection_settings(settings: DemoSettings, overrides: dict | None = None):
    """The demo's projection settings: :func:`~mystyle_pl.tasks.presets.task_settings` of
    ``settings.preset`` with the ``overrides`` (``ProjectionSettings`` fields) replacing its values."""
    base = task_settings(settings.preset)
    return replace(base, **(overrides or {})) if overrides else base


def _masked_psnr(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, images in [-1, 1]) over the pixels where ``weight`` [B, 1, H, W] is 1."""
    w = weight.expand_as(x)
    mse = ((x.float() - y.float()).square() * w).sum() / w.sum().clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


# ----------------------------------------------------------------------------------------
# the evaluate stage


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
                 fit_args, task_overrides or {}, progress, log)  # fmt: skip
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
    demo.stage("tasks", demo.results / "gallery.png", demo.run_tasks, "super-resolution, inpainting, editing, sampling")
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
