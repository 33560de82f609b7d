"""The invisible watermark: a 48-bit code ("made by mystyle-pl" + a 24-bit run id) in the face's pixels.

The transform is the ``invisible-watermark`` library's ``dwtDctSvd`` (Haar DWT, 4x4 DCT blocks of
the low band, the largest singular value quantised; the U channel, step 48); the payload, its
error correction and where the mark lives are ours:

- **Payload** (:func:`payload_bits`): 8 bits :data:`TAG` (the mark is ours) + 24 bits run id,
  then a CRC-16/CCITT of those 32 bits: 48 bits. The library repeats the 48 bits over every
  4x4 block of the region (about 5 times at :data:`CANONICAL` = 128 px) and averages the votes
  per bit; :func:`decode_scores` then corrects errors by flipping the :data:`CHASE_BITS` least
  certain bits (a Chase decoder, at most 2^5 candidates) until the CRC and the tag agree. A
  random image passes with probability about ``32 / 2^24`` per region read.
- **Where**: the **mark box** (:data:`MARK_BOX`) of an FFHQ-aligned crop, a square inside the
  face ellipse that paste-back replaces whole (:func:`mystyle_pl.data.align.face_mask`), so a
  pasted-back photo carries the mark and every pixel outside the pasted face stays as it was.
  The box is resized to :data:`CANONICAL` px, marked there, and only the mark's difference is
  resized back and added: the mark does not depend on the image's resolution and survives
  resizing.
- **Reading** (:func:`find_watermark`): the whole image taken as an aligned crop first (cheap:
  crops as written, resized or re-encoded); then every face dlib finds, aligned the FFHQ way
  (:class:`~mystyle_pl.data.faces.FaceAnalyzer`, the project's one face finder), read in its
  mark box (pasted-back photos, cropped photos).

Images are ``uint8 [H, W, 3]`` RGB here (this runs at the file edge, on what is written).

>>> bits = payload_bits(0xABCDEF)
>>> len(bits), decode_scores(bits.astype(float)).run_id == 0xABCDEF
(48, True)
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..data.align import align_face
from ..data.faces import default_analyzer

# The mark box in an FFHQ-aligned crop (left, top, right, bottom as fractions of the side): the
# largest centred square inside the face ellipse (data.align.FACE_ELLIPSE_*, minus its feather).
MARK_BOX = (0.31, 0.39, 0.69, 0.77)
CANONICAL = 128  # px: the mark box is marked and read at this size (dwtDctSvd: 256 blocks of 4x4, ~5 votes a bit)
SCALE = 48  # dwtDctSvd's quantisation step on the U channel (library default 36; 48 survives JPEG 75 at ~38.5 dB)
TAG = 0xB5  # first payload byte: "made by mystyle-pl"
RUN_ID_BITS = 24
PAYLOAD_BITS = 8 + RUN_ID_BITS + 16  # tag + run id + CRC-16
CHASE_BITS = 5  # error correction: the least certain bits flipped in every combination (2^5 tries)
# The smallest crop side that carries the mark: measured (benchmarks/provenance.py --crop-sizes, table in
# docs/provenance.md) as the smallest side read back every time as written and after a half-size resize
# (176 px: 4/8 after the resize; 192 px: 8/8). JPEG needs more (90: from 320 px; 75: from 448 px). A
# smaller crop is written with its manifest and XMP only, and its record says so (skip_reason).
MIN_CROP_PX = 192


def new_run_id() -> int:
    """A random 24-bit run id (shown as 6 hex digits), one per run that writes images."""
    return secrets.randbits(RUN_ID_BITS)


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT (polynomial 0x1021, initial 0xFFFF) of a bit array, as 16 bits (MSB first)."""
    reg = 0xFFFF
    for b in np.asarray(bits, dtype=np.uint8):
        top = ((reg >> 15) & 1) ^ int(b)
        reg = (reg << 1) & 0xFFFF
        if top:
            reg ^= 0x1021
    return np.array([(reg >> (15 - i)) & 1 for i in range(16)], dtype=np.uint8)


def _int_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def payload_bits(run_id: int) -> np.ndarray:
    """The 48 bits written for ``run_id`` (0 <= run_id < 2^24): tag, run id, CRC-16 of both."""
    if not 0 <= int(run_id) < 2**RUN_ID_BITS:
        raise ValueError(f"run_id must be in [0, 2^{RUN_ID_BITS}), got {run_id}")
    data = np.concatenate([_int_bits(TAG, 8), _int_bits(int(run_id), RUN_ID_BITS)])
    return np.concatenate([data, crc16(data)])


@dataclass
class Decoded:
    """A payload that passed the CRC: the run id, how many bits were corrected, how sure the votes were."""

    run_id: int
    corrected: int  # bits flipped by the error correction (0 = every bit read right)
    confidence: float  # mean |vote - 0.5| * 2 over the 48 bits: 1 = unanimous, 0 = coin flips

    @property
    def run_hex(self) -> str:
        return f"{self.run_id:06x}"


def decode_scores(scores: np.ndarray) -> Decoded | None:
    """Error-correct 48 soft votes (each in [0, 1], 1 = bit one) into a payload, or None (no mark)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (PAYLOAD_BITS,) or not np.isfinite(scores).all():
        return None
    hard = (scores > 0.5).astype(np.uint8)
    order = np.argsort(np.abs(scores - 0.5))[:CHASE_BITS]  # least certain first
    best: Decoded | None = None
    for pattern in range(2**CHASE_BITS):
        bits = hard.copy()
        flips = [order[i] for i in range(CHASE_BITS) if (pattern >> i) & 1]
        bits[flips] ^= 1
        data = bits[:32]
        if int("".join(map(str, data[:8])), 2) != TAG or not np.array_equal(crc16(data), bits[32:]):
            continue
        if best is None or len(flips) < best.corrected:
            run_id = int("".join(map(str, data[8:32])), 2)
            best = Decoded(run_id, len(flips), float(np.mean(np.abs(scores - 0.5)) * 2))
    return best


# ------------------------------------------------------------------------------ pixels


def _embedder(bits: np.ndarray | None = None):
    # Lazy: cv2 and imwatermark load only when an image is marked or read (`import mystyle_pl`
    # stays light, and the tools that never write images do not pay for OpenCV).
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    marks = [int(b) for b in bits] if bits is not None else []
    return EmbedDwtDctSvd(watermarks=marks, wmLen=PAYLOAD_BITS, scales=[0, SCALE, 0], block=4)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float or uint8 ``[H, W, C]`` to ``size = (w, h)``: area when shrinking, bicubic when growing."""
    import cv2  # lazy, see _embedder

    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    interp = cv2.INTER_AREA if size[0] * size[1] < w * h else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interp)


def _box(side_w: int, side_h: int, box: tuple[float, float, float, float] = MARK_BOX) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return round(x0 * side_w), round(y0 * side_h), round(x1 * side_w), round(y1 * side_h)


def embed_region(region: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Mark ``uint8 [h, w, 3]`` RGB with ``bits``: marked at :data:`CANONICAL` px, the difference
    resized back and added (-> ``uint8 [h, w, 3]``)."""
    import cv2  # lazy, see _embedder

    h, w = region.shape[:2]
    small = _resize(region.astype(np.float32), (CANONICAL, CANONICAL))
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    marked = cv2.cvtColor(_embedder(bits).encode(bgr.copy()).astype(np.float32), cv2.COLOR_BGR2RGB)
    delta = _resize(marked - small, (w, h))
    return np.clip(np.rint(region.astype(np.float32) + delta), 0, 255).astype(np.uint8)


def read_scores(region: np.ndarray) -> np.ndarray:
    """The 48 soft votes (in [0, 1]) read from ``uint8 [h, w, 3]`` RGB resized to :data:`CANONICAL` px."""
    import cv2  # lazy, see _embedder

    small = _resize(region.astype(np.float32), (CANONICAL, CANONICAL))
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    emb = _embedder()
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    import pywt  # lazy, with cv2

    low, _ = pywt.dwt2(yuv[:, :, 1], "haar")
    votes = emb.decode_frame(low, SCALE, [[] for _ in range(PAYLOAD_BITS)])
    return np.array([np.mean(v) for v in votes], dtype=np.float64)


def can_mark(crop: np.ndarray) -> bool:
    """True when ``crop`` (``[R, R, 3]``) is at least :data:`MIN_CROP_PX` px on its shorter side."""
    return min(crop.shape[:2]) >= MIN_CROP_PX


def skip_reason(crop: np.ndarray) -> str | None:
    """Why ``crop`` (``[R, R, 3]``) is not marked, as records and ``verify`` say it
    (``"skipped: crop 128 px < 170 px minimum"``), or None when it can be."""
    return None if can_mark(crop) else f"skipped: crop {min(crop.shape[:2])} px < {MIN_CROP_PX} px minimum"


def mark_crop(crop: np.ndarray, run_id: int, check_size: bool = True) -> np.ndarray:
    """Mark an FFHQ-aligned crop ``uint8 [R, R, 3]`` in its mark box (every other pixel unchanged).

    Raises ``ValueError`` when the crop is too small to carry the mark (see :func:`can_mark`);
    ``check_size=False`` marks it anyway (the benchmark that measures the minimum)."""
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB crop [R, R, 3], got {crop.dtype} {crop.shape}")
    if check_size and not can_mark(crop):
        raise ValueError(f"a {crop.shape[1]}x{crop.shape[0]} crop is too small to carry the watermark "
                         f"(at least {MIN_CROP_PX} px)")  # fmt: skip
    x0, y0, x1, y1 = _box(crop.shape[1], crop.shape[0])
    out = crop.copy()
    out[y0:y1, x0:x1] = embed_region(crop[y0:y1, x0:x1], payload_bits(run_id))
    return out


def read_crop(crop: np.ndarray) -> tuple[Decoded | None, np.ndarray]:
    """Read the mark of an image taken as an aligned crop: ``(payload or None, the 48 votes)``."""
    x0, y0, x1, y1 = _box(crop.shape[1], crop.shape[0])
    if min(x1 - x0, y1 - y0) < 8:
        return None, np.full(PAYLOAD_BITS, 0.5)
    scores = read_scores(crop[y0:y1, x0:x1])
    return decode_scores(scores), scores


@dataclass
class WatermarkResult:
    """What :func:`find_watermark` found (``where``: ``"crop"`` or ``"face <i>"``; None when not found)."""

    found: bool
    run_id: str | None = None  # 6 hex digits
    corrected_bits: int | None = None
    confidence: float | None = None
    where: str | None = None
    faces_searched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_watermark(image: np.ndarray, analyzer=None, search_faces: bool = True) -> WatermarkResult:
    """Look for the mark in ``uint8 [H, W, 3]`` RGB: the whole image as an aligned crop, then each
    face found by ``analyzer`` (a :class:`~mystyle_pl.data.faces.FaceAnalyzer`; None = the
    project's dlib one) aligned the FFHQ way. ``search_faces=False``: the crop reading only."""
    decoded, _ = read_crop(image)
    if decoded is not None:
        return WatermarkResult(True, decoded.run_hex, decoded.corrected, round(decoded.confidence, 3), "crop")
    if not search_faces:
        return WatermarkResult(False)
    if analyzer is None:
        analyzer = default_analyzer()
    faces = analyzer.analyze(image, describe=False)
    for i, face in enumerate(faces):
        side = max(face.box.right - face.box.left, face.box.bottom - face.box.top)
        resolution = int(min(1024, max(CANONICAL, round(side / (MARK_BOX[2] - MARK_BOX[0])))))
        aligned, _ = align_face(image, face.landmarks, resolution=resolution)
        decoded, _ = read_crop(aligned)
        if decoded is not None:
            return WatermarkResult(True, decoded.run_hex, decoded.corrected, round(decoded.confidence, 3), f"face {i}",
                                   len(faces))  # fmt: skip
    return WatermarkResult(False, faces_searched=len(faces))


__all__ = [
    "CANONICAL",
    "MARK_BOX",
    "MIN_CROP_PX",
    "PAYLOAD_BITS",
    "Decoded",
    "WatermarkResult",
    "can_mark",
    "crc16",
    "decode_scores",
    "embed_region",
    "find_watermark",
    "mark_crop",
    "new_run_id",
    "payload_bits",
    "read_crop",
    "read_scores",
    "skip_reason",
]
