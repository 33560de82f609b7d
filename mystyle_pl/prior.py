"""The personal prior bundle: what ``fit`` produces and every task loads.

A folder::

    PRIOR/
      generator.safetensors   the tuned generator (native format: weights + architecture)
      anchors.safetensors     one w per training photo [N, w_dim] + the photo names in order
      anchor_renders.safetensors  the anchors' renders at 128 px for the projections' start scan
                              (mystyle_pl.anchor_renders; optional: older bundles render them)
      prior.json              family, source, resolution, training settings, album digest,
                              metrics at export, the person's identity centre, version

``prior.json``'s ``identity`` is the centre of the person's face descriptors (dlib's 128-d
ResNet, as ``prepare`` computes it from the album: ``manifest.json``'s ``identity.centre``),
stored at export when the album's manifest is reachable. Tasks use it to tell the person from
other people in a photo (:meth:`PersonalPrior.identity_centre`; for bundles without it the
album manifest is looked up again, else the anchors' renders are described).

Loading never unpickles. Tasks import this module, never the tuning code; this module imports no
task: :meth:`PersonalPrior.run` runs any task object, and the named shortcuts (``prior.invert``,
``prior.super_resolve``, ...) find their task class by name in :data:`TASK_TYPES`, which the task
classes fill when :mod:`mystyle_pl.tasks` is imported (``import mystyle_pl`` does).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .anchor_renders import RENDERS_FILE, load_anchor_renders, render_anchors, save_anchor_renders
from .data.anchors_io import Anchors, load_anchors, save_anchors
from .data.curate import dominant_identity
from .data.faces import FaceAnalyzer, FaceModelsUnavailable
from .data.io import read_image, to_tensor, to_uint8, write_folder_atomic
from .data.manifest import load_manifest
from .generators import Generator, load_generator, save_generator
from .space import DEFAULT_BETA, PersonalSpace

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.safetensors"
ANCHORS_FILE = "anchors.safetensors"
INFO_FILE = "prior.json"
BUNDLE_VERSION = 1
IDENTITY_RENDERS = 16  # anchors rendered and described when neither prior.json nor the album gives the identity
TASK_TYPES: dict[str, type] = {}  # task name -> task class (mystyle_pl.tasks.base.Task registers each subclass)


def register_task(cls: type) -> type:
    """Make a task class reachable by its ``name`` from :meth:`PersonalPrior.run` (``prior.run("colorize",
    img)``) and the named shortcuts. Called by ``Task.__init_subclass__``."""
    if getattr(cls, "name", ""):
        TASK_TYPES[cls.name] = cls
    return cls


def album_identity(album: str | os.PathLike | None, prior_dir: str | os.PathLike | None = None) -> tuple[list[float] | None, str]:
    """The identity centre ``[D]`` that ``prepare`` stored in the album's ``manifest.json``, and a
    note saying where it came from (or why there is none). A relative ``album`` is also tried
    beside the prior folder."""
    if not album:
        return None, "the prior names no album"
    candidates = [Path(album)]
    if not Path(album).is_absolute() and prior_dir is not None:
        candidates.append(Path(prior_dir).parent / album)
    notes = []
    for folder in candidates:
        try:
            centre = (load_manifest(folder).get("identity") or {}).get("centre")
        except (OSError, ValueError) as e:
            notes.append(f"no album manifest in {folder} ({type(e).__name__})")
            continue
        if centre:
            return [float(v) for v in centre], f"the album's identity centre ({folder / 'manifest.json'})"
        notes.append(f"{folder / 'manifest.json'} has no identity centre")
    return None, "; ".join(notes)


class PriorError(ValueError):
    """A prior bundle is missing or malformed; the message names the folder and the file."""


@dataclass
class PersonalPrior:
    """A tuned generator and the anchors of the person's photos."""

    generator: Generator
    anchors: Anchors
    info: dict[str, Any] = field(default_factory=dict)
    anchor_renders: torch.Tensor | None = None  # [N, 3, S, S] the anchors rendered (const noise) for the start
    # scan, from the bundle's anchor_renders.safetensors; None = not cached (rendered when a projection needs them)

    def __post_init__(self) -> None:
        if self.anchors.w_dim != self.generator.w_dim:
            raise PriorError(f"anchors have w_dim={self.anchors.w_dim}, the generator has w_dim={self.generator.w_dim}")
        if self.anchor_renders is not None and self.anchor_renders.shape[0] != len(self.anchors.names):
            raise PriorError(f"{self.anchor_renders.shape[0]} anchor renders for {len(self.anchors.names)} anchors")

    @property
    def w(self) -> torch.Tensor:
        """The anchors ``[N, w_dim]`` on the generator's device."""
        return self.anchors.w.to(self.generator.w_avg.device)

    @property
    def names(self) -> list[str]:
        return list(self.anchors.names)

    def to(self, device: torch.device | str) -> PersonalPrior:
        self.generator.to(device)
        return self

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the bundle atomically: into a temp folder beside ``path``, then renamed into place.
        The anchors' renders are made here when the object holds none (one render per anchor; the object
        is left as it was)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

        if not (self.info.get("identity") or {}).get("centre") and self.info.get("album"):
            centre, note = album_identity(self.info["album"])
            if centre is not None:
                self.info["identity"] = {"centre": [round(v, 6) for v in centre], "source": note,
                                         "descriptor": "dlib ResNet 128-d (mystyle_pl.data.faces.FaceAnalyzer)"}  # fmt: skip

        renders = self.anchor_renders if self.anchor_renders is not None else render_anchors(self.generator, self.anchors.w)

        def fill(tmp: Path) -> None:
            save_generator(self.generator, tmp / GENERATOR_FILE)
            save_anchors(tmp / ANCHORS_FILE, self.anchors.w, self.anchors.names, metadata=self.anchors.metadata)
            save_anchor_renders(tmp / RENDERS_FILE, renders, self.anchors.w)
            info = {
                **self.info,
                "bundle_version": BUNDLE_VERSION,
                "mystyle_pl_version": __version__,
                "family": self.generator.family,
                "img_resolution": self.generator.img_resolution,
                "num_ws": self.generator.num_ws,
                "w_dim": self.generator.w_dim,
                "num_anchors": len(self.anchors.names),
            }
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")

        write_folder_atomic(path, fill)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> PersonalPrior:
        """Load a bundle folder (safetensors + JSON only)."""
        path = Path(path)
        if not path.is_dir():
            raise PriorError(
                f"{path}: prior bundle not found (expected a folder with {GENERATOR_FILE}, {ANCHORS_FILE}, {INFO_FILE}, "
                "as `mystyle-pl export` or fit's ExportPrior write it)"
            )
        missing = [f for f in (GENERATOR_FILE, ANCHORS_FILE, INFO_FILE) if not (path / f).is_file()]
        if missing:
            raise PriorError(f"{path}: not a prior bundle, missing {', '.join(missing)}")
        try:
            info = json.loads((path / INFO_FILE).read_text())
        except json.JSONDecodeError as e:
            raise PriorError(f"{path / INFO_FILE}: invalid JSON ({e})") from e
        if info.get("bundle_version", 0) > BUNDLE_VERSION:
            raise PriorError(
                f"{path}: bundle version {info['bundle_version']} is newer than this mystyle-pl reads ({BUNDLE_VERSION})"
            )
        generator = load_generator(path / GENERATOR_FILE, format="native").to(device).eval()
        anchors = load_anchors(path / ANCHORS_FILE)
        renders, note = load_anchor_renders(path / RENDERS_FILE, anchors.w)
        if renders is None:
            log.info("%s: the anchors' renders are made when first needed: %s", path, note)
        return cls(generator=generator, anchors=anchors, info=info, anchor_renders=renders)

    def describe(self) -> dict[str, Any]:
        """A summary for ``mystyle-pl info PRIOR``."""
        return {
            "kind": "personal prior",
            "family": self.generator.family,
            "img_resolution": self.generator.img_resolution,
            "num_ws": self.generator.num_ws,
            "num_anchors": len(self.anchors.names),
            "anchor_renders": "cached" if self.anchor_renders is not None else "not cached (made when first needed)",
            "photos": self.names[:5] + (["..."] if len(self.names) > 5 else []),
            "source": self.info.get("generator_source"),
            "album": self.info.get("album"),
            "album_digest": self.info.get("album_digest"),
            "identity": (self.info.get("identity") or {}).get("source") or "not stored (looked up when needed)",
            "metrics": self.info.get("metrics", {}),
            "training": self.info.get("training", {}),
            "created": self.info.get("created"),
            "mystyle_pl_version": self.info.get("mystyle_pl_version"),
        }

    # ------------------------------------------------------------------ identity

    def identity_centre(
        self,
        prior_dir: str | os.PathLike | None = None,  # the bundle's folder (a relative album path is tried beside it)
        renders: int = IDENTITY_RENDERS,  # anchors rendered and described as the last resort; 0 = never
        analyzer=None,  # a FaceAnalyzer for the renders; None = dlib's default one
    ) -> tuple[list[float] | None, str]:
        """The person's identity centre ``[D]`` (dlib descriptor) and a note saying where it came from.

        In order: ``prior.json``'s ``identity`` (stored at export), the album's ``manifest.json``
        (older bundles), the dominant identity of up to ``renders`` anchors rendered by the
        generator (computed once per object). ``(None, reason)`` when none works (e.g. no face in
        the renders of a tiny test generator, or dlib missing).
        """
        stored = (self.info.get("identity") or {}).get("centre")
        if stored:
            return [float(v) for v in stored], f"prior.json ({(self.info.get('identity') or {}).get('source', 'stored at export')})"
        centre, note = album_identity(self.info.get("album"), prior_dir)
        if centre is not None or renders <= 0:
            return centre, note
        cached = getattr(self, "_rendered_identity", None)
        if cached is None:
            cached = self._identity_from_renders(renders, analyzer)
            self._rendered_identity = cached
        centre, why = cached
        return centre, f"{note}; {why}" if centre is None else why

    def _identity_from_renders(self, renders: int, analyzer=None) -> tuple[list[float] | None, str]:
        n = len(self.anchors.names)
        picks = sorted({round(i * (n - 1) / max(renders - 1, 1)) for i in range(min(renders, n))})
        try:
            if analyzer is None:
                analyzer = FaceAnalyzer()
            descriptors = []
            g = self.generator
            for i in picks:
                with torch.no_grad():
                    image = g.synthesis(g.broadcast_w(self.w[i : i + 1]), noise_mode="const")
                faces = analyzer.analyze(to_uint8(image.float().cpu())[0], describe=True)
                descriptors.append(np.asarray(faces[0].descriptor)[None] if faces else np.zeros((0, 1)))
        except FaceModelsUnavailable as e:
            return None, f"no identity from the anchors' renders ({e})"
        found = sum(1 for d in descriptors if d.size)
        if not found:
            return None, f"no face found in {len(picks)} renders of the anchors"
        dim = next(d.shape[1] for d in descriptors if d.size)
        centre, _ = dominant_identity([d if d.size else np.zeros((0, dim)) for d in descriptors])
        if centre is None:
            return None, f"no identity in {len(picks)} renders of the anchors"
        return [float(v) for v in centre], f"the dominant identity of {found} of {len(picks)} renders of the anchors"

    # ------------------------------------------------------------------ tasks (Python API)

    def space(self, beta: float | None = DEFAULT_BETA) -> PersonalSpace:
        """The person's :class:`~mystyle_pl.space.PersonalSpace` ``P_beta`` (``beta=0``: the convex hull)."""
        return PersonalSpace.from_prior(self, beta=beta)

    def as_images(self, img: Any, name: str = "img") -> torch.Tensor:
        """``[B, 3, H, W]`` float in ``[-1, 1]`` on the generator's device from a file path, a PIL image,
        a numpy array (read by :func:`~mystyle_pl.data.io.read_image`: EXIF orientation, alpha onto
        white, 16-bit, palette, CMYK; uint8 / uint16 / float in ``[0, 1]`` arrays ``[H, W(, C)]``),
        a tensor ``[3, H, W]`` / ``[B, 3, H, W]`` in ``[-1, 1]``, or a list of any of these (same size).

        Raises ``ValueError`` for anything else."""
        device = self.generator.w_avg.device
        if isinstance(img, (list, tuple)):
            if not img:
                raise ValueError(f"{name} is an empty list")
            return torch.cat([self.as_images(i, name=f"{name}[{k}]") for k, i in enumerate(img)])
        if isinstance(img, torch.Tensor):
            x = img[None] if img.ndim == 3 else img
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(
                    f"{name} must be a tensor [3, H, W] or [B, 3, H, W] in [-1, 1], got {tuple(img.shape)}"
                )
            return x.to(device=device, dtype=torch.float32)
        try:
            return to_tensor(read_image(img, name=name), device=device)
        except TypeError:
            raise ValueError(
                f"{name}: expected a PIL image, a path, a numpy array or a tensor, got {type(img).__name__}"
            ) from None

    def run(self, task: Any, *inputs: Any, lpips: Any = None, **kwargs: Any) -> Any:
        """Run ``task`` (a task object of :mod:`mystyle_pl.tasks`, e.g. ``SuperResolve(blind=True)``, or a
        task name such as ``"colorize"``: that task with its defaults) on ``inputs`` in any form the
        task takes from Python (images: paths, PIL images, arrays, tensors; see :meth:`as_images`).
        ``lpips``: a shared LPIPS module; ``kwargs`` go to the task's call (e.g. ``factor=8``).

        Raises ``ValueError`` for an unknown task name."""
        if isinstance(task, str):
            task = self._task(task, None, {})
        args, kwargs = task.python_inputs(self, *inputs, **kwargs)
        return task.bind(self, lpips=lpips)(*args, **kwargs)

    def _task(self, name: str, preset: str | None, kw: dict[str, Any]) -> Any:
        """The task object named ``name`` built from the shortcuts' keywords (``settings=`` is the
        projection settings instead of a preset)."""
        if name not in TASK_TYPES:
            known = ", ".join(sorted(TASK_TYPES)) or "none (import mystyle_pl.tasks)"
            raise ValueError(f"unknown task {name!r}; known tasks: {known}")
        kw = dict(kw)
        if kw.get("settings") is not None:
            kw["projection"] = kw.pop("settings")
        kw.pop("settings", None)
        if preset is not None:
            if kw.get("projection") is not None:
                raise ValueError("pass either preset= or settings= / projection=, not both")
            kw["preset"] = preset
        return TASK_TYPES[name](**kw)

    def invert(self, img: Any, preset: str | None = None, lpips: Any = None, **kw: Any) -> Any:
        """Project photo(s) into the person's space (``D`` = identity) -> :class:`~mystyle_pl.tasks.invert.InvertResult`.

        ``img``: PIL image, path, tensor ``[3, H, W]`` / ``[B, 3, H, W]`` in ``[-1, 1]`` (or a list);
        ``preset``: the projection budget (:mod:`mystyle_pl.tasks.presets`: ``quick`` (default), ``full``,
        ``pplus``, ``official``), as in ``predict`` and ``evaluate``; ``lpips``: a shared LPIPS module;
        ``kw``: :class:`~mystyle_pl.tasks.invert.Invert` arguments (``beta``, ``settings`` instead of a
        preset, ``ProjectionSettings`` fields such as ``steps`` over the preset's values).
        """
        return self.run(self._task("invert", preset, kw), img, lpips=lpips)

    def inpaint(self, img: Any, mask: Any, preset: str | None = None, lpips: Any = None, **kw: Any) -> Any:
        """Fill the hole of photo(s) -> :class:`~mystyle_pl.tasks.inpaint.InpaintResult`.

        ``mask``: an image file, PIL image or uint8 array (**white = hole**; transparency and colour
        masks as :func:`~mystyle_pl.data.io.read_mask` says), boxes ``[(x0, y0, x1, y1), ...]`` (holes),
        or a tensor ``[B or 1, 1, H, W]`` with **1 = known pixel, 0 = hole**; a mask leaving less than
        a quarter of the face known warns (wrong polarity?). ``preset`` and ``kw`` as :meth:`invert`
        (``kw``: :class:`Inpaint` arguments, e.g. ``feather``). ``.consistency``: PSNR (dB) of the
        projection on the known pixels, before blending.
        """
        return self.run(self._task("inpaint", preset, kw), img, mask, lpips=lpips)

    def super_resolve(
        self, img: Any, factor: int | None = None, preset: str | None = None, lpips: Any = None, **kw: Any
    ) -> Any:
        """Super-resolve low-resolution photo(s) ``h x h`` to the generator's resolution (``R / h`` in 2..32)
        -> :class:`~mystyle_pl.tasks.superres.SuperResolveResult` (``.images`` back-projected so that
        ``D(result)`` reproduces the input, ``.raw`` the projection before, ``.consistency`` /
        ``.raw_consistency`` in dB). ``preset`` and ``kw`` as :meth:`invert` (``kw``: :class:`SuperResolve`
        arguments, e.g. ``blind=True`` for real degraded photos, ``back_projection=0``)."""
        return self.run(self._task("superres", preset, kw), img, factor=factor, lpips=lpips)

    def colorize(self, img: Any, preset: str | None = None, lpips: Any = None, **kw: Any) -> Any:
        """Colour grayscale photo(s) -> :class:`~mystyle_pl.tasks.colorize.ColorizeResult` (``D`` = RGB ->
        BT.601 luminance; ``.images`` keeps the input's luminance, ``.raw`` is the projection).
        ``preset`` and ``kw`` as :meth:`invert` (``kw``: :class:`Colorize` arguments)."""
        return self.run(self._task("colorize", preset, kw), img, lpips=lpips)

    def edit(
        self, img: Any, direction: Any, strengths: Any = (-2.0, -1.0, 0.0, 1.0, 2.0), preset: str | None = None,
        lpips: Any = None, **kw: Any,
    ) -> Any:  # fmt: skip
        """Edit photo(s) along a W direction (tensor, ``.pt``/``.npy`` path, or principal direction index)
        at each strength -> :class:`~mystyle_pl.tasks.edit.EditResult`. ``preset``: as :meth:`invert`, but
        ``pplus`` by default (as ``predict``'s edit: the edit policies keep results in the person's space);
        ``kw``: :class:`Edit` arguments (``policy='continue'|'stop'|'project'``, ``layers``, projection settings)."""
        return self.run(self._task("edit", preset, kw), img, direction, strengths, lpips=lpips)

    def sample(self, n: int, seed: int | None = None, **kw: Any) -> Any:
        """``n`` new photos of the person -> :class:`~mystyle_pl.tasks.sample.SampleResult`.
        ``kw``: :class:`~mystyle_pl.tasks.sample.Sample` arguments (``k``, ``method``, ...)."""
        return self.run(self._task("sample", None, kw), n, seed=seed)

    @staticmethod
    def is_bundle(path: str | os.PathLike) -> bool:
        path = Path(path)
        return path.is_dir() and (path / INFO_FILE).is_file()
