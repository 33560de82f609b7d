"""``TaskWriter``: the prediction writer of ``mystyle-pl predict``.

Per input, a folder ``OUTPUT/<name>/`` (``OUTPUT`` = ``output_dir``, by default
``trainer.default_root_dir``, which each ``configs/predict/<task>.yaml`` sets to
``outputs/predict/<task>``) holding:

- ``crop.png``: the result at the generator's resolution (inpaint: the blend; edit: the projection);
- ``input.png``: the crop the task ran on (aligned here when the input was a photo);
- ``photo.png``: the result pasted back into the full photo (only for photos aligned here;
  super-resolution: the photo enlarged by the factor);
- task extras: ``generated.png`` + ``mask.png`` (inpaint, white = hole), ``degraded.png``
  (superres: the result down-sampled like the input), ``strength_<s>.png`` +
  ``photo_strength_<s>.png`` + ``strip.png`` (edit: the strengths side by side);
- ``latents.safetensors``: ``ws`` and ``coefficients`` (edit: also the projection's, the direction,
  the strengths);
- ``record.json``: task, settings, source, prior, steps used, final loss, alignment transform,
  the files written.

Each folder is written complete into a temporary folder beside it and renamed into place (a
re-run replaces it whole). Under DDP every rank writes only the folders of its own inputs (the
data module's sampler gives each input to one rank); rank 0 alone writes ``summary.json`` and ``failed.json``
after gathering every rank's list. Inputs that could not be used are logged, listed in
``failed.json`` and skipped; if no input could be used the run ends with an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from ..data.io import write_bytes_atomic, write_folder_atomic, write_image
from ..generators.fileutil import save_safetensors_atomic
from .specs import Prediction

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


class NoUsableInputError(ValueError):
    """Every input of a predict run failed; the message lists them (each naming its file)."""


class TaskWriter(BasePredictionWriter):
    """Write each input's result into its own folder (see the module docstring)."""

    def __init__(
        self,
        output_dir: str | None = None,  # where the per-input folders go; None = trainer.default_root_dir
        save_input: bool = True,  # write input.png (the crop the task ran on)
        save_photo: bool = True,  # write photo*.png (the result pasted into the full photo) for photos aligned here
        compress_level: int = 6,  # PNG compression 0..9 (higher: smaller files, slower)
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.save_input, self.save_photo, self.compress_level = save_input, save_photo, compress_level
        self.root: Path | None = None
        self._done: list[dict[str, Any]] = []
        self._failed: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        root = Path(self.output_dir if self.output_dir is not None else trainer.default_root_dir).resolve()
        for folder in getattr(trainer.datamodule, "input_folders", []) or []:
            folder = Path(folder).resolve()
            if root == folder or folder in root.parents:
                raise ValueError(
                    f"the output folder {root} is inside the input folder {folder}: results are never written "
                    "into the inputs' folders (set --trainer.default_root_dir elsewhere)"
                )
        self.root = root
        self._done, self._failed = [], []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for pred in prediction:
            self.write(pred, rank=trainer.global_rank)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # Not on_predict_end: a rank that got no input skips the predict loop and its hooks, but
        # every rank reaches teardown, where the ranks' lists are gathered.
        if stage == "predict" and self.root is not None:
            self.finish(trainer, pl_module)

    def finish(self, trainer, pl_module) -> None:
        """Gather every rank's list; rank 0 writes summary.json and failed.json; error if nothing worked."""
        local = {"done": self._done, "failed": self._failed}
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
        else:
            gathered = [local]
        done = sorted((d for g in gathered for d in g["done"]), key=lambda d: d["index"])
        failed = sorted((f for g in gathered for f in g["failed"]), key=lambda f: f["index"])
        names = [d["name"] for d in done] + [f["name"] for f in failed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if trainer.global_rank == 0:
            task = getattr(pl_module, "task_name", None)
            summary = {
                "task": task,
                "prior": getattr(pl_module, "prior_dir", None),
                "output_dir": str(self.root),
                "world_size": trainer.world_size,
                "num_inputs": len(done) + len(failed),
                "num_done": len(done),
                "num_failed": len(failed),
                "done": done,
                "failed": failed,
            }
            if duplicates:  # never with the data modules' own sampler; a guard for custom ones
                summary["processed_more_than_once"] = duplicates
                log.warning("inputs processed more than once (by several ranks?): %s", duplicates)
            write_bytes_atomic(self.root / FAILED_FILE, _json_bytes(failed))
            write_bytes_atomic(self.root / SUMMARY_FILE, _json_bytes(summary))
            rank_zero_info(
                f"{task}: {len(done)} result(s) written to {self.root}"
                + (f"; {len(failed)} input(s) skipped, see {self.root / FAILED_FILE}" if failed else "")
            )
        if failed and not done:
            lines = "\n".join(f"  {f['error']}" for f in failed[:10])
            more = f"\n  ... and {len(failed) - 10} more" if len(failed) > 10 else ""
            raise NoUsableInputError(f"no input could be used ({len(failed)} failed):\n{lines}{more}")

    # ------------------------------------------------------------------ writing

    def write(self, pred: Prediction, rank: int = 0) -> Path | None:
        """Write one prediction's folder (or record its failure); returns the folder."""
        item = pred.item
        if pred.error is not None:
            log.error("skipped: %s", pred.error)
            self._failed.append(
                {"index": item.index, "name": item.name, "source": item.source, "error": pred.error, "rank": rank}
            )
            return None
        assert self.root is not None, "TaskWriter.setup was not called"
        folder = self.root / item.name
        self._write_folder(folder, lambda tmp: self._write_files(tmp, pred, rank))
        self._done.append(
            {"index": item.index, "name": item.name, "source": item.source, "folder": str(folder), "rank": rank}
        )
        return folder

    def _write_folder(self, folder: Path, fill) -> None:
        write_folder_atomic(folder, fill)  # a re-run replaces the folder whole (no stale files)

    def _png(self, folder: Path, stem: str, image, files: list[str]) -> None:
        write_image(folder / f"{stem}.png", image, compress_level=self.compress_level)
        files.append(f"{stem}.png")

    def _write_files(self, folder: Path, pred: Prediction, rank: int) -> None:
        item, files = pred.item, []
        if self.save_input and item.image is not None:
            self._png(folder, "input", item.image, files)
        for key, image in pred.images.items():
            self._png(folder, key, image, files)
        if pred.strip:
            self._png(folder, "strip", torch.cat([pred.images[k] for k in pred.strip], dim=-1), files)
        if self.save_photo and item.aligned_here:
            from ..tasks.pasteback import paste_into_photo

            for stem, key in pred.paste.items():
                self._png(folder, stem, paste_into_photo(item.photo, pred.images[key], upscale=pred.upscale, mask=pred.paste_mask), files)
        if pred.latents:
            meta = {"task": str(pred.record.get("task")), "name": item.name, "prior": str(pred.record.get("prior"))}
            save_safetensors_atomic(dict(pred.latents), folder / "latents.safetensors", metadata=meta)
            files.append("latents.safetensors")
        record = {**pred.record, "rank": rank, "files": [*files, "record.json"]}
        write_bytes_atomic(folder / "record.json", _json_bytes(record))
