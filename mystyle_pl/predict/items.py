"""What flows through ``mystyle-pl predict``: one input (:class:`TaskItem`), a batch of them
(:class:`TaskBatch`), one input's result (:class:`Prediction`), what the task needs from its inputs
(:class:`TaskRequirements`), and the one-line reason an input failed (:func:`input_error`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import describe_error
from ..tasks.base import Output


@dataclass(frozen=True)
class TaskRequirements:
    """What the task being run needs from its inputs (the model's side of the contract)."""

    task: str  # the task's name ("invert", "inpaint", "superres", "edit", "sample")
    resolution: int  # the generator's resolution R: the side of the crops (but see low_resolution)
    takes_inputs: bool = True  # False: the task draws new images (sample) and reads no files
    low_resolution: bool = False  # inputs are R / factor px (super-resolution)
    needs_mask: bool = False  # every input needs a hole mask (inpainting)
    identity: Callable[[], tuple[Any, str]] | None = field(default=None, compare=False, repr=False)
    # () -> (the prior's identity centre [D] or None, a note); asked only when some photo is aligned here


@dataclass
class TaskItem:
    """One input of a predict run (or one sample to draw)."""

    index: int  # position in the run's input list (stable across ranks)
    name: str  # output folder name (the file stem; made unique within the run)
    source: str | None = None  # the input file (None for samples)
    image: torch.Tensor | None = None  # [3, S, S] in [-1, 1]: the face crop the task runs on
    mask: torch.Tensor | None = None  # [1, S, S] inpainting mask, 1 = known pixel, 0 = hole
    photo: object | None = None  # the TaskPhoto (full photo + AlignTransform when aligned here); a group.GroupPhoto
    # under data.faces: every face found and the selected faces' crops (the model runs each, the writer pastes all)
    factor: int | None = None  # super-resolution factor R / S
    seed: int | None = None  # sample: the seed of this sample
    error: str | None = None  # why this input cannot be used (names the file); None = usable
    warnings: list[str] = field(default_factory=list)  # what the user was warned about (several faces, ...)
    record: dict[str, Any] = field(default_factory=dict)  # fields of its record known before the task ran
    # (a photo skipped for want of the person: every face found, group_select.FaceSelection.record)

    @property
    def aligned_here(self) -> bool:
        """The input was a photo whose face was detected and aligned in this run."""
        return self.photo is not None and getattr(self.photo, "transform", None) is not None


@dataclass
class Prediction(Output):
    """One input's result, ready for the writer (tensors on the CPU after :meth:`cpu`): the task's
    :class:`~mystyle_pl.tasks.base.Output` and the input it belongs to."""

    item: TaskItem | None = None  # the input (name, source, crop, photo + transform)
    error: str | None = None  # the input could not be used (names the file); nothing but the record is written
    faces: list | None = None  # data.faces: the processed faces to paste (predict.faces.PastedFace); None = one face, item.photo's
    face_inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # several faces: input_face<N> -> crop [3, S, S]

    @classmethod
    def of(cls, item: TaskItem, output: Output) -> Prediction:
        return cls(**output.__dict__, item=item)

    @property
    def name(self) -> str:
        return self.item.name

    def inputs(self) -> dict[str, torch.Tensor]:
        """PNG stem -> the crop the task ran on (``[3, S, S]`` in [-1, 1]): ``input``, or with several
        processed faces of one photo ``input_face<N>`` per face (:mod:`.faces`); the writer writes them
        only under ``save_input``."""
        if self.face_inputs:
            return dict(self.face_inputs)
        return {} if self.item is None or self.item.image is None else {"input": self.item.image}

    def strips(self) -> dict[str, list[str]]:
        """PNG stem -> the keys of ``images`` laid side by side (left to right) into it: ``strip``, or
        with several processed faces of one photo ``strip_face<N>`` per face (its own images)."""
        if not self.strip:
            return {}
        suffixes = [f.suffix for f in self.faces or []] or [""]
        return {f"strip{s}": [f"{k}{s}" for k in self.strip] for s in suffixes}

    def cpu(self) -> Prediction:
        self.images = {k: v.detach().float().cpu() for k, v in self.images.items()}
        self.latents = {k: v.detach().float().cpu().contiguous() for k, v in self.latents.items()}
        self.face_inputs = {k: v.detach().cpu() for k, v in self.face_inputs.items()}
        if self.paste_mask is not None:
            self.paste_mask = self.paste_mask.detach().float().cpu()
        for face in self.faces or []:
            if face.paste_mask is not None:
                face.paste_mask = face.paste_mask.detach().float().cpu()
        for attr in ("image", "mask"):
            value = getattr(self.item, attr)
            if value is not None:
                setattr(self.item, attr, value.detach().cpu())
        return self


@dataclass
class TaskBatch:
    """A batch of items. Lightning calls :meth:`to` to move it: only the crops and masks move
    (the full photos stay on the host, as numpy arrays)."""

    items: list[TaskItem]

    def to(self, device: torch.device | str, **kwargs) -> TaskBatch:
        for item in self.items:
            if item.image is not None:
                item.image = item.image.to(device)
            if item.mask is not None:
                item.mask = item.mask.to(device)
        return self

    def __len__(self) -> int:
        return len(self.items)


def is_out_of_memory(error: BaseException) -> bool:
    """``MemoryError``, torch's ``OutOfMemoryError`` (CUDA) or a failed CPU allocation (a ``RuntimeError``)."""
    if isinstance(error, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                                 or "DefaultCPUAllocator" in text)  # fmt: skip


def input_error(path: str | os.PathLike | None, error: BaseException, what: str = "") -> str:
    """One line for ``failed.json``: names the file, says what went wrong (and, for out of memory,
    what to do). ``what``: the stage, e.g. "paste-back"."""
    stage = f" ({what})" if what else ""
    if is_out_of_memory(error):
        text = f"out of memory{stage}: {describe_error(error) or type(error).__name__}"
        if what == "paste-back":
            text += " (lower --data.max_photo_pixels, or --trainer.callbacks.init_args.save_photo false)"
        else:
            text += " (lower --data.batch_size, or run on a device with more memory)"
    else:
        text = describe_error(error)
        if not isinstance(error, (ValueError, OSError)):
            text = f"{type(error).__name__}{stage}: {text}"
        elif stage:
            text = f"{what}: {text}"
    if path is not None and str(path) not in text:
        text = f"{path}: {text}"
    return text


def collate_items(items: Sequence[TaskItem]) -> TaskBatch:
    """DataLoader ``collate_fn``: items of any size (grouped by size later, in the model)."""
    return TaskBatch(list(items))
