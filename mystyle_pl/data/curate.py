"""Album curation without a GUI: which photos of a folder make a personal album, and why not.

Pure functions on numbers and arrays (no dlib, no files), so every rule is unit-testable.
Each photo is judged by the first rule it fails, in this fixed order, so that a photo has
exactly one, unambiguous reason:

==================  ===========================================================================
``unreadable``      the file is not a decodable image (corrupt, empty, unsupported, too large)
``no_face``         no face was detected
``face_too_small``  no face has a box of at least ``min_face`` px and a crop region of at least
                    ``min_crop`` px in the source photo (the official MyStyle defaults: 200 / 500)
``blurry``          every large-enough face is blurry (variance of the Laplacian below
                    ``blur_threshold``, measured on the aligned face at 256 px, or at the
                    face's native size when smaller)
``other_person``    no usable face is within ``identity_threshold`` of the album's dominant
                    identity (the centre of the largest group of matching face descriptors)
``duplicate``       a near-duplicate (descriptor distance below ``duplicate_threshold``) of a
                    kept photo with a larger or sharper face
==================  ===========================================================================

In a group photo the face closest to the dominant identity is used.

The dominant identity is the person seen most often, which is only meaningful when one person
dominates: :func:`identity_warning` says so when the album's person holds less than half of the
photos with a usable face (e.g. 12 photos of 6 people give an "album" of 2 photos).

Thresholds were calibrated on the real photos in ``../shared/data`` with dlib's 128-d
descriptors (see ``CurationSettings``).

>>> s = CurationSettings()
>>> s.effective_min_crop, CurationSettings(min_face=64).effective_min_crop
(500.0, 160.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

REASONS = ("unreadable", "no_face", "face_too_small", "blurry", "other_person", "duplicate")

# The album's person must hold at least this share of the photos with a usable face, or prepare warns.
MIN_IDENTITY_SHARE = 0.5


@dataclass(frozen=True)
class CurationSettings:
    """The curation rules. Defaults and how they were chosen:

    * ``min_face`` 200 px and ``min_crop`` 500 px: the official MyStyle preprocessing
      (``--min_id_size 200``, ``--min_size 500``). A face box of 200 px gives a FFHQ quad of
      about 320 px, so the default 1024 px output upsamples 3x; lower ``min_face`` only for
      albums that have nothing better (``min_crop`` follows as 2.5 x ``min_face``).
    * ``blur_threshold`` 25: on the 59 real reference photos the Laplacian variance is >= 170
      (median 445), on the 252 real 112 px photos >= 34; Gaussian-blurred copies (sigma 3 px at
      512) score <= 17 and the heavily degraded test photos ~5. 25 sits in the gap.
    * ``identity_threshold`` 0.58 (distance to the identity centre): a person's own photos lie
      within 0.48 of their centre (0.52 for the low-resolution album); other people's photos
      are >= 0.63 away. dlib's usual same-person threshold for *pairs* is 0.6.
    * ``duplicate_threshold`` 0.14: a resized JPEG re-encode of a photo is 0.02-0.11 from the
      original and real near-duplicates (same shot, other crop) 0.06-0.13; the closest
      *distinct* photos of one person in the albums are 0.147 apart.
    """

    min_face: float = 200.0  # Smallest face box accepted (its larger side, source pixels).
    min_crop: float | None = None  # Smallest crop region (quad bounding box + border, source px); None = 2.5 x min_face.
    blur_threshold: float = 25.0  # Minimum variance of the Laplacian (gray levels^2) of the aligned face.
    identity_threshold: float = 0.58  # Maximum descriptor distance to the dominant identity's centre.
    duplicate_threshold: float = 0.14  # Descriptor distance below which two photos are near-duplicates.
    pair_threshold: float = 0.6  # Pairwise distance that counts as "same person" when seeding the identity.

    @property
    def effective_min_crop(self) -> float:
        return float(self.min_crop) if self.min_crop is not None else 2.5 * float(self.min_face)

    def to_dict(self) -> dict:
        return {**asdict(self), "effective_min_crop": self.effective_min_crop}


@dataclass
class FaceStats:
    """What curation needs to know about one detected face."""

    face_size: float  # detector box, larger side, source px
    crop_size: float  # crop region (see AlignTransform.crop_size), source px
    sharpness: float  # variance of the Laplacian of the aligned face
    descriptor: np.ndarray  # [D]


@dataclass
class PhotoStats:
    """One input file: its faces, or why it could not be read."""

    name: str
    faces: list[FaceStats] = field(default_factory=list)
    error: str | None = None  # set when the file is unreadable


@dataclass
class Decision:
    name: str
    kept: bool
    reason: str | None  # one of REASONS, None when kept
    detail: str  # a sentence for the manifest and the user
    face_index: int | None = None  # the face used (kept) or judged last (rejected)
    distance: float | None = None  # descriptor distance of that face to the identity centre
    duplicate_of: str | None = None


# ----------------------------------------------------------------------------------------
# measurements


def laplacian_variance(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of the gray image (a standard focus measure; low = blurry).

    ``image``: ``[H, W]`` or ``[H, W, 3]`` in 0..255 (any dtype); ``mask``: optional ``[H, W]`` bool,
    the pixels to measure.

    >>> flat = np.full((32, 32), 128.0); edge = flat.copy(); edge[:, 16:] = 0
    >>> laplacian_variance(flat), laplacian_variance(edge) > 100
    (0.0, True)
    """
    img = np.asarray(image, dtype=np.float64)
    gray = img @ np.array([0.299, 0.587, 0.114]) if img.ndim == 3 else img
    padded = np.pad(gray, 1, mode="symmetric")  # edge pixels mirrored (scipy.ndimage's "reflect")
    lap = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4.0 * gray
    if mask is not None:
        lap = lap[np.asarray(mask, dtype=bool)]
    return float(lap.var()) if lap.size else 0.0


def size_ok(face: FaceStats, settings: CurationSettings) -> bool:
    return face.face_size >= settings.min_face and face.crop_size >= settings.effective_min_crop


def sharp_ok(face: FaceStats, settings: CurationSettings) -> bool:
    return face.sharpness >= settings.blur_threshold


def pairwise_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between the rows of ``a [N, D]`` and ``b [M, D]`` -> ``[N, M]``."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


# ----------------------------------------------------------------------------------------
# identity


def dominant_identity(
    descriptors: Sequence[np.ndarray],
    threshold: float = 0.58,
    pair_threshold: float = 0.6,
    max_iterations: int = 20,
) -> tuple[np.ndarray | None, list[tuple[int | None, float | None]]]:
    """The identity most photos show, and for each photo its face closest to it.

    ``descriptors``: one ``[n_i, D]`` array per photo (``n_i`` may be 0; several faces = a group
    photo). The seed is the face that matches (``< pair_threshold``) faces in the most other
    photos; the centre is then refined as the mean of each matching photo's closest face
    (``< threshold``) until the membership stops changing.
    Returns ``(centre [D] or None, [(face index, distance to the centre) or (None, None)])``.

    >>> a, b = np.zeros(4), np.ones(4)  # two "people", 2 apart
    >>> centre, picks = dominant_identity([a[None], a[None] + 0.01, np.stack([b, a + 0.02]), b[None]])
    >>> centre.round(2).tolist(), [i for i, _ in picks]
    ([0.01, 0.01, 0.01, 0.01], [0, 0, 1, 0])
    """
    owners, rows = [], []
    for p, d in enumerate(descriptors):
        d = np.asarray(d, dtype=np.float64)
        if d.size == 0:
            continue
        for row in d.reshape(-1, d.shape[-1]):
            owners.append(p)
            rows.append(row)
    empty: list[tuple[int | None, float | None]] = [(None, None)] * len(descriptors)
    if not rows:
        return None, empty
    faces = np.stack(rows)
    owners_arr = np.asarray(owners)
    dist = pairwise_distances(faces)
    close = dist < pair_threshold
    # Support of a face: how many *other* photos have some face close to it.
    support = np.zeros(len(faces), dtype=int)
    tightness = np.zeros(len(faces))
    for f in range(len(faces)):
        matched = np.unique(owners_arr[close[f] & (owners_arr != owners_arr[f])])
        support[f] = len(matched)
        tightness[f] = dist[f][close[f]].mean() if close[f].any() else np.inf
    seed = min(range(len(faces)), key=lambda f: (-support[f], tightness[f], f))
    centre = faces[seed]
    members: frozenset[int] = frozenset()
    for _ in range(max_iterations):
        best = _closest_per_photo(faces, owners_arr, len(descriptors), centre)
        new_members = frozenset(p for p, (i, d) in enumerate(best) if i is not None and d < threshold)
        if not new_members:
            break
        centre = np.mean([faces[_row(owners_arr, p, best[p][0])] for p in sorted(new_members)], axis=0)
        if new_members == members:
            break
        members = new_members
    return centre, _closest_per_photo(faces, owners_arr, len(descriptors), centre)


def _row(owners: np.ndarray, photo: int, index: int) -> int:
    return int(np.flatnonzero(owners == photo)[index])


def _closest_per_photo(faces, owners, n_photos, centre) -> list[tuple[int | None, float | None]]:
    d = np.linalg.norm(faces - centre, axis=1)
    out: list[tuple[int | None, float | None]] = []
    for p in range(n_photos):
        rows = np.flatnonzero(owners == p)
        if len(rows) == 0:
            out.append((None, None))
        else:
            k = int(np.argmin(d[rows]))
            out.append((k, float(d[rows][k])))
    return out


def identity_share(decisions: Sequence[Decision]) -> tuple[int, int]:
    """``(photos of the album's person, photos with a usable face)``: the first counts the kept
    photos and their near-duplicates, the second adds the photos of other people (photos rejected
    earlier, for no face, a small or a blurry face, take no part in the identity vote).

    >>> d = [Decision("a", True, None, ""), Decision("b", False, "other_person", ""), Decision("c", False, "blurry", "")]
    >>> identity_share(d)
    (1, 2)
    """
    person = sum(d.kept or d.reason == "duplicate" for d in decisions)
    return person, person + sum(d.reason == "other_person" for d in decisions)


def identity_warning(decisions: Sequence[Decision], min_share: float = MIN_IDENTITY_SHARE) -> str | None:
    """A sentence for the user when the album's person holds less than ``min_share`` of the photos
    with a usable face (no dominant person: the album may be the wrong one, or too small); else None."""
    person, candidates = identity_share(decisions)
    if candidates == 0 or person >= min_share * candidates:
        return None
    return (
        f"no dominant person: the album's person is in only {person} of the {candidates} photos with a usable "
        f"face ({person / candidates:.0%}); the other {candidates - person} show other people (rejected as "
        "other_person). prepare keeps the person seen most often, so this album may be the wrong person or too "
        "small: give a folder with photos of one person (or remove the other people's photos)"
    )


# ----------------------------------------------------------------------------------------
# duplicates


def find_duplicates(descriptors: np.ndarray, quality: Sequence[tuple], threshold: float = 0.14) -> dict[int, tuple[int, float]]:
    """Near-duplicates among photos: ``{duplicate index: (index of the photo kept, distance)}``.

    Photos are visited best first (``quality``: one sortable key per photo, larger = better;
    ties: lower index first); a photo closer than ``threshold`` to an earlier-visited kept photo is its duplicate.

    >>> d = np.array([[0.0, 0], [0.05, 0], [1, 0]])
    >>> find_duplicates(d, quality=[(1,), (2,), (0,)])
    {0: (1, 0.05)}
    """
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if len(descriptors) == 0:
        return {}
    order = sorted(range(len(descriptors)), key=lambda i: (tuple(quality[i]), -i), reverse=True)  # ties: lower index
    dist = pairwise_distances(descriptors)
    kept: list[int] = []
    dups: dict[int, tuple[int, float]] = {}
    for i in order:
        if kept:
            j = min(kept, key=lambda k: dist[i, k])
            if dist[i, j] < threshold:
                dups[i] = (j, round(float(dist[i, j]), 4))
                continue
        kept.append(i)
    return dict(sorted(dups.items()))


# ----------------------------------------------------------------------------------------
# the whole folder


def curate(photos: Sequence[PhotoStats], settings: CurationSettings | None = None) -> tuple[list[Decision], np.ndarray | None]:
    """Judge every photo (see the module docstring for the rules and their order).

    Returns one :class:`Decision` per photo (same order) and the identity centre (None when no
    photo has a usable face).
    """
    settings = settings if settings is not None else CurationSettings()
    usable: list[list[int]] = []  # per photo: indices of faces passing the size and blur rules
    for photo in photos:
        usable.append([i for i, f in enumerate(photo.faces) if size_ok(f, settings) and sharp_ok(f, settings)])
    dim = next((len(f.descriptor) for p in photos for f in p.faces), 1)
    centre, picks = dominant_identity(
        [np.stack([photos[p].faces[i].descriptor for i in usable[p]]) if usable[p] else np.zeros((0, dim)) for p in range(len(photos))],
        threshold=settings.identity_threshold,
        pair_threshold=settings.pair_threshold,
    )  # fmt: skip

    decisions: list[Decision] = []
    for p, photo in enumerate(photos):
        decisions.append(_judge(photo, usable[p], picks[p], settings))

    # Near-duplicates among the photos still kept: the larger, sharper face wins, then the name.
    kept = [p for p, d in enumerate(decisions) if d.kept]
    if kept:
        faces = [photos[p].faces[decisions[p].face_index] for p in kept]
        quality = [(round(f.face_size), round(f.sharpness, 1)) for f in faces]
        dups = find_duplicates(np.stack([f.descriptor for f in faces]), quality, settings.duplicate_threshold)
        for i, (j, dist) in dups.items():
            d = decisions[kept[i]]
            d.kept, d.reason, d.duplicate_of = False, "duplicate", photos[kept[j]].name
            d.detail = f"near-duplicate of {photos[kept[j]].name} (descriptor distance {dist:.3f} < {settings.duplicate_threshold})"
    return decisions, centre


def _judge(photo: PhotoStats, usable: list[int], pick: tuple[int | None, float | None], s: CurationSettings) -> Decision:
    name = photo.name
    if photo.error is not None:
        return Decision(name, False, "unreadable", photo.error)
    if not photo.faces:
        return Decision(name, False, "no_face", "no face detected")
    sized = [i for i, f in enumerate(photo.faces) if size_ok(f, s)]
    if not sized:
        i = max(range(len(photo.faces)), key=lambda k: photo.faces[k].face_size)
        f = photo.faces[i]
        return Decision(name, False, "face_too_small", f"largest face {f.face_size:.0f} px, crop region {f.crop_size:.0f} px "
                        f"(need >= {s.min_face:.0f} and >= {s.effective_min_crop:.0f} px; lower --min-face to accept smaller faces)",
                        face_index=i)  # fmt: skip
    if not usable:
        i = max(sized, key=lambda k: photo.faces[k].sharpness)
        return Decision(name, False, "blurry", f"sharpest face scores {photo.faces[i].sharpness:.1f} "
                        f"(variance of the Laplacian; need >= {s.blur_threshold})", face_index=i)  # fmt: skip
    k, dist = pick
    face_index = usable[k] if k is not None else None
    if dist is None or dist >= s.identity_threshold:
        what = f"closest face is {dist:.3f} from the album's identity" if dist is not None else "no identity found"
        return Decision(name, False, "other_person", f"{what} (need < {s.identity_threshold})", face_index=face_index,
                        distance=dist)  # fmt: skip
    return Decision(name, True, None, f"face {face_index} of {len(photo.faces)}, {dist:.3f} from the identity centre",
                    face_index=face_index, distance=dist)  # fmt: skip
