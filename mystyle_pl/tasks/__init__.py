"""Tasks: one degradation operator each, through the shared projection loop of :mod:`.base`.

========================  ==========================================  ==========================
task                      degradation D                               Python API on PersonalPrior
========================  ==========================================  ==========================
``Invert``                identity                                    ``prior.invert(img)``
``Inpaint``               masking (mask: 1 = known, 0 = hole)         ``prior.inpaint(img, mask)``
``SuperResolve``          area down-sampling (blind: blur + noise)    ``prior.super_resolve(img)``
``Edit``                  identity, then a W direction in the span    ``prior.edit(img, d, s)``
``Sample``                none: new points of the personal space      ``prior.sample(n)``
========================  ==========================================  ==========================
"""

from .base import ProjectionResult, ProjectionSettings, Projector
from .edit import Edit, EditResult, load_direction, principal_directions
from .inpaint import Inpaint, InpaintResult, mask_from_boxes, mask_from_png
from .invert import Invert, InvertResult, ProjectedResult
from .sample import Sample, SampleResult
from .superres import SuperResolve, SuperResolveResult

__all__ = [
    "Edit",
    "EditResult",
    "Inpaint",
    "InpaintResult",
    "Invert",
    "InvertResult",
    "ProjectedResult",
    "ProjectionResult",
    "ProjectionSettings",
    "Projector",
    "Sample",
    "SampleResult",
    "SuperResolve",
    "SuperResolveResult",
    "load_direction",
    "mask_from_boxes",
    "mask_from_png",
    "principal_directions",
]
