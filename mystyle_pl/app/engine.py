"""What the browser app does, without the browser: read an upload, find and mark the faces, run a
task on the person's face(s), write the result and its record. No gradio here (``ui.py`` is the
page), so the logic is tested and used without the optional extra.

Every task goes through :func:`mystyle_pl.group.process_photo` (only the person's faces change)
and the prior's Python API (:class:`~mystyle_pl.prior.PersonalPrior`), as ``predict`` does.

Files: results go to ``out_dir/runs/<run id>/`` (``result.png``, ``record.json``; written
atomically); nothing is written anywhere else. Every PNG a user downloads is labelled, always
(the app has no option to turn it off): the watermark in the face, IPTC XMP and a signed C2PA
manifest with the upload as the ingredient (:mod:`mystyle_pl.provenance`; ``record.json`` says
``"provenance": "on"`` and the watermark's state). Uploads are read into memory and never copied;
the page's own upload cache is ``out_dir/uploads`` (ui.py), emptied when a session closes.

Errors a user can cause (a file that is not an image, a truncated one, a huge one, no face, not
the person, a hole off the face) raise :class:`AppError` whose message the page shows.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.faces import FaceModelsUnavailable
from ..data.io import ImageReadError, read_image, to_uint8, write_bytes_atomic
from ..group import NoPersonError, analyse, process_photo, select_faces, task_runner
from ..prior import PersonalPrior, PriorError
from ..provenance.writing import Provenance
from ..tasks.edit import load_direction, principal_directions
from ..tasks.pasteback import DEFAULT_IDENTITY_THRESHOLD, NoFaceError

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_PIXELS = 50_000_000  # larger photos are refused with a message (50 MP: a large phone photo)
DEFAULT_MAX_UPLOAD_BYTES = 60 * 1024 * 1024  # larger files are refused before decoding
DEFAULT_MAX_OUTPUT_PIXELS = 64_000_000  # cap on a super-resolved photo (tasks.pasteback.pasted_size)
EDIT_DIRECTIONS = 5  # principal directions offered as sliders
TASK_NAMES = {"restore": "Restore", "super_resolve": "Super-resolve", "inpaint": "Inpaint", "edit": "Edit",
              "invert": "Project"}  # fmt: skip


class AppError(ValueError):
    """Something about the user's input or request; the message is shown in the page as it is."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; otherwise ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Upload:
    """A photo read and analysed: every face, and which one(s) are the person."""

    name: str  # the uploaded file's name (for messages)
    photo: np.ndarray  # uint8 [H, W, 3], EXIF orientation applied
    faces: list  # FaceAnalyzer.analyze's list (most confident first)
    message: str  # one paragraph for the page: the faces, their distances, what will be processed
    marked: np.ndarray  # uint8 [H', W', 3]: the photo (reduced to at most 1024 px) with the faces boxed and labelled
    person_found: bool  # some face will be processed


@dataclass
class RunOutput:
    """One task run, as the page shows it."""

    before: np.ndarray  # uint8 [S, S, 3]: the person's face as the task got it (the first one)
    after: np.ndarray  # uint8 [R, R, 3]: its result
    photo: np.ndarray  # uint8 [H', W', 3]: the whole photo with the result pasted back
    png: Path  # the whole photo, written
    record_path: Path  # the run's record (settings, steps, metrics, faces) as JSON
    message: str  # one paragraph for the page
    record: dict[str, Any] = field(default_factory=dict)


class AppEngine:
    """The app's work on one prior, shared by every browser session (thread-safe: one task at a time)."""

    def __init__(
        self,
        prior_dir: str | Path,  # the personal prior bundle (mystyle-pl export / fit's ExportPrior)
        device: str = "auto",  # "auto" | "cpu" | "cuda" | "cuda:1" ...
        out_dir: str | Path | None = None,  # results go here; None = a new temporary folder, removed by close()
        preset: str | None = None,  # projection preset (tasks.presets); None = the Python API's default per task
        steps: int | None = None,  # projection steps over the preset's; None = the preset's
        lpips_weight: float | None = None,  # LPIPS weight over the preset's (0 = pixel loss only); None = the preset's
        faces: str = "person",  # which faces of a photo are processed: person | all | largest (mystyle_pl.group)
        threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest descriptor distance to the prior's identity that is the person
        max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,  # larger photos are refused with a message
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,  # larger files are refused with a message
        analyzer=None,  # a FaceAnalyzer; None = dlib's default one
        edit_directions: int = EDIT_DIRECTIONS,  # principal directions offered as sliders
    ) -> None:
        self.prior_dir = Path(prior_dir)
        self.device = resolve_device(device)
        try:
            self.prior = PersonalPrior.load(self.prior_dir, device=self.device)
        except PriorError as e:
            raise AppError(str(e)) from e
        self._own_out = out_dir is None
        self.out_dir = Path(tempfile.mkdtemp(prefix="mystyle-app-")) if out_dir is None else Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.preset, self.steps, self.lpips_weight = preset, steps, lpips_weight
        self.faces_mode, self.threshold = faces, float(threshold)
        self.max_upload_pixels, self.max_upload_bytes = int(max_upload_pixels), int(max_upload_bytes)
        self.analyzer = analyzer
        self.edit_directions = max(0, min(int(edit_directions), self.prior.generator.w_dim))
        self._task_lock = threading.Lock()  # one projection at a time (the generator is shared)
        self._face_lock = threading.Lock()  # dlib's models are shared too
        self._identity: tuple[list[float] | None, str] | None = None
        self._directions: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ the prior

    @property
    def resolution(self) -> int:
        return int(self.prior.generator.img_resolution)

    def identity(self) -> tuple[list[float] | None, str]:
        """The prior's identity centre ``[D]`` and where it came from (computed once)."""
        if self._identity is None:
            with self._face_lock:
                try:
                    self._identity = self.prior.identity_centre(self.prior_dir, analyzer=self.analyzer)
                except FaceModelsUnavailable as e:
                    self._identity = (None, f"no identity ({e})")
        return self._identity

    def directions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``edit_directions`` principal directions of W ``[k, w_dim]`` and their std ``[k]``."""
        if self._directions is None:
            with self._task_lock:
                self._directions = principal_directions(self.prior.generator, k=max(1, self.edit_directions),
                                                        num_samples=2000, return_std=True)  # fmt: skip
        return self._directions

    def describe(self) -> str:
        """One paragraph about the prior for the page's header."""
        g = self.prior.generator
        _, note = self.identity()
        return (f"Prior `{self.prior_dir}`: {g.family} at {g.img_resolution} px, {len(self.prior.names)} photos of the "
                f"person; identity: {note}. Device: {self.device}. Results are written to `{self.out_dir}`.")  # fmt: skip

    # ------------------------------------------------------------------ uploads

    def read_upload(self, path: str | Path | None) -> Upload:
        """Read an uploaded file, find its faces and mark the person's. Raises :class:`AppError`
        for a missing, unreadable, truncated or huge file or a photo with no face; a photo without
        the person is read (``person_found=False``, the message says so) so the page can show it."""
        if path is None:
            raise AppError("Upload a photo first.")
        path = Path(path)
        name = path.name
        try:
            size = path.stat().st_size
        except OSError as e:
            raise AppError(f"{name}: cannot read the upload ({e.strerror or e}).") from e
        if size > self.max_upload_bytes:
            raise AppError(f"{name}: {size / 2**20:.0f} MB is too large (at most {self.max_upload_bytes / 2**20:.0f} MB).")
        try:
            photo = read_image(path, max_pixels=self.max_upload_pixels, name=name)
        except (ImageReadError, OSError, ValueError) as e:
            reason = _first_line(e).replace(str(path), name)
            raise AppError(f"{name}: not a photo this app can read ({reason}).") from e
        except Image.DecompressionBombError as e:
            raise AppError(f"{name}: too large ({_first_line(e)}; at most {self.max_upload_pixels:,} pixels).") from e
        centre, identity_note = self.identity()
        with self._face_lock:
            try:
                faces = analyse(photo, self.analyzer, describe=centre is not None)
            except FaceModelsUnavailable as e:
                raise AppError(f"Faces cannot be found on this machine: {e}") from e
        h, w = photo.shape[:2]
        if not faces:
            raise AppError(f"{name}: no face found ({w}x{h} px). A face must be at least ~40 px wide and roughly frontal.")
        try:
            selection = select_faces(faces, name, identity=centre, mode=self.faces_mode, threshold=self.threshold)
            person_found, lines = True, [f"{len(faces)} face(s) found. Processing: {selection.note}."]
            shown = selection.faces
        except NoPersonError as e:
            person_found, lines = False, [f"{_first_line(e).split(' (face')[0]}. This photo will not be processed."]
            shown = select_faces(faces, name, identity=centre, mode="all", threshold=self.threshold).faces
            for f in shown:
                f.selected = False
        for f in shown:
            d = "distance unknown" if f.distance is None else f"distance {f.distance:.2f}"
            lines.append(f"- face {f.index}: {d}{' (the person)' if f.person else ''}{' -> processed' if f.selected else ''}")
        if centre is None:
            lines.append(f"The prior's identity is unknown ({identity_note}): the most confident face is taken.")
        return Upload(name=name, photo=photo, faces=faces, message="\n".join(lines),
                      marked=mark_faces(photo, shown, self.threshold), person_found=person_found)  # fmt: skip

    # ------------------------------------------------------------------ tasks

    def _kw(self, progress: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"progress": progress}
        if self.steps is not None:
            kw["steps"] = int(self.steps)
        if self.lpips_weight is not None:
            kw["lpips_weight"] = float(self.lpips_weight)
        return kw

    def run(
        self,
        task: str,  # "restore" | "super_resolve" | "inpaint" | "edit" | "invert"
        upload: Upload,  # from read_upload
        factor: int | None = None,  # super_resolve: 2, 4, 8, ...
        hole: np.ndarray | None = None,  # inpaint: bool [H, W] on the photo, True = hole
        sliders: list[float] | None = None,  # edit: strength per principal direction, in W standard deviations
        direction_file: str | Path | None = None,  # edit: an uploaded .pt / .npy W direction [w_dim]
        direction_strength: float = 0.0,  # edit: strength along the uploaded direction
        status: Callable[[str], None] | None = None,  # called with a phase name before each phase
        tqdm_progress: bool = True,  # show the projection's steps as a tqdm bar (the page tracks it)
    ) -> RunOutput:
        """Run ``task`` on the person's face(s) of ``upload``; write ``result.png`` and ``record.json``.
        Raises :class:`AppError` with a message for the page."""
        if not upload.person_found:
            raise AppError(f"{upload.name}: no face of the person in this photo, so nothing is done. "
                           "Upload a photo of the person.")  # fmt: skip
        started = time.time()
        centre, identity_note = self.identity()
        kw = self._kw(tqdm_progress)
        options: dict[str, Any] = {}
        direction, strength = None, 0.0
        if task == "super_resolve":
            options["factor"] = int(factor or 2)
        elif task == "inpaint":
            if hole is None or not np.asarray(hole).any():
                raise AppError("Paint over the part of the face to fill (the brush on the photo), then run Inpaint.")
            if hole.shape != upload.photo.shape[:2]:
                raise AppError(f"The painted mask is {hole.shape[1]}x{hole.shape[0]}, the photo "
                               f"{upload.photo.shape[1]}x{upload.photo.shape[0]}: upload the photo again.")  # fmt: skip
            options["hole"] = hole
        elif task == "edit":
            direction, strength, options["edit"] = self._edit_direction(sliders or [], direction_file, direction_strength)
        elif task not in ("restore", "invert"):
            raise AppError(f"unknown task {task!r}")
        if status:
            status(f"{TASK_NAMES.get(task, task)}: projecting the face")
        with self._task_lock:
            try:
                run, size, upscale = task_runner(
                    self.prior, task, preset=self.preset, factor=options.get("factor"), hole=options.get("hole"),
                    direction=direction, strength=strength, **kw,
                )  # fmt: skip
                result = process_photo(upload.photo, run, size, identity=centre, faces=self.faces_mode,
                                       threshold=self.threshold, upscale=upscale, analyzer=self.analyzer,
                                       detected=upload.faces, label=upload.name, max_pixels=DEFAULT_MAX_OUTPUT_PIXELS,
                                       provenance=Provenance(prior=self.prior))  # always on: the app cannot turn it off
            except (NoFaceError, NoPersonError, ValueError) as e:
                raise AppError(_first_line(e)) from e
        if status:
            status("writing the result")
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = self.out_dir / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=False)
        png = result.save(folder / "result.png")  # labelled (the upload's pixels are the manifest's ingredient)
        record = {
            "run": run_id, "task": task, "prior": str(self.prior_dir), "upload": upload.name,
            "identity": identity_note, "device": str(self.device), "seconds": round(time.time() - started, 2),
            "settings": {"preset": self.preset, "steps": self.steps, "lpips_weight": self.lpips_weight,
                         **{k: v for k, v in options.items() if k != "hole"}},
            **result.record(),
        }  # fmt: skip
        record_path = write_bytes_atomic(folder / "record.json", (json.dumps(record, indent=2, default=str) + "\n").encode())
        first = result.selection.selected[0]
        after = to_uint8(result.output.images[:1].float().cpu())[0]
        before = to_uint8(result.crops[:1])[0]
        steps = (record.get("task") or {}).get("steps_used") if isinstance(record.get("task"), dict) else None
        message = (f"{TASK_NAMES.get(task, task)} done in {record['seconds']:.1f} s"
                   f"{f', {steps} projection steps' if steps is not None else ''}: "
                   f"{len(result.selection.selected)} face(s) of the person processed (face {first.index}"
                   f"{'' if first.distance is None else f', distance {first.distance:.2f}'}); "
                   f"{int(result.changed.sum()):,} of {result.changed.size:,} pixels changed, every other pixel is "
                   + ("the upload's" if result.upscale == 1 else f"the upload enlarged x{result.upscale}")
                   + f". Result {result.photo.shape[1]}x{result.photo.shape[0]}.")  # fmt: skip
        return RunOutput(before=before, after=after, photo=result.photo, png=png, record_path=record_path,
                         message=message, record=record)  # fmt: skip

    def _edit_direction(self, sliders, direction_file, direction_strength) -> tuple[torch.Tensor | int, float, dict]:
        """Sliders (W standard deviations along principal directions) + an uploaded direction ->
        ``(unit direction [w_dim], strength, record)``."""
        w_dim = self.prior.generator.w_dim
        total = torch.zeros(w_dim)
        used: dict[str, Any] = {}
        values = [float(v) for v in sliders][: self.edit_directions]
        if any(values):
            dirs, std = self.directions()
            for i, v in enumerate(values):
                if v:
                    total += v * float(std[i]) * dirs[i].cpu()
                    used[f"principal_{i}"] = v
        if direction_file and direction_strength:
            try:
                d = load_direction(direction_file, w_dim=w_dim).reshape(-1).cpu()
            except (ValueError, OSError) as e:
                raise AppError(f"direction file {Path(direction_file).name}: {_first_line(e)}") from e
            total += float(direction_strength) * d
            used["file"] = {"name": Path(direction_file).name, "strength": float(direction_strength)}
        norm = float(total.norm())
        if norm == 0:  # strength 0 along any direction: the projection itself
            return self.directions()[0][0].cpu(), 0.0, {"sliders": used}
        return total / norm, norm, {"sliders": used, "norm": round(norm, 4)}

    def sample(self, n: int, seed: int | None = None) -> tuple[list[np.ndarray], Path, Path]:
        """``n`` new photos of the person -> (images uint8 [R, R, 3], a PNG of them side by side, the record)."""
        n = int(n)
        if not 1 <= n <= 16:
            raise AppError(f"Ask for 1 to 16 photos, not {n}.")
        with self._task_lock:
            res = self.prior.sample(n, seed=seed)
        provenance = Provenance(prior=self.prior)  # always on: the app cannot turn it off
        marked = [provenance.mark(image) for image in to_uint8(res.images.float().cpu())]
        images = [image for image, _ in marked]
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = self.out_dir / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=False)
        watermark = marked[0][1]
        label = provenance.label("sample", settings={"n": n, "seed": seed}, watermark=watermark)
        png = provenance.write(folder / "samples.png", np.concatenate(images, axis=1), label)
        record = {"run": run_id, "task": "sample", "prior": str(self.prior_dir), "n": n, "seed": seed,
                  "coefficients": res.coefficients.tolist(), "provenance": provenance.state, "watermark": watermark}  # fmt: skip
        rec = write_bytes_atomic(folder / "record.json", (json.dumps(record, indent=2) + "\n").encode())
        return images, png, rec

    def close(self) -> None:
        """Remove the output folder when it is the engine's own temporary one."""
        if self._own_out:
            shutil.rmtree(self.out_dir, ignore_errors=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def mark_faces(photo: np.ndarray, faces: list, threshold: float, max_side: int = 1024) -> np.ndarray:
    """The photo (reduced so its longer side is at most ``max_side``) with each face boxed and labelled:
    green = processed, grey = kept as it is; the label gives the face's index and its distance.
    ``photo``: uint8 [H, W, 3]; ``faces``: :class:`~mystyle_pl.group.GroupFace` list. Returns uint8 [H', W', 3]."""
    h, w = photo.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    img = Image.fromarray(photo)
    if scale < 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for f in faces:
        l, t, r, b = (v * scale for v in f.box)
        colour = (40, 220, 60) if f.selected else (160, 160, 160)
        draw.rectangle([l, t, r, b], outline=colour, width=width)
        label = f"{f.index}" + ("" if f.distance is None else f" d={f.distance:.2f}") + (" person" if f.selected else "")
        draw.text((l + width, max(0, t - 12 - width)), label, fill=colour)
    return np.asarray(img)
