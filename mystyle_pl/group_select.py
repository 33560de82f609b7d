"""Finding the faces of a whole photo and choosing the ones a task runs on (:mod:`mystyle_pl.group`).

:func:`find_faces` detects every face (:func:`analyse`) and :func:`select_faces` orders them left
to right, measures each one's descriptor distance to the prior's identity centre and marks the
ones to process (``faces=``: ``"person"`` | ``"all"`` | ``"largest"``, see :mod:`mystyle_pl.group`).
A photo in which the person does not appear raises :class:`NoPersonError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data.align import AlignTransform
from .data.faces import default_analyzer
from .tasks.pasteback import DEFAULT_IDENTITY_THRESHOLD, NoFaceError, NotThePersonError, faces_from_left

FACE_MODES = ("person", "all", "largest")


class NoPersonError(NotThePersonError):
    """Faces were found, none within the threshold of the prior's identity: the photo is skipped.
    The message reads ``"<label>: no face of the person: closest 0.71, threshold 0.58 (...)"``;
    ``selection`` (a :class:`FaceSelection`, none selected) lists every face and why it was kept."""

    selection: FaceSelection | None = None


@dataclass
class GroupFace:
    """One face of a photo and what was done to it (``index``: position from the left, 0 = leftmost)."""

    index: int  # 0 = the leftmost face
    box: list[float]  # [left, top, right, bottom] in the input photo's pixels
    score: float  # the detector's confidence
    distance: float | None  # descriptor distance to the prior's identity centre; None = unknown
    person: bool | None  # distance < threshold; None when the identity (or the descriptor) is unknown
    selected: bool = False  # the task runs on it
    action: str = ""  # "processed" or why it was kept as it was
    landmarks: np.ndarray | None = field(default=None, repr=False)  # [68, 2] input pixels
    transform: AlignTransform | None = None  # crop <-> input photo geometry (selected faces)
    region: list[int] | None = None  # [x0, y0, x1, y1) of the pixels the paste changed, in the output photo

    @property
    def size(self) -> float:
        """The box's larger side (px)."""
        l, t, r, b = self.box
        return max(r - l, b - t)

    def describe(self) -> str:
        l, t, r, b = (int(round(v)) for v in self.box)
        d = "" if self.distance is None else f", distance {self.distance:.2f}"
        return f"face {self.index} at x {l}-{r}, y {t}-{b}{d}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 3),
            "distance": None if self.distance is None else round(float(self.distance), 4), "person": self.person,
            "selected": self.selected, "action": self.action, "region": self.region,
            "transform": self.transform.to_dict() if self.transform is not None else None,
        }  # fmt: skip


@dataclass
class FaceSelection:
    """Every face of a photo (left to right) and which ones the task runs on."""

    faces: list[GroupFace]
    mode: str  # "person" | "all" | "largest"
    threshold: float
    note: str  # one sentence: how the faces were chosen

    @property
    def selected(self) -> list[GroupFace]:
        return [f for f in self.faces if f.selected]

    def record(self) -> dict[str, Any]:
        """The fields of a photo's record: ``faces_mode``, ``identity_threshold``, ``selection`` (the
        note) and ``faces`` (:meth:`GroupFace.to_dict` of every face, left to right)."""
        return {"faces_mode": self.mode, "identity_threshold": self.threshold, "selection": self.note,
                "faces": [f.to_dict() for f in self.faces]}  # fmt: skip


# A degraded face's descriptor drifts away from the person's (album 00001's real degraded.png in a photo of
# three people: 0.62 against the threshold 0.58, the two others 0.83). When no face is within the threshold,
# the closest one is still taken if it is within DEGRADED_SLACK above it and DEGRADED_MARGIN closer than
# every other face of the photo (two faces at least: a lone face has nothing to be compared with). Other
# people are >= 0.63 from the person on the project's albums, so a stranger in a photo without the person
# can pass only when they are the only face near the person and everyone else is 0.15 farther.
DEGRADED_SLACK, DEGRADED_MARGIN = 0.07, 0.15


def select_faces(
    faces: Sequence,  # Face objects (box, landmarks, descriptor), as FaceAnalyzer.analyze returns them (most confident first)
    label: str = "photo",  # the photo, for messages
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    mode: str = "person",  # "person" | "all" | "largest" (module docstring)
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
) -> FaceSelection:
    """Order ``faces`` left to right, measure each one's distance to ``identity`` and mark the ones
    to process.

    Raises :class:`~mystyle_pl.tasks.pasteback.NoFaceError` when ``faces`` is empty,
    :class:`NoPersonError` (``mode="person"``, identity known) when no face is within ``threshold``
    (nor, in a photo of several faces, clearly the closest just above it: ``DEGRADED_SLACK``),
    ``ValueError`` for an unknown mode.

    >>> from types import SimpleNamespace as F
    >>> from mystyle_pl.data.faces import FaceBox
    >>> a = F(box=FaceBox(200, 0, 300, 100, 2.0), descriptor=np.ones(2), landmarks=None)   # someone else, right
    >>> b = F(box=FaceBox(0, 0, 100, 100, 1.0), descriptor=np.zeros(2), landmarks=None)    # the person, left
    >>> s = select_faces([a, b], "group.jpg", identity=[0.1, 0.0])
    >>> [(f.index, f.selected, round(f.distance, 2)) for f in s.faces]
    [(0, True, 0.1), (1, False, 1.35)]
    >>> select_faces([a], "solo.jpg", identity=[0.1, 0.0])
    Traceback (most recent call last):
    ...
    mystyle_pl.group_select.NoPersonError: solo.jpg: no face of the person: closest 1.35, threshold 0.58 (face 0 at x 200-300, y 0-100, distance 1.35); a blurred or small face reads farther from the person: raise the threshold (--data.identity_threshold), or choose the face (--data.face N, --data.faces largest)
    """
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}, got {mode!r}")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not faces:
        raise NoFaceError(f"{label}: no face found")
    found = [
        GroupFace(index=pos, box=box, score=score, distance=dist, person=None if dist is None else dist < threshold,
                  landmarks=getattr(f, "landmarks", None))
        for pos, (_, f, box, score, dist) in enumerate(faces_from_left(faces, identity))
    ]  # fmt: skip
    listing = "; ".join(f.describe() for f in found)
    if mode == "all":
        chosen, note = found, f"every face ({len(found)})"
    elif mode == "largest":
        chosen = [max(found, key=lambda f: (f.size, -f.index))]
        note = f"the largest face (face {chosen[0].index})"
    elif any(f.distance is not None for f in found):
        known = [f for f in found if f.distance is not None]
        chosen = [f for f in known if f.distance < threshold]
        ranked = sorted(known, key=lambda f: f.distance)
        if chosen:
            note = (f"the person's face{'s' if len(chosen) > 1 else ''} ({', '.join(str(f.index) for f in chosen)}; "
                    f"distance < {threshold:.2f} to the prior's identity)")  # fmt: skip
        elif (
            len(ranked) > 1 and ranked[0].distance < threshold + DEGRADED_SLACK
            and ranked[1].distance - ranked[0].distance >= DEGRADED_MARGIN
        ):  # fmt: skip
            chosen = ranked[:1]
            note = (f"the face closest to the person (face {chosen[0].index}, distance {chosen[0].distance:.2f}: "
                    f"above the threshold {threshold:.2f}, as blurred faces read, but {ranked[1].distance - ranked[0].distance:.2f} "
                    "closer than any other face)")  # fmt: skip
        else:
            error = NoPersonError(
                f"{label}: no face of the person: closest {ranked[0].distance:.2f}, threshold {threshold:.2f} ({listing}); "
                "a blurred or small face reads farther from the person: raise the threshold "
                "(--data.identity_threshold), or choose the face (--data.face N, --data.faces largest)"
            )
            _set_actions(found, [], mode, threshold)
            note = f"no face of the person (threshold {threshold:.2f})"
            error.selection = FaceSelection(found, mode, float(threshold), note)
            raise error
    else:
        first = faces[0].box  # the analyser lists the most confident face first
        chosen = [next(f for f in found if f.box == [float(first.left), float(first.top), float(first.right), float(first.bottom)])]
        note = (f"the prior's identity is unknown: took the most confident face (face {chosen[0].index} of {len(found)})"
                if len(found) > 1 else "the prior's identity is unknown: took the only face")  # fmt: skip
    _set_actions(found, chosen, mode, threshold)
    return FaceSelection(found, mode, float(threshold), note)


def _set_actions(found: list[GroupFace], chosen: list[GroupFace], mode: str, threshold: float) -> None:
    """Mark ``chosen`` selected ("processed") and say why each other face of ``found`` is kept."""
    for f in found:
        if f in chosen:
            f.selected, f.action = True, "processed"
        elif mode == "person" and f.distance is not None:
            f.action = f"kept as it was: not the person (distance {f.distance:.2f} >= {threshold:.2f})"
        else:
            f.action = "kept as it was: not selected" + (f" (faces={mode})" if mode != "person" else "")


def analyse(photo: np.ndarray, analyzer=None, describe: bool = True) -> list:
    """Every face of ``photo`` (uint8 [H, W, 3]) -> ``FaceAnalyzer.analyze``'s list (most confident
    first); ``analyzer=None``: dlib's default analyser, shared by the process. Raises
    :class:`~mystyle_pl.data.faces.FaceModelsUnavailable` without dlib or its models."""
    if analyzer is None:
        analyzer = default_analyzer()
    return analyzer.analyze(photo, describe=describe)


def find_faces(
    photo: np.ndarray,  # uint8 [H, W, 3]
    label: str,  # the photo, for messages
    identity: Sequence[float] | np.ndarray | None = None,  # the prior's identity centre [D]; None = unknown
    faces: str = "person",  # "person" | "all" | "largest"
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # largest distance to `identity` that is the person
    analyzer=None,  # a FaceAnalyzer; None = dlib's default one
    detected: Sequence | None = None,  # faces already found (FaceAnalyzer.analyze's list); None = analyse here
) -> FaceSelection:
    """Every face of ``photo``, its distance to ``identity`` and which ones to process
    (:func:`select_faces`). Raises :class:`NoFaceError` (no face, the message says how large a
    face must be) and :class:`NoPersonError` (``faces="person"``, none is the person)."""
    found = list(detected) if detected is not None else analyse(photo, analyzer, describe=identity is not None)
    if not found:
        height, width = photo.shape[:2]
        raise NoFaceError(f"{label}: no face found ({width}x{height} px); a face must be at least ~40 px wide and roughly frontal")
    return select_faces(found, label, identity=identity, mode=faces, threshold=threshold)
