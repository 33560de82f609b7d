"""``PersonalPredictor``: the LightningModule of ``mystyle-pl predict``.

It loads a personal prior bundle, registers its generator (and the LPIPS module, when the task
uses one) as submodules so that Lightning places them on the device, and runs the task object
(``model.init_args.task``: ``class_path`` of a task of :mod:`mystyle_pl.tasks`, e.g.
``mystyle_pl.tasks.SuperResolve``, whose ``init_args`` are the task's settings) on every batch,
bound to the prior. What the inputs must be for this task and generator is
:attr:`PersonalPredictor.requirements`, which the command line hands to the data module
(``link_arguments`` in :mod:`mystyle_pl.lightning_cli`). The projection needs gradients: run it
with ``trainer.inference_mode: false`` (Lightning's ``no_grad`` around ``predict_step`` is lifted
here with ``torch.enable_grad``).
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from .._version import __version__
from ..prior import PersonalPrior
from ..tasks.base import Batch, Task
from . import faces
from .items import Prediction, TaskBatch, TaskItem, TaskRequirements, input_error, is_out_of_memory
from .writer import TaskWriter

log = logging.getLogger(__name__)


class PersonalPredictor(LightningModule):
    """Run one task of a personal prior over the batches of :class:`~.data.TaskInputs` /
    :class:`~.data.SampleInputs`; pair it with the :class:`~.writer.TaskWriter` callback."""

    def __init__(
        self,
        prior: str,  # the personal prior bundle folder (`mystyle-pl export`, or the ExportPrior callback of fit)
        task: Task,  # the task and its settings: class_path mystyle_pl.tasks.Invert, SuperResolve, Colorize, ...
    ) -> None:
        super().__init__()
        if not isinstance(task, Task):
            raise TypeError(f"task must be a task of mystyle_pl.tasks (e.g. mystyle_pl.tasks.Invert), got {type(task).__name__}")
        self.prior_dir = str(Path(prior))
        self.task = task
        bundle = PersonalPrior.load(prior)
        task.check(bundle)
        self.prior = bundle
        self.generator = bundle.generator  # a submodule: Lightning moves it (and so the prior) to the device
        self.lpips = task.make_lpips()  # a submodule (no parameters) or None
        self._bound: Task | None = None
        # Under DDP a rank may get no input (fewer inputs than ranks): it then just waits at the end.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)

    @property
    def requirements(self) -> TaskRequirements:
        """What the inputs must be for this task and this generator (the command line links it to
        ``data.init_args.requirements``), with a function giving the prior's identity centre."""
        task = self.task
        return TaskRequirements(
            task=task.name, resolution=self.resolution, takes_inputs=task.takes_inputs,
            low_resolution=task.low_resolution, needs_mask=task.needs_mask,
            identity=functools.partial(self.prior.identity_centre, self.prior_dir),  # picklable (DDP spawn)
        )  # fmt: skip

    # ------------------------------------------------------------------ hooks

    def _bind(self) -> Task:
        """The task bound to the prior, built once the generator is on its device."""
        if self._bound is None:
            self._bound = self.task.bind(self.prior, self.lpips, progress=self.task.takes_inputs)
        return self._bound

    def on_predict_start(self) -> None:
        self._bind()
        if not any(isinstance(cb, TaskWriter) for cb in self.trainer.callbacks):
            log.warning("no TaskWriter callback in trainer.callbacks: the results will not be saved")

    def forward(self, batch: TaskBatch) -> list[Prediction]:
        return self.predict_step(batch, 0)

    def predict_step(self, batch: TaskBatch, batch_idx: int, dataloader_idx: int = 0) -> list[Prediction]:
        """Run the task on the usable items of ``batch`` (grouped by crop size); failed items pass
        through with their error. Returns one :class:`Prediction` per item, in batch order."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError("the tasks optimise latents and need gradients: set trainer.inference_mode: false")
        out: dict[int, Prediction] = {}
        groups: dict[tuple, list[TaskItem]] = {}
        owner: dict[int, TaskItem] = {}  # id(face item) -> its photo's item (several faces: predict.faces)
        for item in batch.items:
            if item.error is not None:
                out[item.index] = Prediction(item=item, error=item.error, record=dict(item.record))
                continue
            for sub in faces.expand(item):
                owner[id(sub)] = item
                shape = tuple(sub.image.shape) if sub.image is not None else ()
                groups.setdefault(shape, []).append(sub)
        settings = self.task.config()
        parts: dict[int, list[Prediction]] = {}
        for items in groups.values():
            for pred in self._predict_group(items):
                parts.setdefault(owner[id(pred.item)].index, []).append(pred)
        for item in batch.items:
            if item.index in parts:  # a photo's faces are one group, in expand's order
                out[item.index] = faces.merge(item, parts[item.index], shared=list(self._record(item, settings)))
        for pred in out.values():
            if pred.error is not None:
                pred.record = {**self._record(pred.item, settings), **pred.record, "error": pred.error}  # + faces found
        return [out[item.index] for item in batch.items]

    def _predict_group(self, items: list[TaskItem]) -> list[Prediction]:
        """Run the task on one group of same-size items. Out of memory: the items are run one at a
        time; an item that still fails (out of memory, or a ValueError of the task) becomes a failed
        prediction naming its file; the run goes on."""
        settings = self.task.config()
        start = time.perf_counter()
        try:
            with torch.enable_grad():
                predictions = self.predict_items(items)
        except (ValueError, MemoryError, RuntimeError) as e:
            if not (isinstance(e, ValueError) or is_out_of_memory(e)):
                raise  # a bug, not an input's problem
            self._free_memory()
            if len(items) > 1 and is_out_of_memory(e):
                log.warning("out of memory projecting %d inputs together: running them one at a time", len(items))
                return [pred for item in items for pred in self._predict_group([item])]
            what = "projection" if is_out_of_memory(e) else ""
            return [Prediction(item=item, error=input_error(item.source or item.name, e, what)) for item in items]
        seconds = time.perf_counter() - start
        for pred in predictions:
            pred.cpu()
            pred.record = {**self._record(pred.item, settings), **pred.record,
                           "batch_size": len(items), "seconds": round(seconds, 3)}  # fmt: skip
        return predictions

    def predict_items(self, items: list[TaskItem]) -> list[Prediction]:
        """The bound task's outputs for one group of same-size usable items, as predictions."""
        first = items[0]
        batch = Batch(
            images=torch.stack([item.image for item in items]) if first.image is not None else None,
            masks=torch.stack([item.mask for item in items]) if first.mask is not None else None,
            factor=first.factor,
            labels=[item.source or item.name for item in items],
            seeds=[item.seed for item in items],
            indices=[item.index for item in items],
        )
        return [Prediction.of(item, output) for item, output in zip(items, self._bind().outputs(batch))]

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _record(self, item: TaskItem, settings: dict[str, Any]) -> dict[str, Any]:
        """The fields of record.json every task shares."""
        photo = item.photo
        record: dict[str, Any] = {
            "task": self.task.name,
            "name": item.name,
            "index": item.index,
            "source": item.source,
            "prior": self.prior_dir,
            "resolution": self.resolution,
            "settings": settings,
            "mystyle_pl_version": __version__,
        }
        if item.image is not None:
            record["input_size"] = list(item.image.shape[-2:])
        if photo is not None:
            record["aligned_here"] = item.aligned_here
            if item.aligned_here:
                record["transform"] = photo.transform.to_dict()
            choice = getattr(photo, "choice", None)
            if choice is not None:
                record["face"] = {"index": choice.index, "reason": choice.reason, "faces": [f.to_dict() for f in choice.faces]}
        if item.warnings:
            record["warnings"] = list(item.warnings)
        return record
