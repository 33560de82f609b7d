"""Generator families by name (used by the native format to rebuild an architecture)."""

from __future__ import annotations

from .base import Generator
from .mobilestylegan import MobileStyleGANGenerator
from .stylegan2 import StyleGAN2Generator

GENERATOR_FAMILIES: dict[str, type[Generator]] = {
    StyleGAN2Generator.family: StyleGAN2Generator,
    MobileStyleGANGenerator.family: MobileStyleGANGenerator,
}


def register_family(cls: type[Generator]) -> type[Generator]:
    """Class decorator: make a generator family loadable from native files."""
    GENERATOR_FAMILIES[cls.family] = cls
    return cls
