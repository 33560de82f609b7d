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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.io import read_image_size
from ..errors import describe_error
from ..group import FACE_MODES, GroupPhoto, load_photo_faces
from ..tasks.base import Output
from ..tasks.inpaint import mask_from_boxes, mask_from_png
from ..tasks.pasteback import DEFAULT_IDENTITY_THRESHOLD, DEFAULT_MAX_PHOTO_PIXELS, TaskPhoto, load_task_photo
from ..tasks.superres import MAX_FACTOR, MIN_FACTOR

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")
ALIGN_MODES = ("auto", "always", "never")


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

    @classmethod
    def of(cls, item: TaskItem, output: Output) -> Prediction:
        return cls(**output.__dict__, item=item)

    @property
    def name(self) -> str:
        return self.item.name

    def cpu(self) -> Prediction:
        self.images = {k: v.detach().float().cpu() for k, v in self.images.items()}
        self.latents = {k: v.detach().float().cpu().contiguous() for k, v in self.latents.items()}
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


# ----------------------------------------------------------------------------------------
# listing inputs


def list_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike], exclude: Sequence[Path] = ()) -> list[Path]:
    """Image files from a file, a folder (its images, sorted, not recursive, hidden files skipped)
    or a list of these. ``exclude``: files or folders never taken as inputs (e.g. the mask)."""
    entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not entries:
        raise ValueError("data.inputs is empty: give an image file or a folder of images")
    excluded = [Path(p).resolve() for p in exclude]

    def kept(p: Path) -> bool:
        r = p.resolve()
        return not any(r == e or e in r.parents for e in excluded)

    files: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and kept(p)
            )  # fmt: skip
            if not found:
                raise ValueError(f"{path}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: input not found (--data.inputs: an image file or a folder of images)")
    return files


def unique_names(paths: Sequence[Path]) -> list[str]:
    """One output name per input: the file stem, with the suffix (then a number) added on a clash."""
    stems = [p.stem for p in paths]
    names, used = [], set()
    for path, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}_{path.suffix.lstrip('.').lower()}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as it is read (EXIF orientation applied), from its header
    (a full read when PIL cannot open it). Raises :class:`~mystyle_pl.data.io.ImageReadError` naming the file."""
    return read_image_size(path)


# ----------------------------------------------------------------------------------------
# masks


def mask_to_crop(known: torch.Tensor, photo, size: int) -> torch.Tensor:
    """Map a known-mask drawn on the input file (``[1, 1, h, w]``, **1 = known pixel, 0 = hole**)
    onto the ``size x size`` crop the task runs on -> ``[1, 1, size, size]``.

    A photo aligned here is warped through its transform; an aligned crop of another size is
    resized. Any crop pixel touched by the hole is a hole (a hole never shrinks away).
    """
    hole = 1.0 - known.float()
    transform = getattr(photo, "transform", None)
    if transform is None:
        if hole.shape[-2:] != (size, size):
            hole = F.interpolate(hole, size=(size, size), mode="area")
    else:
        h, w = hole.shape[-2:]
        m = torch.from_numpy(np.asarray(transform.matrix(size), dtype=np.float64))
        c = torch.arange(size, dtype=torch.float64)
        v, u = torch.meshgrid(c, c, indexing="ij")  # crop pixel (u = column, v = row)
        x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
        y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
        grid = torch.stack([(x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1], dim=-1)[None].float()
        hole = F.grid_sample(hole, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (hole <= 1e-3).float()


# ----------------------------------------------------------------------------------------
# datasets


class PhotoDataset(Dataset):
    """Reads and prepares one input per item; a failure becomes an item with ``error`` set."""

    def __init__(
        self,
        paths: Sequence[Path],  # the input files
        names: Sequence[str],  # their output names
        requirements: TaskRequirements,  # what the task needs
        align: str = "auto",  # see TaskInputs
        factor: int | None = None,  # see TaskInputs
        mask: str | None = None,  # see TaskInputs
        boxes: Sequence[str] | None = None,  # see TaskInputs
        strict: bool = False,  # raise instead of returning a failed item
        identity: Sequence[float] | None = None,  # the prior's identity centre [D] (picks the face); None = unknown
        face: int | str = "auto",  # see TaskInputs
        identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,  # see TaskInputs
        output_resolution: int | None = None,  # see TaskInputs
        faces: str = "person",  # see TaskInputs (used when face is "auto")
    ) -> None:
        self.paths, self.names, self.req = list(paths), list(names), requirements
        self.faces = faces
        self.output_resolution = output_resolution
        self.align, self.factor, self.mask, self.boxes, self.strict = align, factor, mask, boxes, strict
        self.identity = None if identity is None else np.asarray(identity, dtype=np.float64)
        self.face, self.identity_threshold = face, identity_threshold

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> TaskItem:
        path, name = self.paths[index], self.names[index]
        try:
            return self.load(index)
        except (ValueError, OSError, MemoryError, RuntimeError) as e:  # unreadable, no face, bad mask, out of memory ...
            message = input_error(path, e)
            if self.strict:
                raise ValueError(message) from e
            return TaskItem(index=index, name=name, source=str(path), error=message)

    def crop_size(self, path: Path) -> tuple[int, int | None]:
        """``(side of the crop the task runs on, super-resolution factor or None)`` for ``path``.

        Super-resolution: the result is ``out`` px, ``out`` = input side x ``factor`` when a factor
        is given, else ``output_resolution`` (default the generator's ``R``); ``out`` must divide
        ``R`` and the factor be an integer in 2..32. A photo aligned here is aligned at ``out / factor``.
        """
        r = self.req.resolution
        if not self.req.low_resolution:
            return r, None
        out = self.output_resolution or r
        w, h = image_size(path)
        if w == h and self.align != "always":  # an aligned low-resolution crop
            if w >= r:
                raise ValueError(
                    f"{path} is {w}x{h}, {'larger than' if w > r else 'the size of'} the generator's resolution {r}: super-resolution "
                    "needs a low-resolution input (use the invert task for a full-size face crop, or "
                    "--data.align always with --data.factor for a square photo whose face must be aligned)"
                )
            if self.factor is not None:
                target = w * self.factor
                if target > r or r % target:
                    raise ValueError(
                        f"{path} is {w}x{h}: x{self.factor} gives {target} px, which must divide the generator's "
                        f"resolution {r}; choose --data.factor so that {w} x factor is one of "
                        f"{', '.join(str(r >> k) for k in range(6) if (r >> k) > w)}"
                    )
                return w, self.factor
            if out % w or not MIN_FACTOR <= out // w <= MAX_FACTOR:
                raise ValueError(
                    f"{path} is {w}x{h}: the output resolution {out} must be the input's side times an integer "
                    f"factor in {MIN_FACTOR}..{MAX_FACTOR}; give --data.factor (e.g. 8: a {w} px face -> {8 * w} px) "
                    "or --data.output_resolution"
                )
            return w, out // w
        if self.factor is None:
            raise ValueError(
                f"{path} is {w}x{h}, not a square aligned crop: give the up-sampling factor "
                "(--data.factor) so that its face can be aligned at output resolution / factor px"
            )
        if out % self.factor:
            raise ValueError(f"data.factor={self.factor} must divide the output resolution {out}")
        return out // self.factor, self.factor

    def load(self, index: int) -> TaskItem:
        path, name = self.paths[index], self.names[index]
        size, factor = self.crop_size(path)
        if self.face == "auto":  # every face matched against the identity; data.faces picks (mystyle_pl.group)
            photo = load_photo_faces(path, size, align=self.align, name=name, identity=self.identity, faces=self.faces,
                                     threshold=self.identity_threshold)  # fmt: skip
        else:
            photo = load_task_photo(path, size, align=self.align, name=name, identity=self.identity, face=self.face,
                                    identity_threshold=self.identity_threshold)  # fmt: skip
        image = photo.image
        if tuple(image.shape) != (3, size, size):
            raise ValueError(f"{path}: prepared crop has shape {tuple(image.shape)}, expected (3, {size}, {size})")
        mask = None
        if self.req.needs_mask and isinstance(photo, GroupPhoto):
            self.load_group_masks(path, photo, size)
            image, mask = photo.image, photo.masks[0]
        elif self.req.needs_mask:
            mask = self.load_mask(path, photo, size)[0]
        return TaskItem(index=index, name=name, source=str(path), image=image, mask=mask, photo=photo, factor=factor,
                        warnings=list(photo.warnings))  # fmt: skip

    def load_group_masks(self, path: Path, photo: GroupPhoto, size: int) -> None:
        """``photo.masks`` ``[K, 1, size, size]``: the mask on each selected face's crop; a face the
        mask leaves without a hole is kept as it was (recorded); none with a hole is a ``ValueError``."""
        masks, k = [], 0
        for transform in list(photo.transforms):
            one = TaskPhoto(name=photo.name, path=photo.path, image=photo.crops[k], photo=photo.photo, transform=transform)
            try:
                masks.append(self.load_mask(path, one, size))
                k += 1
            except ValueError as e:
                if "marks no hole pixel" not in str(e):
                    raise
                photo.keep(k, "the mask has no hole on this face")  # the last face left raises e's message
        photo.masks = torch.cat(masks)

    def mask_file(self, path: Path) -> Path:
        mask = Path(self.mask)
        if mask.is_dir():
            candidate = mask / f"{path.stem}.png"
            if not candidate.is_file():
                raise ValueError(f"{path}: no mask for it in {mask} (expected {candidate.name}, white = hole)")
            return candidate
        return mask

    def load_mask(self, path: Path, photo, size: int) -> torch.Tensor:
        """The known-mask ``[1, 1, size, size]`` (1 = known pixel, 0 = hole) of input ``path``.

        The mask file is read by :func:`~mystyle_pl.data.io.read_mask` (white = hole; transparency and
        colour masks by its rules); an unreadable or ambiguous mask is a ``ValueError`` naming both files.
        """
        if photo.photo is not None:
            in_h, in_w = photo.photo.shape[:2]
        else:  # a square aligned crop (perhaps resized)
            in_w, in_h = image_size(path)
        if self.mask is not None:
            file = self.mask_file(path)
            mw, mh = image_size(file)
            if (mw, mh) == (in_w, in_h):
                known = mask_to_crop(mask_from_png(file, (in_h, in_w)), photo, size)
            elif (mw, mh) == (size, size):  # drawn on the aligned crop (as in input.png)
                known = mask_from_png(file, size)
            else:
                raise ValueError(
                    f"{path}: mask {file} is {mw}x{mh} (WxH), but the input is {in_w}x{in_h} and its "
                    f"aligned crop {size}x{size}: mask size mismatch (draw the mask on either)"
                )
            what = f"mask {file}"
        else:
            try:
                known = mask_to_crop(mask_from_boxes(list(self.boxes), (in_h, in_w)), photo, size)
            except ValueError as e:
                raise ValueError(f"{path} ({in_w}x{in_h}): {e}") from e
            what = f"boxes {list(self.boxes)}"
        holes = int((known == 0).sum())
        if holes == 0:
            raise ValueError(
                f"{path}: the {what} is empty on this input's face crop: it marks no hole pixel, nothing to inpaint"
            )
        if holes == size * size:
            raise ValueError(
                f"{path}: the {what} is full on this input's face crop: every pixel is a hole, nothing to project"
            )
        return known


class SampleDataset(Dataset):
    """Sample ``i`` of a run: its name and its own seed (the same whatever the batching or ranks)."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed = num_samples, seed
        self.width = max(4, len(str(num_samples - 1)))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> TaskItem:
        seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        return TaskItem(index=index, name=self.name(index), seed=seed)

    def name(self, index: int) -> str:
        return f"sample_{index:0{self.width}d}"


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
