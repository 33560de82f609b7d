"""``mystyle-pl predict``: the tasks of a personal prior as a LightningCLI run over a folder.

Three pieces, each chosen in ``configs/predict/<task>.yaml``:

- the model :class:`PersonalPredictor` (``--model.prior PRIOR_DIR``) with a task object
  (``model.init_args.task``: a class of :mod:`mystyle_pl.tasks`, e.g. ``mystyle_pl.tasks.SuperResolve``,
  its ``init_args`` the task's settings);
- the data :class:`TaskInputs` (``--data.inputs PATH``; photos are aligned on the fly) or
  :class:`SampleInputs` (``--data.num_samples N``);
- the callback :class:`TaskWriter`, which writes one folder per input (PNGs, latents, record).

The YAMLs stack: ``configs/predict/base.yaml`` (trainer, model, writer, data defaults) is read
first, then the small file of one task. Example::

    mystyle-pl predict --config configs/predict/superres.yaml --model.prior PRIOR --data.inputs PHOTOS/ --data.factor 8
"""

from .data import SampleInputs, TaskInputs
from .items import Prediction, TaskBatch, TaskItem, TaskRequirements
from .module import PersonalPredictor
from .stop import PredictInterrupted
from .writer import NoUsableInputError, TaskWriter

__all__ = [
    "NoUsableInputError",
    "PersonalPredictor",
    "PredictInterrupted",
    "Prediction",
    "SampleInputs",
    "TaskBatch",
    "TaskInputs",
    "TaskItem",
    "TaskRequirements",
    "TaskWriter",
]
