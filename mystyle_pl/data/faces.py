"""Face detection, 68-point landmarks and identity descriptors behind small interfaces.

Three roles, each a :class:`typing.Protocol` so that another implementation (a CNN detector,
a different landmarker, ArcFace descriptors) can be dropped in:

* :class:`FaceDetector`: ``detect(image) -> list[FaceBox]``;
* :class:`Landmarker`: ``landmarks(image, box) -> [68, 2]`` (iBUG-300W order, pixel-index
  coordinates: the centre of pixel ``(i, j)`` is ``x=j, y=i``);
* :class:`FaceDescriptor`: ``describe(image, landmarks) -> [D]`` (faces of one person lie
  close together in Euclidean distance).

The protocols, the box and the dlib implementations are in :mod:`mystyle_pl.data.face_models`
(re-exported here). Images here are ``uint8`` RGB ``[H, W, 3]`` arrays: this module sits at the file
edge of the pipeline, before anything becomes a tensor.

:class:`FaceAnalyzer` combines the three with the scale handling that small and large photos
need (the official MyStyle code upsamples small photos to 512 px before detecting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .align import align_face
from .face_models import (  # re-exported: callers import the models' names from here
    LANDMARKS_68,
    MODELS_ENV,
    RESNET_DESCRIPTOR,
    DlibFrontalDetector,
    DlibLandmarker,
    DlibResNetDescriptor,
    FaceBox,
    FaceDescriptor,
    FaceDetector,
    FaceModelsUnavailable,
    Landmarker,
    check_face_models,
    dlib_model_dir,
    rgb8,
)

__all__ = [
    "ALIGNED_CENTRE_TOLERANCE",
    "ALIGNED_CHECK_MIN_SIDE",
    "ALIGNED_CHECK_SIDE",
    "ALIGNED_SCALE_RANGE",
    "AlignedCheck",
    "DlibFrontalDetector",
    "DlibLandmarker",
    "DlibResNetDescriptor",
    "FFHQ_DLIB_BOX",
    "Face",
    "FaceAnalyzer",
    "FaceBox",
    "FaceDescriptor",
    "FaceDetector",
    "FaceModelsUnavailable",
    "LANDMARKS_68",
    "Landmarker",
    "MIRROR_68",
    "MODELS_ENV",
    "REFINE_JITTERS",
    "RESNET_DESCRIPTOR",
    "check_aligned_crop",
    "check_face_models",
    "default_analyzer",
    "dlib_model_dir",
]

# ----------------------------------------------------------------------------------------
# analysis of one photo


def _mirror_permutation_68() -> np.ndarray:
    """Index map of the 68 iBUG points under a horizontal flip (left eye <-> right eye, ...)."""
    perm = np.arange(68)
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


MIRROR_68 = _mirror_permutation_68()

# dlib's frontal-detector box on FFHQ-aligned faces, as fractions of the side (left, top, right,
# bottom): the mean over the 59 real FFHQ-aligned photos of ../shared/data/albums (std ~0.03).
FFHQ_DLIB_BOX = (0.196, 0.275, 0.805, 0.883)

# Checking that a square image is an FFHQ-aligned crop (check_aligned_crop): squares smaller than
# ALIGNED_CHECK_MIN_SIDE are not checked (the aligned face would be under ~80 px, too small for the
# detector to place reliably); larger ones are reduced to ALIGNED_CHECK_SIDE first (the aligned face
# is then ~155 px, found at full speed). A detected box is "where the aligned crop has it" when its
# centre is within ALIGNED_CENTRE_TOLERANCE of the side from FFHQ_DLIB_BOX's centre and its size
# within ALIGNED_SCALE_RANGE of FFHQ_DLIB_BOX's: on the 59 real aligned photos, at 128-512 px, the
# boxes stay within 0.06 and 0.85-1.2x.
ALIGNED_CHECK_MIN_SIDE = 128
ALIGNED_CHECK_SIDE = 256
ALIGNED_CENTRE_TOLERANCE = 0.15
ALIGNED_SCALE_RANGE = (0.6, 1.6)


@dataclass
class AlignedCheck:
    """Whether a square image looks like an FFHQ-aligned face crop (:func:`check_aligned_crop`)."""

    aligned: bool | None  # True: a face where the aligned crop has it; False: faces, none there; None: not known
    reason: str  # one sentence: what was found (or why nothing was checked)
    boxes: list[FaceBox] = field(default_factory=list)  # the faces found, in the image's pixels


def check_aligned_crop(
    image: np.ndarray,  # uint8 RGB [S, S, 3]: the square image taken as an aligned crop
    detector: FaceDetector,  # e.g. FaceAnalyzer().detector
    min_side: int = ALIGNED_CHECK_MIN_SIDE,  # smaller images are not checked (aligned=None)
    side: int = ALIGNED_CHECK_SIDE,  # larger images are reduced to this side before detecting
) -> AlignedCheck:
    """Is the face of a square image where an FFHQ-aligned crop has it (``FFHQ_DLIB_BOX``)?

    ``aligned`` is None when the image is too small to check or no face is found (an aligned crop
    with a hole or heavy degradation may hide its face from the detector: no evidence either way),
    True when some detected face sits at the aligned place and scale, False when faces are found and
    none does (a square photo that is not an aligned crop).
    """
    image = rgb8(image)
    h, w = image.shape[:2]
    if h != w:
        raise ValueError(f"check_aligned_crop takes a square image, got {w}x{h}")
    if w < min_side:
        return AlignedCheck(None, f"{w} px is too small to check (< {min_side} px)")
    work, f = image, 1.0
    if w > side:
        work = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))
        f = side / w
    boxes = [_scale_box(b, 1 / f, 1 / f) for b in detector.detect(work)]
    if not boxes:
        return AlignedCheck(None, "no face detected", boxes)
    l0, t0, r0, b0 = FFHQ_DLIB_BOX
    centre0, size0 = np.array([(l0 + r0) / 2, (t0 + b0) / 2]), max(r0 - l0, b0 - t0)
    described = []
    for b in boxes:
        centre = np.array([(b.left + b.right) / 2 + 0.5, (b.top + b.bottom) / 2 + 0.5]) / w
        scale = b.size / w / size0
        lo, hi = ALIGNED_SCALE_RANGE
        if np.abs(centre - centre0).max() <= ALIGNED_CENTRE_TOLERANCE and lo <= scale <= hi:
            return AlignedCheck(True, "a face where the aligned crop has it", boxes)
        described.append(f"a face at ({centre[0]:.2f}, {centre[1]:.2f}) of the side, {scale:.2f}x the aligned size")
    return AlignedCheck(
        False,
        f"found {'; '.join(described[:3])}; an aligned crop has it at ({centre0[0]:.2f}, {centre0[1]:.2f}), 1x",
        boxes,
    )


# Box jitters (dx, dy as fractions of the side, scale) whose landmark predictions are averaged.
REFINE_JITTERS = ((0.0, 0.0, 1.0), (-0.03, -0.03, 1.0), (-0.03, 0.03, 1.0), (0.03, -0.03, 1.0), (0.03, 0.03, 1.0),
                  (0.0, 0.0, 0.93), (0.0, 0.0, 1.07))  # fmt: skip


@dataclass
class Face:
    """One face found in a photo; every coordinate is in the source photo's pixels."""

    box: FaceBox
    landmarks: np.ndarray  # [68, 2]
    descriptor: np.ndarray | None = None  # [D], None when no descriptor was computed
    extra: dict = field(default_factory=dict)  # measurements added later (sharpness, crop size, ...)


class FaceAnalyzer:
    """Detect every face in a photo, then landmark (and refine) and describe each one.

    Scale: the photo is resized for detection so that its shorter side is at least ``min_side``
    (small photos are upsampled, as the official MyStyle preprocessing does) and its longer side
    at most ``max_side`` (large photos are downsampled, which bounds detection time; with
    ``upsample=1`` faces are then found down to about ``40 / scale`` source pixels).

    Refinement (``refine_iterations``): landmarks predicted from a detector box depend on where
    the box falls, and the detector's boxes move with the face's tilt and scale. Each iteration
    warps the face into the FFHQ frame (``refine_frame`` px) through the current landmarks and
    predicts the landmarks again from a fixed box (``FFHQ_DLIB_BOX``), averaged over small box
    jitters and a mirror image, then maps them back. This makes the landmarks, and so the
    alignment, nearly independent of the photo's rotation and scale. The descriptor is computed
    in that frame too.
    """

    def __init__(
        self,
        detector: FaceDetector | None = None,  # None = DlibFrontalDetector().
        landmarker: Landmarker | None = None,  # None = DlibLandmarker(); must give the 68 iBUG points.
        descriptor: FaceDescriptor | None = None,  # None = DlibResNetDescriptor(); skipped when describe=False.
        min_side: int = 512,  # Upsample photos whose shorter side is below this before detecting (px).
        max_side: int = 1600,  # Downsample photos whose longer side is above this before detecting (px).
        max_faces: int = 8,  # Landmark and describe at most this many faces (the most confident).
        refine_iterations: int = 2,  # Landmark refinement passes in the FFHQ frame (0 = detector box only).
        refine_frame: int = 512,  # Side of the FFHQ frame used for refinement and descriptors (px).
        retry_pad: float = 0.2,  # When nothing is found, pad by this fraction of the shorter side and retry (0 = off).
        retry_angles: tuple[float, ...] = (25.0, -25.0),  # Then retry on the photo turned by these angles (degrees).
    ):
        self.detector = detector if detector is not None else DlibFrontalDetector()
        self.landmarker = landmarker if landmarker is not None else DlibLandmarker()
        self.descriptor = descriptor if descriptor is not None else DlibResNetDescriptor()
        self.min_side = min_side
        self.max_side = max_side
        self.max_faces = max_faces
        self.refine_iterations = refine_iterations
        self.refine_frame = refine_frame
        self.retry_pad = retry_pad
        self.retry_angles = tuple(float(a) for a in retry_angles)

    def settings(self) -> dict:
        """What determines this analyser's output (stored in the manifest; a change re-analyses)."""
        det = self.detector
        return {
            "detector": type(det).__name__,
            "upsample": getattr(det, "upsample", None),
            "threshold": getattr(det, "threshold", None),
            "landmarker": type(self.landmarker).__name__,
            "descriptor": type(self.descriptor).__name__,
            "min_side": self.min_side,
            "max_side": self.max_side,
            "max_faces": self.max_faces,
            "refine_iterations": self.refine_iterations,
            "refine_frame": self.refine_frame,
            "retry_pad": self.retry_pad,
            "retry_angles": list(self.retry_angles),
        }

    def detection_scale(self, width: int, height: int) -> float:
        scale = max(1.0, self.min_side / min(width, height))
        if max(width, height) * scale > self.max_side:
            scale = self.max_side / max(width, height)
        return scale

    def analyze(self, image: np.ndarray, describe: bool = True) -> list[Face]:
        """Every face in ``image`` (uint8 RGB), most confident first, in source pixel coordinates."""
        image = rgb8(image)
        height, width = image.shape[:2]
        scale = self.detection_scale(width, height)
        if abs(scale - 1.0) > 1e-6:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
            work = np.asarray(Image.fromarray(image).resize(size, resample))
            sx, sy = size[0] / width, size[1] / height
        else:
            work, sx, sy = image, 1.0, 1.0
        view, to_work, boxes = work, (np.eye(2), np.zeros(2)), self.detector.detect(work)
        for make_view in self._retry_views():
            if boxes:
                break
            view, to_work = make_view(work)
            boxes = self.detector.detect(view)
        faces = []
        for box in boxes[: self.max_faces]:
            a, t = to_work
            lm_work = self.landmarker.landmarks(view, box) @ a.T + t
            cx, cy = np.array([(box.left + box.right) / 2, (box.top + box.bottom) / 2]) @ a.T + t
            hw, hh = (box.right - box.left) / 2, (box.bottom - box.top) / 2
            box = FaceBox(cx - hw, cy - hh, cx + hw, cy + hh, box.score)
            lm = np.stack([_rescale(lm_work[:, 0], 1 / sx), _rescale(lm_work[:, 1], 1 / sy)], axis=1)
            frame, lm_frame = None, None
            for _ in range(self.refine_iterations):
                try:
                    lm, frame, lm_frame = self.refine(image, lm)
                except ValueError:  # degenerate landmarks: keep the detector-box prediction
                    break
            desc = None
            if describe:
                desc = self.descriptor.describe(frame, lm_frame) if frame is not None else self.descriptor.describe(image, lm)
            faces.append(Face(box=_scale_box(box, 1 / sx, 1 / sy), landmarks=lm, descriptor=desc))
        return faces

    def _retry_views(self):
        """Fallback views of the detection image, tried in turn while no face is found. Each
        returns ``(view, (A, t))`` with ``work pixel = A @ view pixel + t``.

        Tightly cropped faces (no margin around chin and forehead) escape the sliding-window
        detector, which a plain border fixes; tilted heads (beyond ~20 degrees) escape the
        upright-face detector, which turning the photo fixes. Refinement then removes any
        dependence of the landmarks on the view they came from.
        """
        if self.retry_pad > 0:
            yield lambda work: _padded_view(work, self.retry_pad)
        for angle in self.retry_angles:
            yield lambda work, angle=angle: _rotated_view(work, angle)

    def refine(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One refinement pass: ``(landmarks in the source, the FFHQ-frame image, landmarks in it)``."""
        size = self.refine_frame
        frame, transform = align_face(image, landmarks, size, supersample=2)
        mirrored = np.ascontiguousarray(frame[:, ::-1])
        l0, t0, r0, b0 = FFHQ_DLIB_BOX
        predictions = []
        for dx, dy, s in REFINE_JITTERS:
            cx, cy = (l0 + r0) / 2 + dx, (t0 + b0) / 2 + dy
            hw, hh = (r0 - l0) / 2 * s, (b0 - t0) / 2 * s
            box = FaceBox((cx - hw) * size - 0.5, (cy - hh) * size - 0.5, (cx + hw) * size - 0.5, (cy + hh) * size - 0.5)
            predictions.append(self.landmarker.landmarks(frame, box))
            flipped = self.landmarker.landmarks(mirrored, FaceBox(size - 1 - box.right, box.top, size - 1 - box.left, box.bottom))
            flipped = flipped[MIRROR_68]
            flipped[:, 0] = size - 1 - flipped[:, 0]
            predictions.append(flipped)
        lm_frame = np.mean(predictions, axis=0)
        return transform.to_source(lm_frame, size), frame, lm_frame


_ANALYZER: dict = {}


def default_analyzer() -> FaceAnalyzer:
    """The process's one dlib :class:`FaceAnalyzer` with the default settings, made on first use (loading
    the models takes a second); what every ``analyzer=None`` of paste-back, the group photos and the
    watermark reader means. Raises :class:`FaceModelsUnavailable` without dlib or its models."""
    if "default" not in _ANALYZER:
        _ANALYZER["default"] = FaceAnalyzer()
    return _ANALYZER["default"]


def _padded_view(work: np.ndarray, fraction: float):
    pad = max(1, int(round(fraction * min(work.shape[:2]))))
    fill = np.median(work.reshape(-1, 3), axis=0).astype(np.uint8)
    view = np.empty((work.shape[0] + 2 * pad, work.shape[1] + 2 * pad, 3), dtype=np.uint8)
    view[:] = fill
    view[pad:-pad, pad:-pad] = work
    return view, (np.eye(2), np.full(2, -float(pad)))


def _rotated_view(work: np.ndarray, angle: float):
    """``work`` turned by ``angle`` degrees (the whole photo kept, corners filled with its median)."""
    h, w = work.shape[:2]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    big_w, big_h = int(math.ceil(w * abs(c) + h * abs(s))), int(math.ceil(w * abs(s) + h * abs(c)))
    a = np.array([[c, -s], [s, c]])  # view (continuous, about its centre) -> work (about its centre)
    centre_view, centre_work = np.array([big_w, big_h]) / 2, np.array([w, h]) / 2
    t_cont = centre_work - a @ centre_view
    fill = tuple(int(v) for v in np.median(work.reshape(-1, 3), axis=0))
    coeffs = (a[0, 0], a[0, 1], t_cont[0], a[1, 0], a[1, 1], t_cont[1])
    view = Image.fromarray(work).transform((big_w, big_h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC, fillcolor=fill)
    # Pixel-index coordinates: work_idx + 0.5 = a @ (view_idx + 0.5) + t_cont.
    return np.asarray(view), (a, t_cont + a @ np.full(2, 0.5) - 0.5)


def _scale_box(box: FaceBox, fx: float, fy: float) -> FaceBox:
    return FaceBox(float(_rescale(box.left, fx)), float(_rescale(box.top, fy)),
                   float(_rescale(box.right, fx)), float(_rescale(box.bottom, fy)), box.score)  # fmt: skip


def _rescale(v, factor: float):
    """Pixel-index coordinate ``v`` in an image resized by ``factor`` (pixel centres map to centres)."""
    return (np.asarray(v, dtype=np.float64) + 0.5) * factor - 0.5 if factor != 1 else np.asarray(v, dtype=np.float64)
