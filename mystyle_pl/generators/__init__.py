"""Face generators behind one contract (``base.Generator``).

Self-contained: nothing here imports from the rest of ``mystyle_pl``.
"""

from .base import Generator
from .formats import CheckpointError, detect_format, load_generator, save_generator
from .registry import GENERATOR_FAMILIES, register_family
from .mobilestylegan import MobileStyleGANGenerator
from .stylegan2 import StyleGAN2Generator

__all__ = [
    "CheckpointError",
    "GENERATOR_FAMILIES",
    "Generator",
    "MobileStyleGANGenerator",
    "StyleGAN2Generator",
    "detect_format",
    "load_generator",
    "register_family",
    "save_generator",
]
