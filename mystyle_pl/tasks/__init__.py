"""Tasks: one degradation operator each, through the shared projection loop of :mod:`.projection`.

A task object is its own configuration (LightningCLI ``class_path: mystyle_pl.tasks.SuperResolve``)
and runs on a prior it is bound to (:mod:`.base`): ``task.run(prior, images)`` or
``prior.run(task, images)``.

========================  ==========================================  ==========================
task                      degradation D                               Python API on PersonalPrior
========================  ==========================================  ==========================
``Invert``                identity                                    ``prior.invert(img)``
``Inpaint``               masking (mask: 1 = known, 0 = hole)         ``prior.inpaint(img, mask)``
``SuperResolve``          area down-sampling (blind: blur + noise)    ``prior.super_resolve(img)``
``Colorize``              RGB -> luminance (ITU-R BT.601)             ``prior.colorize(img)``
``Edit``                  identity, then a W direction in the span    ``prior.edit(img, d, s)``
``Sample``                none: new points of the personal space      ``prior.sample(n)``
========================  ==========================================  ==========================
"""

from .base import Batch, Output, ProjectingTask, Task, check_images
from .colorize import Colorize, ColorizeResult
from .edit import Edit, EditResult, load_direction, principal_directions
from .inpaint import Inpaint, InpaintResult, mask_from_boxes, mask_from_png
from .invert import Invert, InvertResult
from .presets import PRESETS, task_settings
from .projection import ProjectionResult, ProjectionSettings, Projector
from .sample import Sample, SampleResult
from .superres import SuperResolve, SuperResolveResult

__all__ = [
    "PRESETS",
    "Batch",
    "Colorize",
    "ColorizeResult",
    "Edit",
    "EditResult",
    "Inpaint",
    "InpaintResult",
    "Invert",
    "InvertResult",
    "Output",
    "ProjectingTask",
    "ProjectionResult",
    "ProjectionSettings",
    "Projector",
    "Sample",
    "SampleResult",
    "SuperResolve",
    "SuperResolveResult",
    "Task",
    "check_images",
    "load_direction",
    "mask_from_boxes",
    "mask_from_png",
    "principal_directions",
    "task_settings",
]
