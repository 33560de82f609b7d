"""The album's record: its folder layout (``images/``, ``manifest.json``), the manifest that
``prepare`` writes (every input file kept or rejected, the transforms, the identity centre), and
the folder checks and stable output names ``prepare`` uses (:mod:`mystyle_pl.data.prepare` runs
the pipeline). Reading a manifest needs none of the analysis: ``load_manifest``, ``album_transforms``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from .._version import __version__
from .align import AlignTransform
from .curate import REASONS, CurationSettings
from .io import write_bytes_atomic

MANIFEST_NAME = "manifest.json"
IMAGES_DIR = "images"
MANIFEST_FORMAT = "mystyle_pl.album"
MANIFEST_VERSION = 1


class PrepareError(ValueError):
    """The folders given to ``prepare`` cannot be used (the message says why)."""


def build_manifest(entries: list[dict], centre, curation: CurationSettings, settings: dict, src: Path, previous,
                    share: tuple[int, int] = (0, 0), warning: str | None = None) -> dict:
    kept_entries = [e for e in entries if e.get("status") == "kept"]
    distances = [e["distance"] for e in kept_entries if e.get("distance") is not None]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "mystyle_pl_version": __version__,
        "created": (previous or {}).get("created", now),
        "updated": now,
        "input_dir": str(src),
        "settings": settings,
        "identity": {
            "photos": len(kept_entries),
            "threshold": curation.identity_threshold,
            "median_distance": float(np.median(distances)) if distances else None,
            "centre": None if centre is None else [round(float(v), 6) for v in centre],
            # photos of the person (kept + duplicates) / photos with a usable face; warning: no dominant person
            "share": {"person": share[0], "usable": share[1]},
            "warning": warning,
        },
        "summary": {
            "files": len(entries),
            "kept": len(kept_entries),
            "rejected": {r: n for r in REASONS if (n := sum(e.get("reason") == r for e in entries))},
            "warnings": [warning] if warning else [],
        },
        "files": [_ordered_entry(e) for e in entries],
    }


def write_manifest(album: Path, manifest: dict) -> Path:
    album.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(album / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


_ENTRY_KEYS = ("file", "status", "reason", "detail", "output", "distance", "duplicate_of", "face_index", "image_size",
               "transform", "landmarks", "sha256", "size_bytes", "mtime_ns", "error", "faces")  # fmt: skip


def _ordered_entry(e: dict) -> dict:
    return {k: e.get(k) for k in _ENTRY_KEYS}


# ----------------------------------------------------------------------------------------
# folders, names, manifests


def check_folders(input_dir, output_dir) -> tuple[Path, Path]:
    src = Path(input_dir).expanduser()
    album = Path(output_dir).expanduser()
    if not src.is_dir():
        raise PrepareError(f"input folder not found: {src}")
    src, album = src.resolve(), album.resolve()
    if album == src or src in album.parents:
        raise PrepareError(f"the album folder {album} must not be inside the input folder {src} "
                           "(prepare never writes into the photos' folder)")  # fmt: skip
    if album in src.parents:
        raise PrepareError(f"the input folder {src} must not be inside the album folder {album}")
    if album.exists() and not album.is_dir():
        raise PrepareError(f"the album path {album} exists and is not a folder")
    return src, album


def scan_folder(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (recursively; hidden files and folders skipped), as
    sorted POSIX paths relative to it."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_file():
                found.append(path.relative_to(folder).as_posix())
    return sorted(found)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def assign_output_names(files: list[str], previous: dict[str, str | None] | None = None) -> dict[str, str]:
    """Stable, unique PNG names for kept files: ``IMG_0001.jpg`` -> ``IMG_0001.png``.

    A file keeps the name an earlier run gave it. Files in sub-folders get the folder in the
    name (``2019/a.jpg`` -> ``2019__a.png``); when two files would share a name (``a.jpg`` and
    ``a.png``) the suffix is added (``a_jpg.png``), and a short hash of the path if still needed.

    >>> assign_output_names(["a.jpg", "a.png", "sub/b.jpeg"])
    {'a.jpg': 'a_jpg.png', 'a.png': 'a_png.png', 'sub/b.jpeg': 'sub__b.png'}
    """
    previous = previous or {}
    out: dict[str, str] = {}
    taken: set[str] = set()
    for f in files:  # earlier names first, so that they never move
        prev = previous.get(f)
        if prev and is_own_output(prev):
            name = prev.split("/", 1)[1]
            if name.lower() not in taken:
                out[f] = name
                taken.add(name.lower())
    stems: Counter = Counter(_stem(f).lower() for f in files)
    for f in sorted(files):
        if f in out:
            continue
        stem = _stem(f)
        candidates = [stem] if stems[stem.lower()] == 1 else []
        candidates += [f"{stem}_{_UNSAFE.sub('_', Path(f).suffix.lstrip('.')) or 'file'}",
                       f"{stem}-{hashlib.sha1(f.encode()).hexdigest()[:8]}"]  # fmt: skip
        for c in candidates:
            if f"{c}.png".lower() not in taken:
                out[f] = f"{c}.png"
                taken.add(out[f].lower())
                break
    return dict(sorted(out.items()))


def _stem(rel: str) -> str:
    p = Path(rel)
    parts = [*p.parent.parts, p.stem] if p.parent != Path(".") else [p.stem]
    return _UNSAFE.sub("_", "__".join(parts)).strip("_") or "photo"


def is_own_output(rel: str) -> bool:
    return bool(re.fullmatch(rf"{IMAGES_DIR}/[A-Za-z0-9._-]+\.png", rel)) and ".." not in rel


def load_previous(album: Path, src: Path, log) -> dict | None:
    path = album / MANIFEST_NAME
    images = album / IMAGES_DIR
    if not path.is_file():
        if images.is_dir() and any(images.iterdir()):
            raise PrepareError(f"{images} already holds files but {path} is missing: choose an empty or new album folder")
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PrepareError(f"{path} is not a readable manifest ({e}); move it away to start the album afresh") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise PrepareError(f"{path} is not a mystyle-pl album manifest; choose another album folder")
    if manifest.get("version") != MANIFEST_VERSION:
        log(f"warning: {path} has manifest version {manifest.get('version')}; every photo is processed again")
        return {"files": [{"file": e.get("file"), "output": e.get("output")} for e in manifest.get("files", [])]}
    if manifest.get("input_dir") != str(src):
        log(f"warning: {album} was prepared from {manifest.get('input_dir')}, not {src}; every photo is processed again")
        return {"files": [{"file": e.get("file"), "output": e.get("output")} for e in manifest.get("files", [])]}
    return manifest


def load_manifest(album_dir: str | os.PathLike) -> dict:
    """The manifest of a prepared album (raises ``FileNotFoundError``/``ValueError`` with the path)."""
    path = Path(album_dir) / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a mystyle-pl album manifest")
    return manifest


def album_identity_centres(
    album: str | os.PathLike, prior_dir: str | os.PathLike | None = None
) -> Iterator[tuple[Path, list | None, Exception | None]]:
    """Where a prior's album may be (``album`` as given, then beside ``prior_dir`` when relative), in
    order: ``(folder, its manifest's identity centre or None, the error reading the manifest or None)``.
    Callers stop at the first centre and word the misses themselves."""
    candidates = [Path(album)]
    if not Path(album).is_absolute() and prior_dir is not None:
        candidates.append(Path(prior_dir).parent / album)
    for folder in candidates:
        try:
            centre = (load_manifest(folder).get("identity") or {}).get("centre")
        except (OSError, ValueError) as e:
            yield folder, None, e
            continue
        yield folder, centre, None


def album_transforms(album_dir: str | os.PathLike) -> dict[str, AlignTransform]:
    """``{image file name in images/: AlignTransform}`` for every kept photo of an album."""
    manifest = load_manifest(album_dir)
    return {
        e["output"].split("/", 1)[1]: AlignTransform.from_dict(e["transform"])
        for e in manifest["files"]
        if e.get("status") == "kept" and e.get("output") and e.get("transform")
    }
