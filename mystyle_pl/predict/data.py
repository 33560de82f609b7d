"""The inputs of ``mystyle-pl predict``: data modules that turn files into task items.

:class:`TaskInputs` reads an image file or a folder of images (sorted, not recursive). Each
input becomes one :class:`TaskItem`: the face crop the task runs on (an aligned crop taken as
it is, or the face of a photo detected and aligned here, see
:func:`~mystyle_pl.tasks.pasteback.load_task_photo`), what paste-back needs, and for inpainting
its mask. :class:`SampleInputs` has no files: it numbers the samples to draw.

An input that cannot be used (unreadable file, no face, no face that is the prior's person, a
mask of the wrong size, a super-resolution input larger than the generator, out of memory, ...)
does not stop the run: its item carries an ``error`` that names the file, the writer logs and
records it (``failed.json``) and the run goes on; only when every input failed is the run an error.

A photo with several faces (``--data.faces``, :mod:`mystyle_pl.group`): every face is found and
matched against the prior's identity; with ``person`` (the default) the person's face(s) are
processed and pasted back and every other face and the background stay byte for byte as they
were; ``all`` processes every face, ``largest`` the largest. The input's ``record.json`` lists each
face found (box, distance to the person, what was done to it). A photo in which no face is the
person is reported ("no face of the person: closest 0.71, threshold 0.58") and skipped (in
``failed.json``); the run goes on. ``--data.face N`` processes only the N-th face from the left
(:func:`~mystyle_pl.tasks.pasteback.choose_face`).

Under DDP each rank takes inputs ``rank, rank + world_size, ...`` (:class:`RankShardSampler`):
every input goes to exactly one rank, none is repeated, and a rank may get none (Lightning's own
predict sampler repeats nothing either, but fails when there are fewer inputs than ranks). The
data modules therefore switch ``trainer.use_distributed_sampler`` off themselves.

Which task runs decides what an input must be (the generator's resolution, low-resolution
inputs for super-resolution, a mask for inpainting): :class:`TaskRequirements`, which the command
line links from the model (``model.requirements``) to ``data.init_args.requirements``
(:mod:`mystyle_pl.lightning_cli`); the data module checks its options against it at setup.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from ..group import FACE_MODES
from ..tasks.pasteback import DEFAULT_IDENTITY_THRESHOLD, DEFAULT_MAX_PHOTO_PIXELS
from ..tasks.superres import MAX_FACTOR, MIN_FACTOR
from .datasets import IMAGE_SUFFIXES, PhotoDataset, SampleDataset, image_size, list_inputs, mask_to_crop, unique_names
from .items import Prediction, TaskBatch, TaskItem, TaskRequirements, collate_items, input_error, is_out_of_memory

__all__ = [  # the item types (predict.items) and the datasets (predict.datasets) are re-exported
    "ALIGN_MODES", "IMAGE_SUFFIXES", "PhotoDataset", "Prediction", "RankShardSampler", "SampleDataset", "SampleInputs",
    "TaskBatch", "TaskInputs", "TaskItem", "TaskRequirements", "collate_items", "image_size", "input_error",
    "is_out_of_memory", "list_inputs", "mask_to_crop", "unique_names",
]  # fmt: skip

log = logging.getLogger(__name__)

ALIGN_MODES = ("auto", "always", "never")


class RankShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(n)``: each index on exactly one rank,
    in order, nothing repeated or padded; a rank gets none when ``n < world_size``.

    >>> [list(RankShardSampler(5, r, 2)) for r in range(2)], list(RankShardSampler(1, 1, 2))
    ([[0, 2, 4], [1, 3]], [])
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


# ----------------------------------------------------------------------------------------
# data modules


class _ShardedPredictData(LightningDataModule):
    """Shards the predict inputs over the ranks itself (see the module docstring)."""

    requirements: TaskRequirements | None = None

    def _world(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer, else ``(1, 0)``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))

    def setup(self, stage: str) -> None:
        trainer = getattr(self, "trainer", None)
        connector = getattr(trainer, "_accelerator_connector", None)
        if connector is not None and self._world()[0] > 1 and getattr(connector, "use_distributed_sampler", False):
            log.info(
                "%s: setting use_distributed_sampler=False: it gives each input to one rank itself "
                "(set `trainer.use_distributed_sampler: false` to silence this)", type(self).__name__,
            )  # fmt: skip
            connector.use_distributed_sampler = False

    def _loader(self, dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
        world_size, rank = self._world()
        return DataLoader(
            dataset, batch_size=batch_size, sampler=RankShardSampler(len(dataset), rank, world_size),
            num_workers=num_workers, collate_fn=collate_items,
            worker_init_fn=_ignore_sigterm if num_workers > 0 else None,
        )  # fmt: skip


def _ignore_sigterm(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM: a scheduler signals every process of the job, and a worker
    killed by it would end the run with an error instead of the clean stop of the main process
    (:mod:`~mystyle_pl.predict.stop`), which shuts the workers down itself."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class TaskInputs(_ShardedPredictData):
    """Image files for a task (invert, inpaint, superres, edit): ``--data.inputs PATH``."""

    def __init__(
        self,
        inputs: str | list[str],  # an image file, a folder of images (sorted, not recursive), or a list of them
        batch_size: int = 4,  # inputs projected together on each device
        num_workers: int = 0,  # DataLoader worker processes (reading, face detection, alignment); 0 = main process
        align: str = "auto",  # "auto": square = aligned crop, other photos aligned here; "always"; "never"
        factor: int | None = None,  # superres: result side / input side (2..32); needed for photos aligned here;
        # None = output_resolution / the crop's side
        output_resolution: int | None = None,  # superres: side of the result in px when no factor is given (a divisor
        # of the generator's R, e.g. 256); photos aligned here are aligned at output_resolution / factor; None = R
        mask: str
        | None = None,  # inpaint: PNG, white = hole, on the input or its aligned crop; or a folder of <stem>.png
        boxes: list[str] | None = None,  # inpaint: holes "x0,y0,x1,y1" in the input's pixels (x1, y1 exclusive)
        strict: bool = False,  # stop at the first unusable input instead of skipping it
        faces: str | None = None,  # photos aligned here: which faces are processed and pasted back: "person" (None: the default) = the
        # face(s) within identity_threshold of the prior's identity (a photo without the person is skipped), "all", "largest";
        # every other face and the background stay byte for byte as they were (mystyle_pl.group)
        face: int | str = "auto",  # "auto" = as data.faces says; N = only the N-th face from the left (not with data.faces)
        identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # max descriptor distance to the prior's identity that is the person (prepare's rule)
        max_photo_pixels: int | None = DEFAULT_MAX_PHOTO_PIXELS,  # cap on photo.png (paste-back) in pixels; larger is written smaller, with a warning; null = no cap
        requirements: TaskRequirements | None = None,  # what the task needs from its inputs: linked from the model
        # by the command line (model.requirements); from Python, pass PersonalPredictor(...).requirements
    ) -> None:
        super().__init__()
        if align not in ALIGN_MODES:
            raise ValueError(f"data.align must be one of {ALIGN_MODES}, got {align!r}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if mask is not None and boxes is not None:
            raise ValueError("give data.mask or data.boxes, not both")
        if isinstance(face, str) and face != "auto":
            if not face.strip().isdigit():
                raise ValueError(f"data.face must be 'auto' or a face number 0, 1, ... (from the left), got {face!r}")
            face = int(face)
        if isinstance(face, int) and face < 0:
            raise ValueError(f"data.face must be 'auto' or a face number 0, 1, ... (from the left), got {face}")
        if faces is not None and faces not in FACE_MODES:
            raise ValueError(f"data.faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")
        if faces is not None and face != "auto":
            raise ValueError(f"give data.faces ({faces}) or data.face ({face}), not both: data.face N processes only the N-th face")
        if identity_threshold <= 0:
            raise ValueError(f"data.identity_threshold must be positive, got {identity_threshold}")
        if max_photo_pixels is not None and max_photo_pixels < 1:
            raise ValueError(f"data.max_photo_pixels must be a positive number of pixels or null, got {max_photo_pixels}")
        # Missing paths are refused here, before the prior is loaded or any work starts.
        entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or [])
        for entry in entries:
            if not Path(entry).exists():
                raise FileNotFoundError(f"{entry}: input not found (--data.inputs: an image file or a folder of images)")
        if mask is not None and not Path(mask).exists():
            raise FileNotFoundError(f"{mask}: mask not found (--data.mask: a PNG, white = hole, or a folder of <stem>.png)")
        self.inputs, self.batch_size, self.num_workers = inputs, batch_size, num_workers
        self.align, self.factor, self.mask, self.boxes, self.strict = align, factor, mask, boxes, strict
        self.output_resolution = output_resolution
        self.face, self.identity_threshold, self.max_photo_pixels = face, identity_threshold, max_photo_pixels
        self.faces = faces if faces is not None else "person"
        self.requirements: TaskRequirements | None = requirements
        self.files: list[Path] = []
        self.names: list[str] = []
        self.identity: np.ndarray | None = None  # the prior's identity centre, when some input is aligned here
        self.identity_note: str = "not needed (no input is aligned here)"

    @property
    def input_folders(self) -> list[Path]:
        """The folders given as inputs (nothing is ever written inside them)."""
        entries = [self.inputs] if isinstance(self.inputs, (str, os.PathLike)) else list(self.inputs)
        return [Path(p) for p in entries if Path(p).is_dir()]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.configure(self.requirements)

    def configure(self, requirements: TaskRequirements | None) -> None:
        """Check the options against the task's requirements and list the inputs (at setup).

        ``requirements.identity``: a function ``() -> (centre [D] or None, note)`` giving the prior's
        identity centre; it is called only when some input is a photo whose face is aligned here.
        Raises ``ValueError`` for options the task cannot take, or no requirements at all.
        """
        if requirements is None:
            raise ValueError(
                "TaskInputs has no task requirements: run it through `mystyle-pl predict` (which links "
                "model.requirements to data.requirements) or pass requirements=PersonalPredictor(...).requirements"
            )
        identity = requirements.identity
        task, r = requirements.task, requirements.resolution
        if not requirements.takes_inputs:
            raise ValueError(f"the {task} task reads no images: use data.class_path mystyle_pl.predict.SampleInputs")
        if requirements.needs_mask and self.mask is None and self.boxes is None:
            raise ValueError(f"the {task} task needs holes: give --data.mask MASK.png (white = hole) or --data.boxes")
        if not requirements.needs_mask and (self.mask is not None or self.boxes is not None):
            raise ValueError(f"data.mask / data.boxes are for the inpaint task, not {task}")
        if self.output_resolution is not None:
            if not requirements.low_resolution:
                raise ValueError(f"data.output_resolution is for the superres task, not {task}")
            out = int(self.output_resolution)
            if out < 1 or out > r or r % out:
                raise ValueError(
                    f"data.output_resolution={out} must divide the generator's resolution {r} "
                    f"(one of {', '.join(str(r >> k) for k in range(6))})"
                )
        if self.factor is not None:
            if not requirements.low_resolution:
                raise ValueError(f"data.factor is for the superres task, not {task}")
            if not MIN_FACTOR <= self.factor <= MAX_FACTOR:
                raise ValueError(f"data.factor={self.factor}: the factor must be an integer in {MIN_FACTOR}..{MAX_FACTOR}")
        self.requirements = requirements
        self.files = list_inputs(self.inputs, exclude=[self.mask] if self.mask is not None else [])
        self.names = unique_names(self.files)
        if identity is not None and self.identity is None and any(self._aligned_here(f) for f in self.files):
            centre, self.identity_note = identity()
            self.identity = None if centre is None else np.asarray(centre, dtype=np.float64)
            log.info("identity of the prior (picks the face in photos): %s", self.identity_note)

    def _aligned_here(self, path: Path) -> bool:
        """Whether ``path`` will be face-detected and aligned (a cheap header read)."""
        if self.align == "never":
            return False
        if self.align == "always":
            return True
        try:
            w, h = image_size(path)
        except (ValueError, OSError):
            return False  # unreadable: it fails later, with its reason
        return w != h

    def planned(self, rank: int = 0, world_size: int = 1) -> list[dict]:
        """The inputs given to ``rank``: ``[{"index", "name", "source"}]`` (what a stopped run lists as not done)."""
        return [{"index": i, "name": self.names[i], "source": str(self.files[i])}
                for i in RankShardSampler(len(self.files), rank, world_size)]  # fmt: skip

    def predict_dataset(self) -> PhotoDataset:
        if self.requirements is None:
            raise RuntimeError("TaskInputs.configure(requirements) was not called (use it with PersonalPredictor)")
        return PhotoDataset(
            self.files, self.names, replace(self.requirements, identity=None), align=self.align, factor=self.factor,
            output_resolution=self.output_resolution,
            mask=self.mask, boxes=self.boxes, strict=self.strict, identity=self.identity, face=self.face,
            identity_threshold=self.identity_threshold, faces=self.faces,
        )  # fmt: skip

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset(), self.batch_size, self.num_workers)


class SampleInputs(_ShardedPredictData):
    """No files: ``num_samples`` new images of the person (the sample task)."""

    def __init__(
        self,
        num_samples: int = 8,  # how many samples to draw
        seed: int = 0,  # seeds every sample (sample i always gets the same seed for a given seed)
        batch_size: int = 8,  # samples per step on each device
        requirements: TaskRequirements | None = None,  # what the task needs: linked from the model (see TaskInputs)
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"data.num_samples must be >= 1, got {num_samples}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.requirements: TaskRequirements | None = requirements

    @property
    def input_folders(self) -> list[Path]:
        return []

    max_photo_pixels = None  # samples have no photo to paste into

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.configure(self.requirements)

    def configure(self, requirements: TaskRequirements | None) -> None:
        """Raises ``ValueError`` when the task needs input images (or no requirements are given)."""
        if requirements is None:
            raise ValueError("SampleInputs has no task requirements: run it through `mystyle-pl predict`")
        if requirements.takes_inputs:
            raise ValueError(
                f"the {requirements.task} task needs input images: use data.class_path "
                "mystyle_pl.predict.TaskInputs with --data.inputs PATH"
            )
        self.requirements = requirements

    def planned(self, rank: int = 0, world_size: int = 1) -> list[dict]:
        """The samples given to ``rank``: ``[{"index", "name", "source": None}]``."""
        dataset = SampleDataset(self.num_samples, self.seed)
        return [{"index": i, "name": dataset.name(i), "source": None} for i in RankShardSampler(len(dataset), rank, world_size)]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(SampleDataset(self.num_samples, self.seed), self.batch_size)
