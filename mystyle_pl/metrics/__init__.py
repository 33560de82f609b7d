"""Evaluation metrics: image quality (PSNR, SSIM, LPIPS) and identity (dlib face descriptors)."""

from .identity import (
    SAME_PERSON_THRESHOLD,
    IdentityScore,
    IdentityScorer,
    album_centre,
    cosine_similarity,
    euclidean_distance,
    same_person_share,
    summarize,
)
from .image import image_metrics, lpips_distance, psnr, ssim, to_unit_range

__all__ = [
    "SAME_PERSON_THRESHOLD",
    "IdentityScore",
    "IdentityScorer",
    "album_centre",
    "cosine_similarity",
    "euclidean_distance",
    "image_metrics",
    "lpips_distance",
    "psnr",
    "same_person_share",
    "ssim",
    "summarize",
    "to_unit_range",
]
