"""mystyle-pl: personalized generative face priors (MyStyle) with PyTorch Lightning.

The small public API::

    from mystyle_pl import PersonalPrior, SuperResolve, load_generator
    prior = PersonalPrior.load("outputs/.../prior")
    result = prior.super_resolve("face_32px.png")             # or SuperResolve(blind=True).run(prior, img)
    result = run_photo(prior, "group.jpg", "restore")         # a whole photo: only the person's face(s) change
    result.save("restored.png")                               # labelled: Content Credentials, XMP, watermark
    save_result("face.png", prior.super_resolve(img).images[:1], "superres", source=img)   # one crop, labelled

Results saved through these carry their provenance labels by default (``provenance=False`` to opt
out, for research: ``run_photo(..., provenance=False)``, ``save_result(..., provenance=False)``).
"""

from __future__ import annotations

import os

from ._version import __version__  # noqa: E402

from . import assets  # noqa: E402
from .generators import Generator, StyleGAN2Generator, save_generator  # noqa: E402
from .generators import load_generator as load_checkpoint  # noqa: E402
from .prior import PersonalPrior  # noqa: E402
from .group import run_photo  # noqa: E402  (a task on the person's face(s) of a whole photo)
from .provenance.writing import save_result  # noqa: E402  (a result crop written labelled)
from .tasks import (  # noqa: E402  (importing the tasks registers them for the prior's shortcuts)
    Colorize,
    Edit,
    Inpaint,
    Invert,
    ProjectionSettings,
    Sample,
    SuperResolve,
    Task,
    task_settings,
)


def load_generator(path_or_name: str | os.PathLike, **kwargs) -> Generator:
    """Load a generator from a checkpoint path or a named asset (e.g. ``"mobilestylegan-ffhq"``).

    Asset names are fetched into the cache when needed (see ``mystyle-pl assets list``); paths
    may be native ``.safetensors``, NVIDIA ``.pkl``, rosinality ``.pt`` files, or pSp / e4e /
    ReStyle ``.pt`` checkpoints (their decoder). Keyword arguments go to the format's loader, e.g.
    ``key="g"`` to pick one generator of a ``.pt`` holding several (``formats.load_generator``).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unknown format.
    """
    if isinstance(path_or_name, str) and path_or_name in assets.REGISTRY:
        return load_checkpoint(assets.fetch(path_or_name), **kwargs)
    return load_checkpoint(path_or_name, **kwargs)


__all__ = [
    "Colorize",
    "Edit",
    "Generator",
    "Inpaint",
    "Invert",
    "PersonalPrior",
    "ProjectionSettings",
    "Sample",
    "StyleGAN2Generator",
    "SuperResolve",
    "Task",
    "__version__",
    "load_generator",
    "run_photo",
    "save_generator",
    "save_result",
    "task_settings",
]
