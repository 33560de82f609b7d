"""FFHQ face alignment and its inverse (pasting an aligned result back into the photo).

The FFHQ recipe (Karras et al., "A Style-Based Generator Architecture for GANs", the
``ffhq-dataset`` alignment), as MyStyle uses it:

1. from the 68 landmarks take the eye centres and the mouth corners; the crop is a square
   ("quad") centred a little below the eyes, turned so that the eyes are level, with half-side
   ``max(2.0 * |eye-to-eye|, 1.8 * |eye-to-mouth|)``;
2. *shrink*: photos whose quad is 4x the output or more are first reduced by an integer factor;
3. *crop* the quad's bounding box plus a 10% border;
4. *pad*: where the quad leaves the photo, reflect-pad it, blur the padding progressively and
   fade it towards the median colour (so no hard mirror seams reach the generator);
5. *transform*: resample the quad into a square (bilinear, supersampled up to 4x) and reduce it
   to the output resolution with a Lanczos filter.

Only the quad matters geometrically; steps 2-4 only decide which pixels feed the resampling.
:class:`AlignTransform` therefore stores the quad in source pixels together with the source's
size and file, and maps points both ways; :func:`paste_back` warps an aligned-size result back
into the source photo through the inverse map with a feathered :func:`face_mask`.

Coordinates are pixel indices (the centre of pixel ``(row i, column j)`` is ``x=j, y=i``),
the convention of landmark detectors. An aligned image of resolution ``R`` covers the quad
exactly: the aligned pixel ``(u, v)`` shows the source point
``tl + (tr - tl) * (u + 0.5) / R + (bl - tl) * (v + 0.5) / R`` (corners of the quad, see
:attr:`AlignTransform.quad`), whatever ``R`` is.

>>> lm = np.zeros((68, 2)); lm[36:42] = [100, 100]; lm[42:48] = [140, 100]; lm[48] = [105, 150]; lm[54] = [135, 150]
>>> ffhq_quad(lm).round(1).tolist()
[[30.0, 15.0], [30.0, 195.0], [210.0, 195.0], [210.0, 15.0]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io import to_tensor, to_uint8
from PIL import Image, ImageFilter

# ----------------------------------------------------------------------------------------
# the quad


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square from 68 landmarks: ``float64 [4, 2]`` corners, in the order
    top-left, bottom-left, bottom-right, top-right (as seen in the aligned image)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2] (iBUG 300-W order), got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)  # the eye on the image's left
    eye_right = lm[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_mid = (lm[48] + lm[54]) / 2  # outer mouth corners
    eye_to_mouth = mouth_mid - eye_mid
    # The horizontal axis of the crop: the eye line, corrected by the (rotated) eye-mouth axis.
    axis_x = np.array([eye_to_eye[0] + eye_to_mouth[1], eye_to_eye[1] - eye_to_mouth[0]])
    norm = math.hypot(*axis_x)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError("degenerate landmarks: the eyes and mouth coincide")
    half = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    x = axis_x / norm * half
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees (image y points down)
    centre = eye_mid + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


@dataclass
class AlignTransform:
    """Where an aligned face came from: JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`).

    The aligned image (of any resolution) covers ``quad`` exactly; see the module docstring
    for the coordinate convention.
    """

    quad: list[list[float]]  # [4, 2] source pixels: top-left, bottom-left, bottom-right, top-right
    source_size: tuple[int, int]  # (width, height) of the source photo, after EXIF orientation
    resolution: int  # side of the aligned image that was written
    source_file: str | None = None  # the source photo (relative to the raw folder when prepared)
    version: int = 1

    def __post_init__(self):
        q = np.asarray(self.quad, dtype=np.float64)
        if q.shape != (4, 2):
            raise ValueError(f"quad must be [4, 2] corners, got shape {q.shape}")
        self.quad = q.tolist()
        self.source_size = (int(self.source_size[0]), int(self.source_size[1]))
        self.resolution = int(self.resolution)

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quad"] = [[round(float(v), 4) for v in p] for p in self.quad]
        d["source_size"] = list(self.source_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlignTransform":
        return cls(quad=d["quad"], source_size=tuple(d["source_size"]), resolution=d["resolution"],
                   source_file=d.get("source_file"), version=d.get("version", 1))  # fmt: skip

    # -- geometry
    @property
    def face_size(self) -> float:
        """Side of the quad in source pixels (the FFHQ ``qsize``)."""
        q = np.asarray(self.quad)
        return float(np.linalg.norm(q[3] - q[0]))

    @property
    def crop_size(self) -> float:
        """Side of the quad's bounding box plus the FFHQ 10% border: the crop region, in source pixels."""
        q = np.asarray(self.quad)
        return float((q.max(axis=0) - q.min(axis=0)).max() + 2 * max(round(self.face_size * 0.1), 3))

    @property
    def rotation_degrees(self) -> float:
        """Angle of the aligned image's x axis in the source photo (0 = upright face)."""
        q = np.asarray(self.quad)
        d = q[3] - q[0]
        return float(math.degrees(math.atan2(d[1], d[0])))

    def matrix(self, resolution: int | None = None) -> np.ndarray:
        """``[3, 3]`` affine map: aligned pixel ``(u, v, 1)`` at ``resolution`` -> source pixel ``(x, y, 1)``."""
        r = float(resolution or self.resolution)
        tl, bl, _, tr = np.asarray(self.quad, dtype=np.float64)
        a, b = (tr - tl) / r, (bl - tl) / r
        m = np.eye(3)
        m[:2, 0], m[:2, 1], m[:2, 2] = a, b, tl + 0.5 * (a + b)
        return m

    def to_source(self, points: np.ndarray, resolution: int | None = None) -> np.ndarray:
        """Aligned pixel coordinates ``[N, 2]`` -> source pixel coordinates."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix(resolution)[:2, :2].T + self.matrix(resolution)[:2, 2]

    def to_aligned(self, points: np.ndarray, resolution: int | None = None) -> np.ndarray:
        """Source pixel coordinates ``[N, 2]`` -> aligned pixel coordinates."""
        inv = np.linalg.inv(self.matrix(resolution))
        p = np.asarray(points, dtype=np.float64)
        return p @ inv[:2, :2].T + inv[:2, 2]


# ----------------------------------------------------------------------------------------
# alignment


def align_face(
    image: np.ndarray | torch.Tensor,
    landmarks: np.ndarray,
    resolution: int = 1024,
    *,
    source_file: str | None = None,
    supersample: int = 4,
    enable_padding: bool = True,
) -> tuple[np.ndarray | torch.Tensor, AlignTransform]:
    """Align one face the FFHQ way.

    ``image``: ``uint8 [H, W, 3]`` (or a tensor ``[1, 3, H, W]`` in ``[-1, 1]``, then the result is
    one too); ``landmarks``: ``[68, 2]`` in ``image``'s pixels. ``supersample``: the quad is
    resampled at up to this multiple of ``resolution`` before the final Lanczos reduction (FFHQ:
    4096 for 1024, i.e. 4); it is never larger than the quad needs.
    Returns the aligned ``uint8 [resolution, resolution, 3]`` image and its :class:`AlignTransform`.
    """
    as_tensor = isinstance(image, torch.Tensor)
    if as_tensor:
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise ValueError(f"expected a tensor [1, 3, H, W] in [-1, 1], got {tuple(image.shape)}")
        image = to_uint8(image)[0]
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    quad = ffhq_quad(landmarks)
    height, width = image.shape[:2]
    transform = AlignTransform(quad=quad, source_size=(width, height), resolution=resolution, source_file=source_file)
    aligned = _resample_quad(image, quad, resolution, supersample, enable_padding)
    if as_tensor:
        return to_tensor(aligned), transform
    return aligned, transform


def _resample_quad(image: np.ndarray, quad: np.ndarray, resolution: int, supersample: int, enable_padding: bool) -> np.ndarray:
    img = Image.fromarray(image)
    q = quad + 0.5  # PIL's continuous coordinates: pixel i spans [i, i + 1)
    qsize = float(np.linalg.norm(quad[3] - quad[0]))

    # Shrink: reduce big photos by an integer factor so that the quad is < ~4x the output.
    shrink = int(math.floor(qsize / resolution * 0.5))
    if shrink > 1:
        new_size = (max(1, int(round(img.size[0] / shrink))), max(1, int(round(img.size[1] / shrink))))
        q = q * (np.array(new_size) / np.array(img.size))
        img = img.resize(new_size, Image.Resampling.LANCZOS)
        qsize /= shrink

    # Crop: the quad's bounding box plus a border, within the photo.
    border = max(int(round(qsize * 0.1)), 3)
    lo = np.floor(q.min(axis=0)).astype(int) - border
    hi = np.ceil(q.max(axis=0)).astype(int) + border
    crop = (max(lo[0], 0), max(lo[1], 0), min(hi[0], img.size[0]), min(hi[1], img.size[1]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError("the face quad lies entirely outside the photo")
    if crop != (0, 0, img.size[0], img.size[1]):
        img = img.crop(crop)
        q = q - np.array(crop[:2])

    # Pad: where the quad leaves the photo, reflect, blur towards the edge, fade to the median.
    lo = np.floor(q.min(axis=0)).astype(int)
    hi = np.ceil(q.max(axis=0)).astype(int)
    pad = [max(border - lo[0], 0), max(border - lo[1], 0), max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0)]
    if enable_padding and max(pad) > border - 4:
        pad = [max(p, int(round(qsize * 0.3))) for p in pad]
        arr = _reflect_pad(np.asarray(img, dtype=np.float32), pad)
        h, w = arr.shape[:2]
        yy, xx = np.ogrid[:h, :w]
        xx, yy = xx.astype(np.float32), yy.astype(np.float32)
        # 0 inside the photo, rising to 1 at the padded image's edge.
        ramp = np.maximum(
            1.0 - np.minimum(xx / max(pad[0], 1), (w - 1 - xx) / max(pad[2], 1)),
            1.0 - np.minimum(yy / max(pad[1], 1), (h - 1 - yy) / max(pad[3], 1)),
        )[..., None]
        # PIL's Gaussian (three box passes) is within one gray level of scipy's and 3x faster.
        blurred = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(qsize * 0.02))
        blurred = np.asarray(blurred, dtype=np.float32)
        arr += (blurred - arr) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(ramp, 0.0, 1.0)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
        q = q + np.array(pad[:2])

    # Transform: the quad to a square, supersampled, then a Lanczos reduction.
    factor = int(min(max(math.ceil(qsize / resolution), 1), max(supersample, 1)))
    size = resolution * factor
    img = img.transform((size, size), Image.Transform.QUAD, tuple(q.flatten()), Image.Resampling.BILINEAR)
    if factor > 1:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def _reflect_pad(arr: np.ndarray, pad: Sequence[int]) -> np.ndarray:
    """``np.pad(mode='reflect')`` that also works when a pad exceeds the image (reflects repeatedly)."""
    left, top, right, bottom = pad
    while left or top or right or bottom:
        h, w = arr.shape[:2]
        step = [min(left, w - 1), min(top, h - 1), min(right, w - 1), min(bottom, h - 1)]
        if max(step) <= 0:  # a 1-pixel-wide image: replicate instead
            return np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="edge")
        arr = np.pad(arr, ((step[1], step[3]), (step[0], step[2]), (0, 0)), mode="reflect")
        left, top, right, bottom = left - step[0], top - step[1], right - step[2], bottom - step[3]
    return arr


# ----------------------------------------------------------------------------------------
# the inverse: pasting back

# The face region in FFHQ-aligned coordinates (fractions of the side): an ellipse around the
# mean landmark layout of FFHQ-aligned faces (brows to chin, cheek to cheek, plus forehead).
FACE_ELLIPSE_CENTRE = (0.5, 0.58)
FACE_ELLIPSE_RADII = (0.30, 0.36)


def face_mask(resolution: int, feather: float = 0.06, device: torch.device | str | None = None) -> torch.Tensor:
    """A soft face mask in aligned coordinates: ``[1, 1, R, R]`` in ``[0, 1]``, 1 = face.

    An ellipse covering forehead, cheeks and chin of an FFHQ-aligned face, with a smooth
    (cosine) fall-off of ``feather`` x ``R`` pixels straddling its edge.

    >>> m = face_mask(64)
    >>> tuple(m.shape), float(m[0, 0, 36, 32]), float(m[0, 0, 0, 0])
    ((1, 1, 64, 64), 1.0, 0.0)
    """
    r = torch.arange(resolution, dtype=torch.float32, device=device)
    c = (r + 0.5) / resolution
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    (cx, cy), (rx, ry) = FACE_ELLIPSE_CENTRE, FACE_ELLIPSE_RADII
    # Approximate distance outside the ellipse boundary, in fractions of the side.
    rho = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    dist = (rho - 1.0) * min(rx, ry)
    if feather <= 0:
        mask = (dist <= 0).float()
    else:
        t = (dist / feather + 0.5).clamp(0, 1)
        mask = 0.5 * (1 + torch.cos(math.pi * t))
    return mask[None, None]


def paste_back(
    source_image: torch.Tensor,
    aligned_result: torch.Tensor,
    transform: AlignTransform,
    feather: float = 0.06,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp an aligned result back into its source photo, blended through a feathered face mask.

    ``source_image``: ``[1 or B, 3, H, W]`` in ``[-1, 1]``: the photo the transform was computed on,
    as :func:`~mystyle_pl.data.io.read_image` returns it (EXIF orientation applied);
    ``aligned_result``: ``[B, 3, R, R]`` in ``[-1, 1]``, any ``R`` (it covers the quad exactly);
    ``mask``: optional ``[1 or B, 1, R', R']`` in aligned coordinates, 1 = take the result
    (default: :func:`face_mask` with ``feather``).
    Returns ``(composited [B, 3, H, W], weight [B, 1, H, W])`` where ``weight`` is the warped
    mask: 1 where the pixel comes from the result, 0 where the source is kept.
    """
    if source_image.ndim != 4 or source_image.shape[1] != 3:
        raise ValueError(f"source_image must be [B, 3, H, W], got {tuple(source_image.shape)}")
    if aligned_result.ndim != 4 or aligned_result.shape[1] != 3 or aligned_result.shape[2] != aligned_result.shape[3]:
        raise ValueError(f"aligned_result must be [B, 3, R, R], got {tuple(aligned_result.shape)}")
    height, width = source_image.shape[2:]
    if (width, height) != tuple(transform.source_size):
        raise ValueError(f"source_image is {width}x{height} but the transform was made on a "
                         f"{transform.source_size[0]}x{transform.source_size[1]} photo")  # fmt: skip
    batch = max(source_image.shape[0], aligned_result.shape[0])
    res = aligned_result.shape[-1]
    device, dtype = source_image.device, source_image.dtype
    result = aligned_result.to(device=device, dtype=dtype)
    if mask is None:
        mask = face_mask(res, feather=feather, device=device)
    mask = mask.to(device=device, dtype=dtype)

    # Work only on the quad's bounding box (clipped to the photo).
    q = np.asarray(transform.quad)
    x0, y0 = np.floor(q.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(q.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    out = source_image.expand(batch, -1, -1, -1).clone()
    weight = torch.zeros(batch, 1, height, width, device=device, dtype=dtype)
    if x1 <= x0 or y1 <= y0:
        return out, weight

    # Where the source face is smaller than the result, low-pass the result first (no aliasing).
    target = int(round(transform.face_size))
    if target < res:
        result = F.interpolate(result, size=(max(target, 1), max(target, 1)), mode="bilinear", antialias=True, align_corners=False)
        if mask.shape[-1] > target:
            mask = F.interpolate(mask, size=(max(target, 1), max(target, 1)), mode="bilinear", antialias=True, align_corners=False)

    # Source pixel -> aligned coordinates at resolution 1 (s, t in [0, 1] across the quad) -> grid.
    inv = torch.as_tensor(np.linalg.inv(transform.matrix(1)), dtype=torch.float64)
    ys = torch.arange(y0, y1, dtype=torch.float64)
    xs = torch.arange(x0, x1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    u = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]  # = s - 0.5 at resolution 1
    v = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    grid = torch.stack([2 * (u + 0.5) - 1, 2 * (v + 0.5) - 1], dim=-1)[None].to(device=device, dtype=dtype)
    warped = F.grid_sample(result, grid.expand(result.shape[0], -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False)
    w = F.grid_sample(mask, grid.expand(mask.shape[0], -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=False)
    region = out[:, :, y0:y1, x0:x1]
    out[:, :, y0:y1, x0:x1] = region + (warped - region) * w
    weight[:, :, y0:y1, x0:x1] = w.expand(batch, -1, -1, -1)
    return out, weight
