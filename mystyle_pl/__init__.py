"""mystyle-pl: personalized generative face priors (MyStyle) with PyTorch Lightning."""

from __future__ import annotations

import os

__version__ = "0.1.0"

from .generators import Generator, StyleGAN2Generator, save_generator  # noqa: E402


def load_generator(path_or_name: str | os.PathLike, **kwargs) -> Generator:
    """Load a generator from a checkpoint path or a named asset (e.g. ``"mobilestylegan-ffhq"``).

    Asset names are fetched into the cache when needed (see ``mystyle-pl assets list``); paths
    may be native ``.safetensors``, NVIDIA ``.pkl``, rosinality ``.pt`` files, or pSp / e4e /
    ReStyle ``.pt`` checkpoints (their decoder). Keyword arguments go to the format's loader, e.g.
    ``key="g"`` to pick one generator of a ``.pt`` holding several (``formats.load_generator``).
    """
    from . import assets
    from .generators import load_generator as load_checkpoint

    if isinstance(path_or_name, str) and path_or_name in assets.REGISTRY:
        return load_checkpoint(assets.fetch(path_or_name), **kwargs)
    return load_checkpoint(path_or_name, **kwargs)


__all__ = ["Generator", "StyleGAN2Generator", "__version__", "load_generator", "save_generator"]
