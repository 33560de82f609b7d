"""``mystyle-pl prepare``: a folder of raw photos -> a curated, FFHQ-aligned personal album.

``prepare_album(RAW_DIR, ALBUM_DIR)`` runs three stages:

1. **analyse** every new or changed file (worker processes): read it robustly, detect every
   face, predict and refine 68 landmarks, compute a 128-d descriptor, and measure each face's
   size, crop region and sharpness. A file that cannot be read is recorded, never raised.
2. **curate** the whole folder at once (:mod:`mystyle_pl.data.curate`): the dominant identity,
   and for every file "kept" or the first rule it fails.
3. **align** every kept photo that has no up-to-date output (worker processes) and write
   ``ALBUM_DIR/images/<name>.png`` atomically.

Then ``ALBUM_DIR/manifest.json`` (written atomically) records every input file: kept or
rejected with the reason, the transform (quad in source pixels, source size and file) and
landmarks of the face used, every face's measurements and descriptor, the distance to the
identity centre, the settings and the version. A re-run reuses the analysis of files whose
size and modification time are unchanged and rewrites only outputs whose source, face or
resolution changed, so only new or changed files are processed. The manifest, the album's folder layout and
the output names are :mod:`mystyle_pl.data.manifest`'s.

Nothing is ever written into, moved out of or deleted from ``RAW_DIR``; ``ALBUM_DIR`` must not
lie inside it (nor it inside ``ALBUM_DIR``). The only files removed are outputs of an earlier
run that are no longer kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from .align import align_face, face_mask
from .curate import REASONS, CurationSettings, FaceStats, PhotoStats, curate, identity_share, identity_warning, laplacian_variance
from .faces import FaceAnalyzer, check_face_models
from .io import DEFAULT_MAX_PIXELS, ImageReadError, decode_image, write_image
from .manifest import (  # re-exported: the album record's names are imported from here too
    IMAGES_DIR,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PrepareError,
    album_transforms,
    assign_output_names,
    build_manifest,
    check_folders,
    is_own_output,
    load_manifest,
    load_previous,
    scan_folder,
    write_manifest,
)

__all__ = [
    "IMAGES_DIR",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PrepareError",
    "PrepareResult",
    "album_transforms",
    "assign_output_names",
    "default_workers",
    "load_manifest",
    "prepare_album",
    "scan_folder",
    "write_manifest",
]

# Bump when the analysis or the alignment code changes what it produces: stored results of an
# older version are then recomputed instead of reused.
ANALYSIS_VERSION = 1
ALIGN_VERSION = 1
SHARPNESS_RESOLUTION = 256  # sharpness is measured on the aligned face at this size (or smaller, native)


@dataclass
class PrepareResult:
    album_dir: Path
    manifest: dict
    kept: int
    rejected: Counter
    analysed: int  # files analysed in this run
    reused: int  # files whose earlier analysis was reused
    aligned: int  # images written in this run
    seconds: float

    def summary(self) -> str:
        total = self.kept + sum(self.rejected.values())
        lines = [f"prepared {self.album_dir}: {total} files, {self.kept} kept, {sum(self.rejected.values())} rejected"]
        if self.rejected:
            lines.append("  rejected: " + ", ".join(f"{r} {self.rejected[r]}" for r in REASONS if self.rejected[r]))
        per = f"; {self.seconds / self.analysed:.2f} s per analysed photo" if self.analysed else ""
        lines.append(f"  analysed {self.analysed}, reused {self.reused} unchanged, wrote {self.aligned} images "
                     f"in {self.seconds:.1f} s{per}")  # fmt: skip
        identity = self.manifest.get("identity") or {}
        if identity.get("photos"):
            lines.append(f"  identity: {identity['photos']} photos, median distance to the centre "
                         f"{identity['median_distance']:.3f} (threshold {identity['threshold']})")  # fmt: skip
        if identity.get("warning"):
            lines.append(f"  warning: {identity['warning']}")
        lines.append(f"  album: {self.album_dir / IMAGES_DIR}/ and {self.album_dir / MANIFEST_NAME}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# worker side (module-level functions: they run in spawned processes)

_WORKER: dict[str, Any] = {}


def _init_worker(analyzer_kwargs: dict, max_pixels: int | None) -> None:
    _WORKER["analyzer"] = FaceAnalyzer(**analyzer_kwargs)
    _WORKER["max_pixels"] = max_pixels


def _analyse_file(path: str) -> dict:
    """Read and analyse one photo; never raises for a bad photo (the error is the result)."""
    result: dict[str, Any] = {"sha256": None, "image_size": None, "error": None, "faces": []}
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        result["error"] = f"cannot read the file ({e.strerror or e})"
        return result
    result["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(data, name=path, max_pixels=_WORKER["max_pixels"])
    except ImageReadError as e:
        result["error"] = e.reason
        return result
    result["image_size"] = [int(image.shape[1]), int(image.shape[0])]
    try:
        faces = _WORKER["analyzer"].analyze(image)
    except Exception as e:  # a photo that breaks the detector is rejected, not fatal
        result["error"] = f"face analysis failed ({type(e).__name__}: {e})"
        return result
    for face in faces:
        try:
            result["faces"].append(_face_record(image, face))
        except ValueError:  # degenerate landmarks (e.g. a false detection): skip that face
            continue
    return result


def _face_record(image: np.ndarray, face) -> dict:
    _, transform = align_face(image, face.landmarks, 8)  # geometry only (tiny output)
    side = int(max(16, min(SHARPNESS_RESOLUTION, round(transform.face_size))))
    aligned, _ = align_face(image, face.landmarks, side)
    mask = _sharpness_mask(side)
    return {
        "box": face.box.to_list(),
        "score": round(float(face.box.score), 4),
        "face_size": round(float(face.box.size), 2),
        "crop_size": round(transform.crop_size, 2),
        "sharpness": round(laplacian_variance(aligned, mask), 3),
        "landmarks": np.round(face.landmarks, 3).tolist(),
        "descriptor": [round(float(v), 6) for v in face.descriptor],
    }


@functools.lru_cache(maxsize=8)
def _sharpness_mask(side: int) -> np.ndarray:
    return face_mask(side)[0, 0].numpy() > 0.5


def _align_file(path: str, landmarks: list, resolution: int, out_path: str, source_file: str, max_pixels: int | None) -> dict:
    image = decode_image(Path(path).read_bytes(), name=path, max_pixels=max_pixels)
    aligned, transform = align_face(image, np.asarray(landmarks), resolution, source_file=source_file)
    write_image(out_path, aligned)
    return transform.to_dict()


# ----------------------------------------------------------------------------------------
# running work in-process or on a pool


class _Runner:
    def __init__(self, workers: int, analyzer_kwargs: dict, max_pixels: int | None):
        self.workers = workers
        self.pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork: the parent may hold torch threads
            self.pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                               initargs=(analyzer_kwargs, max_pixels))  # fmt: skip
        else:
            _init_worker(analyzer_kwargs, max_pixels)

    def map(self, fn: Callable, jobs: list[tuple], desc: str, progress: bool) -> Iterable[tuple[int, Any, BaseException | None]]:
        """Yield ``(job index, result, exception)`` as jobs finish, with a progress bar."""
        bar = tqdm(total=len(jobs), desc=desc, unit="photo", disable=not progress or not jobs, leave=False)
        try:
            if self.pool is None:
                for i, args in enumerate(jobs):
                    try:
                        yield i, fn(*args), None
                    except Exception as e:
                        yield i, None, e
                    bar.update()
            else:
                futures = {self.pool.submit(fn, *args): i for i, args in enumerate(jobs)}
                for fut in cf.as_completed(futures):
                    exc = fut.exception()
                    yield futures[fut], (None if exc else fut.result()), exc
                    bar.update()
        finally:
            bar.close()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------
# the pipeline


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def prepare_album(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    resolution: int = 1024,
    workers: int | None = None,
    curation: CurationSettings | None = None,
    analyzer_kwargs: dict | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Prepare (or update) the album ``output_dir`` from the photos in ``input_dir``.

    ``resolution``: side of the aligned images (px); ``workers``: processes for analysis and
    alignment (None = CPU count up to 8; 0 or 1 = in this process); ``curation``: the rules
    (None = the defaults);
    ``analyzer_kwargs``: arguments of :class:`~mystyle_pl.data.faces.FaceAnalyzer`;
    ``max_pixels``: decompression-bomb limit per photo; ``log``: where warnings go (stderr).
    """
    start = time.perf_counter()
    curation = curation if curation is not None else CurationSettings()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    src, album = check_folders(input_dir, output_dir)
    if resolution < 8:
        raise PrepareError(f"--resolution must be at least 8 px, got {resolution}")
    check_face_models()  # fail once, clearly, instead of rejecting every photo
    analyzer_kwargs = dict(analyzer_kwargs or {})
    analyzer_settings = {**FaceAnalyzer(**analyzer_kwargs).settings(), "version": ANALYSIS_VERSION, "max_pixels": max_pixels}
    images_dir = album / IMAGES_DIR
    previous = load_previous(album, src, log)
    prev_entries = {e["file"]: e for e in previous.get("files", [])} if previous else {}
    reuse_analysis = bool(previous) and previous.get("settings", {}).get("analysis") == analyzer_settings

    # 1. scan and analyse
    files = scan_folder(src)
    entries: list[dict] = []
    jobs: list[tuple[int, str]] = []
    reused = 0
    for rel in files:
        path = src / rel
        try:
            st = path.stat()
            entry = {"file": rel, "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError as e:
            entries.append({"file": rel, "size_bytes": None, "mtime_ns": None, "sha256": None, "image_size": None,
                            "error": f"cannot access the file ({e.strerror or e})", "faces": []})  # fmt: skip
            continue
        prev = prev_entries.get(rel)
        if reuse_analysis and prev and prev.get("size_bytes") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            entry.update({k: prev.get(k) for k in ("sha256", "image_size", "error", "faces")})
            reused += 1
        else:
            jobs.append((len(entries), str(path)))
        entries.append(entry)

    workers = default_workers() if workers is None else max(0, int(workers))
    workers = min(workers, max(len(jobs), 1))
    runner = _Runner(workers, analyzer_kwargs, max_pixels) if jobs else None
    try:
        if runner is not None:
            for i, result, exc in runner.map(_analyse_file, [(p,) for _, p in jobs], "analysing", progress):
                index = jobs[i][0]
                if exc is not None:  # a crash inside a worker (e.g. killed): reject this file, keep going
                    result = {"sha256": None, "image_size": None, "error": f"analysis crashed ({type(exc).__name__}: {exc})", "faces": []}
                entries[index].update(result)

        # 2. curate
        photos = [
            PhotoStats(
                name=e["file"],
                faces=[FaceStats(f["face_size"], f["crop_size"], f["sharpness"], np.asarray(f["descriptor"])) for f in e["faces"]],
                error=e["error"],
            )
            for e in entries
        ]
        decisions, centre = curate(photos, curation)
        share = identity_share(decisions)
        no_dominant = identity_warning(decisions)
        if no_dominant:
            log(f"warning: {src}: {no_dominant}")
        for entry, decision in zip(entries, decisions):
            for f in entry["faces"]:
                f["distance"] = None if centre is None else round(float(np.linalg.norm(np.asarray(f["descriptor"]) - centre)), 4)
            entry.update({
                "status": "kept" if decision.kept else "rejected",
                "reason": decision.reason,
                "detail": decision.detail,
                "face_index": decision.face_index,
                "distance": None if decision.distance is None else round(decision.distance, 4),
                "duplicate_of": decision.duplicate_of,
            })  # fmt: skip

        # 3. align what is kept and not already up to date
        names = assign_output_names([e["file"] for e in entries if e["status"] == "kept"],
                                    {f: e.get("output") for f, e in prev_entries.items()})  # fmt: skip
        align_jobs, align_index = [], []
        for index, entry in enumerate(entries):
            entry.setdefault("output", None)
            entry.setdefault("transform", None)
            entry["landmarks"] = None
            if entry["status"] != "kept":
                entry["output"], entry["transform"] = None, None
                continue
            face = entry["faces"][entry["face_index"]]
            entry["landmarks"] = face["landmarks"]
            entry["output"] = f"{IMAGES_DIR}/{names[entry['file']]}"
            prev = prev_entries.get(entry["file"])
            if (
                prev
                and prev.get("output") == entry["output"]
                and prev.get("sha256") == entry["sha256"]
                and prev.get("landmarks") == entry["landmarks"]
                and (prev.get("transform") or {}).get("resolution") == resolution
                and previous.get("settings", {}).get("align_version") == ALIGN_VERSION
                and (album / entry["output"]).is_file()
            ):
                entry["transform"] = prev["transform"]
                continue
            align_index.append(index)
            align_jobs.append((str(src / entry["file"]), entry["landmarks"], resolution, str(album / entry["output"]),
                               entry["file"], max_pixels))  # fmt: skip
        # Remove outputs of earlier runs that are no longer kept (only files this tool wrote), then
        # record the planned outputs: an interrupted run still knows which files it wrote.
        current = {e["output"] for e in entries if e["output"]}
        for prev in prev_entries.values():
            out = prev.get("output")
            if out and out not in current and is_own_output(out):
                (album / out).unlink(missing_ok=True)
        settings = _settings(resolution, analyzer_settings, curation)
        write_manifest(album, build_manifest(entries, centre, curation, settings, src, previous, share, no_dominant))
        if align_jobs and runner is None:
            runner = _Runner(min(workers, len(align_jobs)), analyzer_kwargs, max_pixels)
        aligned = 0
        if align_jobs:
            images_dir.mkdir(parents=True, exist_ok=True)
            for i, transform, exc in runner.map(_align_file, align_jobs, "aligning", progress):
                entry = entries[align_index[i]]
                if exc is not None:  # e.g. the file changed or vanished since it was analysed
                    (album / entry["output"]).unlink(missing_ok=True)
                    entry.update({"status": "rejected", "reason": "unreadable", "output": None, "transform": None,
                                  "detail": f"alignment failed ({type(exc).__name__}: {exc})"})  # fmt: skip
                    continue
                entry["transform"] = transform
                aligned += 1
    finally:
        if runner is not None:
            runner.close()

    # 4. the manifest
    manifest = build_manifest(entries, centre, curation, _settings(resolution, analyzer_settings, curation), src, previous,
                               share, no_dominant)  # fmt: skip
    write_manifest(album, manifest)
    kept = sum(e["status"] == "kept" for e in entries)
    rejected = Counter(e["reason"] for e in entries if e["status"] != "kept")
    return PrepareResult(album, manifest, kept, rejected, len(jobs), reused, aligned, time.perf_counter() - start)


def _settings(resolution: int, analyzer_settings: dict, curation: CurationSettings) -> dict:
    return {"resolution": resolution, "align": "ffhq", "align_version": ALIGN_VERSION, "analysis": analyzer_settings,
            "curation": curation.to_dict()}  # fmt: skip
