"""What a face model is, and the dlib ones: the three roles as :class:`typing.Protocol` s
(:class:`FaceDetector`, :class:`Landmarker`, :class:`FaceDescriptor`), the box they share, and
their dlib implementations (:mod:`mystyle_pl.data.faces` combines them in ``FaceAnalyzer``).

The dlib implementations use the models that PyPI distributes: ``dlib-bin`` (the library)
and ``face_recognition_models`` (``shape_predictor_68_face_landmarks.dat`` and
``dlib_face_recognition_resnet_model_v1.dat``). Models are loaded lazily, on first use, once
per process. Images here are ``uint8`` RGB ``[H, W, 3]`` arrays.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
RESNET_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MODELS_ENV = "MYSTYLE_DLIB_MODELS"  # a folder holding the two .dat files (overrides face_recognition_models)


class FaceModelsUnavailable(RuntimeError):
    """dlib or its model files are missing; the message says what to install."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box corners in source pixel coordinates and the detector's confidence."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def size(self) -> float:
        """The box's larger side in pixels (what the face-size rule measures)."""
        return max(self.right - self.left, self.bottom - self.top)

    def to_list(self) -> list[float]:
        return [round(float(v), 2) for v in (self.left, self.top, self.right, self.bottom)]


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """All faces in ``image`` (uint8 RGB [H, W, 3]), most confident first."""
        ...


@runtime_checkable
class Landmarker(Protocol):
    num_points: int

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """``float64 [num_points, 2]`` (x, y) for the face in ``box``."""
        ...


@runtime_checkable
class FaceDescriptor(Protocol):
    dim: int

    def describe(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``float32 [dim]`` identity descriptor of the face with these landmarks."""
        ...


# ----------------------------------------------------------------------------------------
# dlib implementations


def dlib_model_dir() -> Path:
    """The folder of dlib's ``.dat`` models: ``$MYSTYLE_DLIB_MODELS`` or ``face_recognition_models``."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    # Do not import face_recognition_models: its __init__ needs pkg_resources, which modern
    # setuptools no longer ships. Its files are found through the import system instead.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailable(
            "the dlib face models are missing: pip install face_recognition_models "
            f"(or point ${MODELS_ENV} at a folder with {LANDMARKS_68} and {RESNET_DESCRIPTOR})"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _import_dlib():
    try:
        import dlib  # type: ignore[import-not-found]  # lazy: optional dependency (the face models)
    except ImportError as e:
        raise FaceModelsUnavailable(f"dlib is not installed: pip install dlib-bin ({e})") from None
    return dlib


def _model_path(name: str, path: str | os.PathLike | None) -> Path:
    p = Path(path) if path is not None else dlib_model_dir() / name
    if not p.is_file():
        raise FaceModelsUnavailable(f"dlib model file not found: {p} (pip install face_recognition_models)")
    return p


def check_face_models(model_dir: str | os.PathLike | None = None) -> Path:
    """Raise :class:`FaceModelsUnavailable` unless dlib imports and both model files exist; returns their folder."""
    _import_dlib()
    folder = Path(model_dir) if model_dir is not None else dlib_model_dir()
    for name in (LANDMARKS_68, RESNET_DESCRIPTOR):
        _model_path(name, folder / name)
    return folder


_MODEL_CACHE: dict[tuple[str, str], object] = {}


def _cached(kind: str, path: Path, build):
    key = (kind, str(path))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = build(str(path))
    return _MODEL_CACHE[key]


class DlibFrontalDetector:
    """dlib's HOG + linear SVM frontal face detector.

    It finds faces of about 80 px and larger; each ``upsample`` doubles the image first (so 40 px
    faces are found with ``upsample=1``) at four times the cost.
    """

    def __init__(
        self,
        upsample: int = 1,  # Times the detector doubles the image before scanning (dlib's second argument).
        threshold: float = 0.0,  # SVM score a detection must exceed (dlib's default 0; higher = fewer false faces).
    ):
        self.upsample = upsample
        self.threshold = threshold
        self._detector = None

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        if self._detector is None:
            dlib = _import_dlib()
            self._detector = _MODEL_CACHE.setdefault(("detector", "frontal"), dlib.get_frontal_face_detector())
        rects, scores, _ = self._detector.run(rgb8(image), self.upsample, self.threshold)
        boxes = [FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores)]
        return sorted(boxes, key=lambda b: -b.score)


class DlibLandmarker:
    """dlib's 68-point shape predictor (iBUG 300-W points, Kazemi & Sullivan 2014)."""

    num_points = 68

    def __init__(self, model_path: str | os.PathLike | None = None):  # None = face_recognition_models' file
        self.model_path = model_path
        self._predictor = None

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        dlib = _import_dlib()
        if self._predictor is None:
            self._predictor = _cached("shape68", _model_path(LANDMARKS_68, self.model_path), dlib.shape_predictor)
        rect = dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom)))
        shape = self._predictor(rgb8(image), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class DlibResNetDescriptor:
    """dlib's 128-d face recognition ResNet (99.38% on LFW; same person: distance < 0.6)."""

    dim = 128

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,  # None = face_recognition_models' file.
        num_jitters: int = 0,  # Extra randomly jittered crops averaged in (slower, slightly more stable).
    ):
        self.model_path = model_path
        self.num_jitters = num_jitters
        self._net = None

    def describe(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        dlib = _import_dlib()
        if self._net is None:
            path = _model_path(RESNET_DESCRIPTOR, self.model_path)
            self._net = _cached("resnet", path, dlib.face_recognition_model_v1)
        pts = np.rint(np.asarray(landmarks, dtype=np.float64)).astype(int)
        rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max()))
        shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])
        return np.asarray(self._net.compute_face_descriptor(rgb8(image), shape, self.num_jitters), dtype=np.float32)


def rgb8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)
