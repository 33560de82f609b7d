"""Losses: LPIPS with the project's own VGG16 / AlexNet trunks (see :mod:`mystyle_pl.losses.lpips`)."""

from .lpips import (
    BACKBONE_ASSETS,
    LPIPS,
    AlexNetFeatures,
    LPIPSMetric,
    LPIPSWeightsError,
    UnsafePickleError,
    VGG16Features,
    convert_backbone_checkpoint,
    load_backbone_state,
    lpips,
    read_backbone_checkpoint,
)

__all__ = [
    "BACKBONE_ASSETS",
    "LPIPS",
    "AlexNetFeatures",
    "LPIPSMetric",
    "LPIPSWeightsError",
    "UnsafePickleError",
    "VGG16Features",
    "convert_backbone_checkpoint",
    "load_backbone_state",
    "lpips",
    "read_backbone_checkpoint",
]
