"""The inputs of a predict run as datasets: the image files listed (:func:`list_inputs`, one unique
output name each), a mask mapped onto the face crop (:func:`mask_to_crop`), one :class:`TaskItem`
per file (:class:`PhotoDataset`: a failure becomes an item with ``error`` set) or per sample to
draw (:class:`SampleDataset`). The data modules of :mod:`mystyle_pl.predict.data` serve them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.io import read_image_size
from ..group import GroupPhoto, load_photo_faces
from ..tasks.inpaint import mask_from_boxes, mask_from_png
from ..tasks.pasteback import DEFAULT_IDENTITY_THRESHOLD, TaskPhoto, load_task_photo
from ..tasks.superres import MAX_FACTOR, MIN_FACTOR
from .items import TaskItem, TaskRequirements, input_error

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")


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
            selection = getattr(e, "selection", None)  # group_select.NoPersonError: the faces found, none the person's
            return TaskItem(index=index, name=name, source=str(path), error=message,
                            record={} if selection is None else selection.record())  # fmt: skip

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
