"""Losses: LPIPS (:mod:`.lpips`) with the project's own VGG16 / AlexNet trunks (:mod:`.backbones`)
and their weight readers (:mod:`.lpips_weights`)."""

from .backbones import AlexNetFeatures, VGG16Features
from .lpips import LPIPS, LPIPSMetric, lpips
from .lpips_weights import (
    BACKBONE_ASSETS,
    LPIPSWeightsError,
    UnsafePickleError,
    convert_backbone_checkpoint,
    load_backbone_state,
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
