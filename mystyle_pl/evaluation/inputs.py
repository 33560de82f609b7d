"""What is evaluated: the options' vocabulary, the held-out photos and the real pairs.

* :data:`TASK_GROUPS`, :data:`CONDITIONS`, :data:`METHODS`, :data:`DEFAULT_TASKS`, :data:`DEFAULT_BETAS`:
  the conditions, methods and betas one can ask for;
* :func:`list_photos`, :func:`parse_pair`, :func:`expand_tasks`, :func:`parse_betas`: the command-line
  style arguments -> files, conditions, betas; :func:`condition_kind` and :func:`methods_for`: which task
  a condition runs and which methods apply to it;
* :class:`Photo` (one loaded ground truth) and :class:`Condition` (one degradation over every photo);
* ``_load_photos`` / ``_load_pairs`` / ``_held_out_from_prior``: the images to evaluate on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..imaging import IMAGE_SUFFIXES
from ..tasks import Colorize, Inpaint, Invert, SuperResolve
from ..tasks.pasteback import NoFaceError, load_task_photo

log = logging.getLogger(__name__)  # under "mystyle_pl.evaluation", whose level the CLI sets

TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "invert": ("invert",),
    "superres": ("superres-x8", "superres-x16"),
    "inpaint": ("inpaint-eyes", "inpaint-mouth", "inpaint-irregular"),
    "blind": ("blind",),
    "colorize": ("colorize",),
}
CONDITIONS: dict[str, str] = {
    "invert": "held-out inversion (D = identity): the photo itself at the generator's resolution, the upper bound "
    "of every other task",
    "superres-x8": "super-resolution x8: area down-sampling by 8",
    "superres-x16": "super-resolution x16: area down-sampling by 16",
    "blind": "blind restoration: blur + down-sampling + noise + JPEG (seeded), resized back",
    "inpaint-eyes": "inpainting: a box over both eyes",
    "inpaint-mouth": "inpainting: a box over the mouth",
    "inpaint-irregular": "inpainting: seeded irregular brush strokes over the face",
    "real": "real degraded photos with a ground truth (pairs), restored by blind super-resolution",
    "colorize": "colourisation: the photo's ITU-R BT.601 luminance (D = RGB -> gray), at the generator's resolution",
}
# The task object each kind of condition runs (evaluation.runner builds it with the run's projection settings).
CONDITION_TASKS: dict[str, type] = {
    "invert": Invert, "superres": SuperResolve, "blind": SuperResolve, "inpaint": Inpaint, "colorize": Colorize,
}
METHODS = ("personal", "personal-raw", "generic", "baseline")
DEFAULT_TASKS = ("invert", "superres", "inpaint", "blind")
DEFAULT_BETAS = (0.0, 0.03, 0.1, 0.3)


@dataclass
class Photo:
    name: str  # unique name (file stem)
    path: Path | None
    image: torch.Tensor  # [3, S, S] in [-1, 1], S = max(generator resolution, evaluation resolution)
    degraded: torch.Tensor | None = None  # pairs: the real degraded photo [3, S, S]


@dataclass
class Condition:
    """One degradation applied to every photo: what each method sees and what it is scored against."""

    name: str
    kind: str  # "invert" | "superres" | "blind" | "inpaint" | "colorize" (condition_kind)
    photos: list[str]
    gt: torch.Tensor  # [N, 3, E, E] ground truth at the evaluation resolution
    observed: torch.Tensor  # what the methods restore: [N, 3, h, h] (superres/blind) or [N, 3, R, R] (inpaint, invert,
    # colorize)
    shown: torch.Tensor  # [N, 3, E, E] the degraded input as shown in the strips
    full: torch.Tensor | None = None  # inpaint: the photos at the generator's resolution [N, 3, R, R]
    mask: torch.Tensor | None = None  # inpaint: [1, 1, R, R], 1 = known pixel, 0 = hole
    factor: int | None = None  # superres/blind: E / h
    extra: dict = field(default_factory=dict)  # per-condition facts for the report (e.g. blind parameters)


def condition_kind(name: str) -> str:
    """The task a condition runs: ``"invert"``, ``"superres"``, ``"blind"`` (blind and real), ``"inpaint"``
    or ``"colorize"``. Raises ``ValueError`` for an unknown condition."""
    if name in ("invert", "colorize"):
        return name
    if name.startswith("superres-x"):
        return "superres"
    if name in ("blind", "real"):
        return "blind"
    if name.startswith("inpaint-"):
        return "inpaint"
    raise ValueError(f"unknown condition {name!r}")


def methods_for(kind: str, methods: Sequence[str]) -> list[str]:
    """The methods that make sense on a condition of ``kind``, in order: ``personal-raw`` only where a
    back-projection makes the personal result data-consistent (super-resolution, blind), no
    ``baseline`` for inversion (the input is the truth)."""
    drop = {"invert": {"personal-raw", "baseline"}, "inpaint": {"personal-raw"}}.get(kind, set())
    return [m for m in methods if m not in drop]


def list_photos(photos) -> list[Path]:
    """Image files of a folder (sorted, not recursive) or the given files."""
    if photos is None:
        return []
    if isinstance(photos, (str, os.PathLike)):
        path = Path(photos)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
            return files
        if path.is_file():
            return [path]
        raise FileNotFoundError(f"held-out photos: {path} is neither a folder nor a file")
    return [p for item in photos for p in list_photos(item)]


def parse_pair(spec) -> tuple[Path, Path]:
    """``"DEGRADED:GT"``, a ``(degraded, gt)`` tuple, or a folder holding ``degraded.png`` and ``gt.png``."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f"a pair is (degraded, gt), got {spec!r}")
        degraded, gt = Path(spec[0]), Path(spec[1])
    elif Path(spec).is_dir():
        degraded, gt = Path(spec) / "degraded.png", Path(spec) / "gt.png"
    elif ":" in str(spec):
        a, b = str(spec).rsplit(":", 1)
        degraded, gt = Path(a), Path(b)
    else:
        raise ValueError(f"--pairs {spec!r}: expected DEGRADED:GT or a folder with degraded.png and gt.png")
    for p in (degraded, gt):
        if not p.is_file():
            raise FileNotFoundError(f"pair {spec}: {p} not found")
    return degraded, gt


def expand_tasks(tasks) -> list[str]:
    """Task groups / condition names (list or comma-separated string) -> condition names, in order."""
    if isinstance(tasks, str):
        tasks = [t for t in tasks.replace(" ", "").split(",") if t]
    out: list[str] = []
    for t in tasks:
        names = TASK_GROUPS.get(t, (t,))
        for name in names:
            if name not in CONDITIONS or name == "real":
                choices = ", ".join([*TASK_GROUPS, *[c for c in CONDITIONS if c != "real"]])
                raise ValueError(f"unknown task {t!r}; choose from {choices} (real pairs come from --pairs)")
            if name not in out:
                out.append(name)
    return out


def parse_betas(betas) -> list[float | None]:
    """``"0,0.03,0.1,0.3"`` or a list -> betas; ``none`` = the affine hull (no dilation limit)."""
    if betas is None:
        return []
    if isinstance(betas, str):
        betas = [b for b in betas.replace(" ", "").split(",") if b]
    out = []
    for b in betas:
        if b is None or (isinstance(b, str) and b.lower() in ("none", "affine")):
            out.append(None)
        else:
            value = float(b)
            if value < 0:
                raise ValueError(f"beta must be >= 0 (or 'none'), got {value}")
            out.append(value)
    return out



def parse_beta(text) -> float | None:
    """One beta (``--beta``): a number >= 0, or ``none`` (the affine hull); ``ValueError`` otherwise."""
    values = parse_betas(text)
    if len(values) != 1:
        raise ValueError(f"--beta takes one value, got {text!r}")
    return values[0]


def parse_pull(text) -> tuple[float, float, float]:
    """``--pull``: three weights >= 0, coarse / middle / fine layer groups (``"1,1,0.03"`` or a sequence)
    of the W+ projection's pull toward the person's space; ``ValueError`` otherwise."""
    values = [v for v in text.replace(" ", "").split(",") if v] if isinstance(text, str) else list(text)
    try:
        pull = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"--pull takes three numbers (coarse,middle,fine), got {text!r}") from None
    if len(pull) != 3 or min(pull) < 0:
        raise ValueError(f"--pull takes three numbers >= 0 (coarse,middle,fine), got {text!r}")
    return pull


def _load_photos(files: list[Path], size: int, align: str, skipped: dict) -> list[Photo]:
    stems = [f.stem for f in files]
    photos, used = [], set()
    for f in tqdm(files, desc="loading photos", leave=False, disable=len(files) < 4):
        try:
            tp = load_task_photo(f, size, align=align)
        except (NoFaceError, ValueError, OSError, MemoryError) as e:
            log.warning("skipping %s: %s", f, e)
            skipped[str(f)] = str(e).splitlines()[0]
            continue
        # files of the same name in different folders (e.g. */gt.png) are told apart by their folder
        base = f"{f.parent.name}_{f.stem}" if stems.count(f.stem) > 1 else f.stem
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        photos.append(Photo(name=name, path=f, image=tp.image.float().cpu()))
    return photos


def _load_pairs(pairs, size: int, skipped: dict) -> list[Photo]:
    out, used = [], set()
    for spec in pairs:
        degraded_path, gt_path = parse_pair(spec)
        try:  # both must be aligned crops of the same framing (face detection on the degraded one is unreliable)
            gt = load_task_photo(gt_path, size, align="never")
            degraded = load_task_photo(degraded_path, size, align="never")
        except (NoFaceError, ValueError, OSError) as e:
            log.warning("skipping pair %s: %s", spec, e)
            skipped[str(spec)] = str(e).splitlines()[0]
            continue
        name = gt_path.parent.name if gt_path.stem == "gt" else gt_path.stem
        k, base = 2, name
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out.append(Photo(name=name, path=gt_path, image=gt.image.float().cpu(), degraded=degraded.image.float().cpu()))
    return out


def _held_out_from_prior(prior) -> list[Path]:
    """The prior's held-out album photos (``info["held_out"]`` under ``info["album"]/images``), if reachable."""
    album, names = prior.info.get("album"), prior.info.get("held_out") or []
    if not album or not names:
        return []
    folder = Path(album) / "images"
    files = [folder / n for n in names if (folder / n).is_file()]
    if files:
        log.info("no --photos given: using the prior's %d held-out album photo(s) from %s", len(files), folder)
    return files
