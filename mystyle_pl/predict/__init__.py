"""``mystyle-pl predict``: the tasks of a personal prior as a LightningCLI run over a folder.

Three pieces, each chosen in ``configs/predict/<task>.yaml``:

- the model :class:`PersonalPredictor` (``--model.prior PRIOR_DIR``) with a task spec
  (``model.init_args.task``: :class:`InvertSpec`, :class:`InpaintSpec`, :class:`SuperResolveSpec`,
  :class:`EditSpec` or :class:`SampleSpec`, whose arguments are the task's);
- the data :class:`TaskInputs` (``--data.inputs PATH``; photos are aligned on the fly) or
  :class:`SampleInputs` (``--data.num_samples N``);
- the callback :class:`TaskWriter`, which writes one folder per input (PNGs, latents, record).

Example::

    mystyle-pl predict --config configs/predict/superres.yaml --model.prior PRIOR --data.inputs PHOTOS/ --data.factor 8
"""

from .data import SampleInputs, TaskBatch, TaskInputs, TaskItem, TaskRequirements
from .module import PersonalPredictor
from .specs import EditSpec, InpaintSpec, InvertSpec, Prediction, SampleSpec, SuperResolveSpec, TaskSpec
from .stop import PredictInterrupted
from .writer import NoUsableInputError, TaskWriter

__all__ = [
    "EditSpec",
    "InpaintSpec",
    "InvertSpec",
    "NoUsableInputError",
    "PersonalPredictor",
    "PredictInterrupted",
    "Prediction",
    "SampleInputs",
    "SampleSpec",
    "SuperResolveSpec",
    "TaskBatch",
    "TaskInputs",
    "TaskItem",
    "TaskRequirements",
    "TaskSpec",
    "TaskWriter",
]
