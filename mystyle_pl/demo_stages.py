"""The demo's run (:class:`_Demo`): its paths, settings and stage log, and the stages up to the prior:
assets, album, prepare, fit (the fit recipe's own callbacks, with the prior written to ``OUT/prior``),
and the closing summary. The tasks and evaluate stages and :func:`~mystyle_pl.demo.run_demo` are in
:mod:`mystyle_pl.demo`."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml

from . import assets, load_generator
from .data.curate import CurationSettings
from .data.datamodule import hash_fraction
from .data.io import write_bytes_atomic, write_folder_atomic
from .data.prepare import prepare_album
from .demo_album import synthesize_album
from .demo_settings import (
    HELD_OUT_FILE,
    LPIPS_ASSETS,
    STAGES,
    STATE_FILE,
    DemoSettings,
    StageRecord,
    demo_projection_settings,
)
from .errors import UserError
from .imaging import image_files
from .lightning_cli import MyStyleLightningCLI, _class_of, _entries, config_path
from .precision import bf16_native
from .tuning import ExportPrior


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
    # bfloat16 where the CPU computes it natively: a tuning step 0.66 s against 1.40 s in float32 (2-core EPYC
    # with AVX512-BF16, MobileStyleGAN at 1024 px; docs/fidelity.md, "Session 10"); emulated elsewhere, and slower
    return {"accelerator": "cpu", "devices": 1, "precision": "bf16-mixed" if bf16_native("cpu") else "32-true"}


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
    """:func:`~mystyle_pl.imaging.image_files` of ``folder``; none when it is not a folder (yet)."""
    return image_files(folder) if folder.is_dir() else []


def recipe_callbacks(recipe: Path, prior_dir: Path) -> list[dict]:
    """The ``trainer.callbacks`` a fit recipe (YAML) declares, as declared, with every ``ExportPrior``
    writing ``prior_dir`` (the demo keeps the prior beside the fit's run folder: ``OUT/prior``, not
    ``OUT/fit/prior``); an ``ExportPrior`` is added when the recipe has none (the demo needs the bundle).

    A second config's ``trainer.callbacks`` replaces the first's whole list, so the demo's layer
    repeats the recipe's entries instead of writing its own."""
    config = yaml.safe_load(Path(recipe).read_text()) or {}
    callbacks = copy.deepcopy(_entries((config.get("trainer") or {}).get("callbacks")))
    exports = [c for c in callbacks if _is_a(c, ExportPrior)]
    if not exports:
        callbacks.append({"class_path": "mystyle_pl.tuning.ExportPrior"})
        exports = callbacks[-1:]
    for entry in exports:
        entry["init_args"] = {**(entry.get("init_args") or {}), "dirpath": str(prior_dir)}
    return callbacks


def _is_a(entry: Any, cls: type) -> bool:
    """Whether a YAML ``{class_path: ...}`` entry names ``cls`` or a subclass of it."""
    found = _class_of(SimpleNamespace(class_path=entry.get("class_path"))) if isinstance(entry, dict) else None
    return found is not None and issubclass(found, cls)


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
        provenance: bool = True,  # label the gallery (mystyle_pl.provenance); recorded in demo.json
    ):
        self.out, self.user_album, self.quality, self.settings = out_dir, album, quality, settings
        self.device, self.seed, self.generator_source = device, seed, generator
        self.align, self.identity = align, identity
        self.fit_args, self.task_overrides = list(fit_args), dict(task_overrides)
        self.progress, self.log, self.provenance = progress, log, bool(provenance)
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
                "album": str(self.user_album.resolve()) if self.user_album else None, "align": self.align,
                "provenance": "on" if self.provenance else "off", **s}  # fmt: skip

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
            "provenance": "on" if self.provenance else "off",
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
        """The demo's layer on top of the fit recipe: its paths, device and album (OUT/fit/demo_run.yaml). The
        callbacks are the recipe's own (:func:`recipe_callbacks`); checkpoints go to ``OUT/fit/checkpoints``
        by the run folder's rule (:func:`~mystyle_pl.lightning_cli.resolve_fit_config`)."""
        held = json.loads((self.held_out / HELD_OUT_FILE).read_text())
        callbacks = recipe_callbacks(self.fit_config(), self.prior)
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

    def fidelity(self) -> dict:
        """The x8 super-resolution's fidelity, personal vs bicubic, and the held-out inversion's: from the
        tasks stage (``tasks.json``, one held-out photo) and, when it ran, the evaluation
        (``report/metrics.json``, superres-x8)."""
        out: dict[str, Any] = {}
        tasks = self.results / "tasks.json"
        if tasks.is_file():
            record = json.loads(tasks.read_text())
            sr, inv = record.get("superres", {}), record.get("invert", {})
            if "consistency" in sr:
                out["tasks"] = sr
            if "consistency" in inv:
                out["invert"] = inv
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
    and bicubic, each with PSNR to the truth, consistency with the input, steps and seconds per image;
    and on the held-out inversion (D = identity: PSNR to the truth = consistency) of the tasks stage."""

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
    i = fidelity.get("invert")
    if i:
        lines.append("  held-out inversion (tasks): " + cell("personal", i["psnr"], i["consistency"], i.get("steps_used"),
                                                            i.get("seconds")))  # fmt: skip
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
