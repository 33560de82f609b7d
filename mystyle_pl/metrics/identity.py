"""Identity metrics: does a result still show the person?

Each face is described by dlib's 128-d face-recognition descriptor (through
:class:`~mystyle_pl.data.faces.FaceAnalyzer`: detection, 68 landmarks refined in the FFHQ frame,
ResNet descriptor). A result is compared with a reference descriptor (its ground truth) and with
the album's identity centre (the mean descriptor of the person's photos):

* cosine similarity (higher = more alike) and Euclidean distance (lower = more alike);
* "same person": distance below dlib's threshold 0.6 (its LFW operating point).

A result in which no face is found is a **failure, not a skip**: its similarities and distances
are NaN and it counts as *not* the same person, so the same-person share is taken over every
result. Means and spreads of the similarities/distances are over the results with a face; the
number of those is reported next to them.

The descriptor can be replaced (``IdentityScorer(descriptor_fn=...)``), e.g. by a stub in tests
or another face-recognition network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.curate import dominant_identity
from ..data.faces import FaceAnalyzer
from ..data.io import read_image, to_uint8
from ..data.manifest import album_identity_centres
from ..imaging import image_files

SAME_PERSON_THRESHOLD = 0.6  # dlib's face-recognition ResNet: same person when the distance is below this

__all__ = [
    "SAME_PERSON_THRESHOLD",
    "IdentityScore",
    "IdentityScorer",
    "album_centre",
    "cosine_similarity",
    "euclidean_distance",
    "same_person_share",
    "summarize",
]


def _vector(v) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=np.float64).reshape(-1)


def cosine_similarity(a, b) -> float:
    """Cosine of the angle between two descriptors; NaN when either is missing (``None``) or zero.

    >>> cosine_similarity([1, 0], [1, 1])  # 45 degrees
    0.7071067811865475
    >>> cosine_similarity(None, [1, 1])
    nan
    """
    a, b = _vector(a), _vector(b)
    if a is None or b is None:
        return math.nan
    if a.shape != b.shape:
        raise ValueError(f"descriptors differ in size: {a.shape[0]} vs {b.shape[0]}")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else math.nan


def euclidean_distance(a, b) -> float:
    """Euclidean distance between two descriptors; NaN when either is missing (``None``).

    >>> euclidean_distance([0, 0], [3, 4])
    5.0
    """
    a, b = _vector(a), _vector(b)
    if a is None or b is None:
        return math.nan
    if a.shape != b.shape:
        raise ValueError(f"descriptors differ in size: {a.shape[0]} vs {b.shape[0]}")
    return float(np.linalg.norm(a - b))


def same_person_share(distances: Iterable[float | None], threshold: float = SAME_PERSON_THRESHOLD) -> float:
    """Share of distances below ``threshold``; a NaN/None distance (no face found) counts as *not*
    the same person. NaN for an empty list.

    >>> same_person_share([0.3, 0.59, 0.6, float("nan")])  # 0.6 itself is not below the threshold
    0.5
    """
    values = [math.nan if d is None else float(d) for d in distances]
    if not values:
        return math.nan
    return sum(1 for d in values if not math.isnan(d) and d < threshold) / len(values)


@dataclass
class IdentityScore:
    """The identity of one result against its reference and the album centre (NaN = unavailable)."""

    found: bool  # a face was found in the result (False = failure)
    cos_gt: float = math.nan  # cosine similarity to the reference (ground truth) descriptor
    dist_gt: float = math.nan  # Euclidean distance to the reference descriptor
    cos_centre: float = math.nan  # cosine similarity to the album's identity centre
    dist_centre: float = math.nan  # Euclidean distance to the album's identity centre
    threshold: float = SAME_PERSON_THRESHOLD  # same-person threshold on the distances

    @property
    def same_gt(self) -> bool:
        """Same person as the reference (False when no face was found or no reference exists)."""
        return not math.isnan(self.dist_gt) and self.dist_gt < self.threshold

    @property
    def same_centre(self) -> bool:
        """Same person as the album centre (False when no face was found or there is no centre)."""
        return not math.isnan(self.dist_centre) and self.dist_centre < self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "same_gt": self.same_gt, "same_centre": self.same_centre}


def _as_uint8(image) -> np.ndarray:
    """A uint8 RGB ``[H, W, 3]`` array from such an array or a tensor ``[3, H, W]`` / ``[1, 3, H, W]`` in [-1, 1]."""
    if isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"expected one image [3, H, W] or [1, 3, H, W] in [-1, 1], got {tuple(image.shape)}")
        return to_uint8(x)[0]
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


class IdentityScorer:
    """Describe faces and score results against a reference and the album's identity centre.

    ``scorer.describe(image)`` -> the descriptor of the most confident face, or ``None`` when no
    face is found; ``scorer.score(image, reference)`` -> :class:`IdentityScore`.
    """

    def __init__(
        self,
        analyzer=None,  # a FaceAnalyzer; None = dlib's default one (built on first use)
        descriptor_fn: Callable[[np.ndarray], np.ndarray | None] | None = None,  # uint8 [H, W, 3] -> [D] or
        # None (no face); replaces the analyzer entirely (stubs, another recognition network)
        centre: np.ndarray | Sequence[float] | None = None,  # the album's identity centre [D]; None = none
        threshold: float = SAME_PERSON_THRESHOLD,  # same-person threshold on the Euclidean distance
    ) -> None:
        self.analyzer = analyzer
        self.descriptor_fn = descriptor_fn
        self.centre = _vector(centre)
        self.threshold = float(threshold)

    @property
    def name(self) -> str:
        if self.descriptor_fn is not None:
            return getattr(self.descriptor_fn, "__name__", type(self.descriptor_fn).__name__)
        return "dlib ResNet 128-d (FaceAnalyzer)"

    def describe(self, image) -> np.ndarray | None:
        """Descriptor ``[D]`` (float64) of the most confident face of ``image`` (uint8 ``[H, W, 3]``
        or a tensor in ``[-1, 1]``), or ``None`` when no face is found."""
        arr = _as_uint8(image)
        if self.descriptor_fn is not None:
            return _vector(self.descriptor_fn(arr))
        if self.analyzer is None:
            self.analyzer = FaceAnalyzer()
        faces = self.analyzer.analyze(arr, describe=True)
        if not faces or faces[0].descriptor is None:
            return None
        return _vector(faces[0].descriptor)

    def score_descriptor(self, descriptor, reference=None) -> IdentityScore:
        """Score an already computed descriptor (``None`` = no face found: a failure)."""
        d = _vector(descriptor)
        if d is None:
            return IdentityScore(found=False, threshold=self.threshold)
        return IdentityScore(
            found=True,
            cos_gt=cosine_similarity(d, reference),
            dist_gt=euclidean_distance(d, reference),
            cos_centre=cosine_similarity(d, self.centre),
            dist_centre=euclidean_distance(d, self.centre),
            threshold=self.threshold,
        )

    def score(self, image, reference=None) -> IdentityScore:
        """Describe ``image`` and score it against ``reference`` [D] (None = no reference) and the centre."""
        return self.score_descriptor(self.describe(image), reference)


def _stats(values: Sequence[float]) -> dict:
    """mean, std (sample, n - 1; 0 for one value), min, max and n of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    arr = np.asarray(finite)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}


def summarize(scores: Sequence[IdentityScore], threshold: float | None = None) -> dict:
    """Aggregate identity scores: per measure mean/std/min/max/n over the results with a face, the
    number of faces found and failures, and the same-person shares over **all** results.

    >>> s = [IdentityScore(True, 0.9, 0.3), IdentityScore(True, 0.7, 0.7), IdentityScore(False)]
    >>> out = summarize(s)
    >>> out["faces_found"], out["failures"], round(out["same_person_gt"], 4), out["dist_gt"]["mean"]
    (2, 1, 0.3333, 0.5)
    """
    thr = threshold if threshold is not None else (scores[0].threshold if scores else SAME_PERSON_THRESHOLD)
    found = sum(1 for s in scores if s.found)
    return {
        "n": len(scores),
        "faces_found": found,
        "failures": len(scores) - found,
        "threshold": thr,
        "cos_gt": _stats([s.cos_gt for s in scores]),
        "dist_gt": _stats([s.dist_gt for s in scores]),
        "cos_centre": _stats([s.cos_centre for s in scores]),
        "dist_centre": _stats([s.dist_centre for s in scores]),
        "same_person_gt": same_person_share([s.dist_gt for s in scores], thr),
        "same_person_centre": same_person_share([s.dist_centre for s in scores], thr),
    }


def album_centre(
    prior=None,  # a PersonalPrior: its info["album"] -> manifest.json "identity.centre"
    refs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,  # reference photos (folder or files)
    scorer: IdentityScorer | None = None,  # describes the reference photos; None = a default IdentityScorer
    prior_dir: str | os.PathLike | None = None,  # the prior's folder (a relative album path is also tried beside it)
) -> tuple[np.ndarray | None, str]:
    """The album's identity centre ``[D]`` and a note saying where it came from.

    Tried in order: the prepared album's manifest (``prior.info["album"]``, resolved as given and
    beside the prior folder), then the given reference photos (the centre of their dominant identity,
    as ``prepare`` computes it), else ``(None, reason)``.
    """
    notes = []
    album = (getattr(prior, "info", None) or {}).get("album") if prior is not None else None
    if refs is None and album:
        for folder, centre, error in album_identity_centres(album, prior_dir):
            if error is not None:
                notes.append(f"album manifest {folder}: {error}")
                continue
            if centre:
                return _vector(centre), f"the album manifest's identity centre ({folder / 'manifest.json'})"
            notes.append(f"album manifest {folder / 'manifest.json'} has no identity centre")
    elif refs is None:
        notes.append("the prior names no album")
    if refs is not None:
        scorer = scorer if scorer is not None else IdentityScorer()
        if isinstance(refs, (str, os.PathLike)):
            folder = Path(refs)
            if not folder.is_dir():
                raise FileNotFoundError(f"album references: {folder} is not a folder")
            files = image_files(folder)
        else:
            files = [Path(p) for p in refs]
        descriptors = []
        for f in files:
            d = scorer.describe(read_image(f))
            descriptors.append(np.zeros((0, 1)) if d is None else d[None])
        centre, _ = dominant_identity(descriptors) if any(d.size for d in descriptors) else (None, None)
        if centre is not None:
            found = sum(1 for d in descriptors if d.size)
            return (
                _vector(centre),
                f"computed from {found} of {len(files)} reference photos ({refs if isinstance(refs, (str, os.PathLike)) else 'given files'})",
            )
        notes.append(f"no face found in the {len(files)} reference photos")
    return None, "no identity centre (" + "; ".join(notes or ["no album and no --album-refs"]) + ")"
