"""``TaskWriter``: the prediction writer of ``mystyle-pl predict``.

Per input, a folder ``OUTPUT/<name>/`` (``OUTPUT`` = ``output_dir``, by default
``trainer.default_root_dir``, which each ``configs/predict/<task>.yaml`` sets to
``outputs/predict/<task>``) holding:

- ``crop.png``: the result at the generator's resolution (inpaint: the blend; edit: the projection);
- ``input.png``: the crop the task ran on (aligned here when the input was a photo);
- ``photo.png``: the result pasted back into the full photo (only for photos aligned here;
  super-resolution: the photo enlarged by the factor, but at most ``data.max_photo_pixels``
  pixels (64 MP): a larger one is written at the largest scale that fits, with a warning, and
  ``record.json`` says the scale; the face at full resolution is ``crop.png``);
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
``failed.json`` with the file and the reason, and skipped; so are inputs whose writing failed
(out of memory in paste-back, a full disk): the run goes on with the next input. If no input
could be used the run ends with an error.

Before any input is read, the output folder is created and proven writable (an error naming it
otherwise). On SIGTERM (see :mod:`~mystyle_pl.predict.stop`) the batch in progress is finished
and written, ``summary.json`` / ``failed.json`` are written with the inputs not processed listed
as ``"not_done": true``, and :class:`~mystyle_pl.predict.stop.PredictInterrupted` ends the run
(exit status 143 from the command line). Under DDP each rank then writes its own lists (rank
``k > 0``: ``summary.rank<k>.json``, ``failed.rank<k>.json``), since the ranks stop at different
points and cannot be gathered.
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
from ..distributed import destroy_process_group_at_exit
from ..errors import ensure_writable_dir
from ..generators.fileutil import save_safetensors_atomic
from ..provenance.writing import Provenance
from ..tasks.pasteback import DEFAULT_MAX_PHOTO_PIXELS, paste_into_photo, pasted_size
from . import faces, stop
from .items import Prediction, input_error, is_out_of_memory


log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


class NoUsableInputError(ValueError):
    """Every input of a predict run failed; the message gives the first reason and where the others are."""


class _WriteError(Exception):
    """Writing one input's folder failed (``stage``: "paste-back" or "writing"); the run goes on."""

    def __init__(self, error: BaseException, stage: str) -> None:
        super().__init__(str(error))
        self.error, self.stage = error, stage


NOT_DONE = "not processed: the run was stopped ({signal}) before this input; run the command again to process it"


class TaskWriter(BasePredictionWriter):
    """Write each input's result into its own folder (see the module docstring)."""

    def __init__(
        self,
        output_dir: str | None = None,  # where the per-input folders go; None = trainer.default_root_dir
        save_input: bool = True,  # write input.png (the crop the task ran on)
        save_photo: bool = True,  # write photo*.png (the result pasted into the full photo) for photos aligned here
        compress_level: int = 6,  # PNG compression 0..9 (higher: smaller files, slower)
        max_photo_pixels: int | None = None,  # cap on photo*.png in pixels; None = the data's data.max_photo_pixels (64 MP; null there = no cap)
        provenance: bool = True,  # label every result (C2PA manifest, IPTC XMP, watermark); false only for research runs (`predict --provenance off`; written into record.json)
        provenance_cert: str | None = None,  # PEM certificate chain that signs; None = $MYSTYLE_C2PA_CERT, else this install's own key
        provenance_key: str | None = None,  # PEM private key of provenance_cert; None = $MYSTYLE_C2PA_KEY
    ) -> None:
        super().__init__(write_interval="batch")
        if max_photo_pixels is not None and max_photo_pixels < 1:
            raise ValueError(f"max_photo_pixels must be a positive number of pixels or null, got {max_photo_pixels}")
        self.output_dir = output_dir
        self.save_input, self.save_photo, self.compress_level = save_input, save_photo, compress_level
        self.max_photo_pixels = max_photo_pixels
        self.provenance = Provenance(provenance, provenance_cert, provenance_key)
        self.root: Path | None = None
        self._done: list[dict[str, Any]] = []
        self._failed: list[dict[str, Any]] = []
        self._warnings: list[dict[str, Any]] = []
        self._planned: list[dict[str, Any]] = []
        self._cap: int | None = None
        self._in_run = False

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.world_size > 1:
            destroy_process_group_at_exit()
        root = Path(self.output_dir if self.output_dir is not None else trainer.default_root_dir).resolve()
        for folder in getattr(trainer.datamodule, "input_folders", []) or []:
            folder = Path(folder).resolve()
            if root == folder or folder in root.parents:
                raise ValueError(
                    f"the output folder {root} is inside the input folder {folder}: results are never written "
                    "into the inputs' folders (set --trainer.default_root_dir elsewhere)"
                )
        # Proven writable now, before the inputs are read and projected (an error naming the folder).
        self.root = ensure_writable_dir(root, "output folder", "choose another with --trainer.default_root_dir")
        self._done, self._failed, self._warnings = [], [], []
        datamodule = getattr(trainer, "datamodule", None)
        if self.max_photo_pixels is not None:
            self._cap = self.max_photo_pixels
        elif hasattr(datamodule, "max_photo_pixels"):
            self._cap = datamodule.max_photo_pixels
        else:
            self._cap = DEFAULT_MAX_PHOTO_PIXELS
        self._planned = []
        if stage == "predict" and not self._in_run:
            stop.enter()
            self._in_run = True

    def _plan(self, trainer) -> list[dict[str, Any]]:
        """The inputs of this rank (for the not-done list of a stopped run)."""
        datamodule = getattr(trainer, "datamodule", None)
        if not self._planned and datamodule is not None and hasattr(datamodule, "planned"):
            try:
                self._planned = datamodule.planned(trainer.global_rank, trainer.world_size)
            except (RuntimeError, ValueError, AttributeError):  # not configured: nothing planned
                self._planned = []
        return self._planned

    def on_predict_start(self, trainer, pl_module) -> None:
        self._plan(trainer)
        self._check_stop(trainer)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for pred in prediction:
            self.write(pred, rank=trainer.global_rank)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._check_stop(trainer)

    def _check_stop(self, trainer) -> None:
        """After a batch is written: stop here if SIGTERM arrived (see the module docstring)."""
        name = stop.requested() or ("SIGTERM" if getattr(trainer, "received_sigterm", False) else None)
        if name is None:
            return
        left = len(self._remaining(trainer))
        raise stop.PredictInterrupted(
            f"stopped by {name} after {len(self._done)} result(s) and {len(self._failed)} failure(s); "
            f"{left} input(s) not processed, listed in {self.root / FAILED_FILE} (summary in {self.root / SUMMARY_FILE})",
            signal_name=name,
        )

    def _remaining(self, trainer) -> list[dict[str, Any]]:
        seen = {d["index"] for d in self._done} | {f["index"] for f in self._failed}
        return [p for p in self._plan(trainer) if p["index"] not in seen]

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # A stopped run (SIGTERM, Ctrl-C): write what was done and what was not, on every rank alone.
        if self.root is not None and isinstance(exception, (stop.PredictInterrupted, KeyboardInterrupt)):
            name = getattr(exception, "signal_name", "SIGINT (Ctrl-C)")
            try:
                self.finish(trainer, pl_module, interrupted=name)
            except OSError as e:  # never hide the interruption behind a second error
                log.error("could not write %s: %s", self.root / SUMMARY_FILE, e)
        self._leave()

    def _leave(self) -> None:
        if self._in_run:
            stop.exit()
            self._in_run = False

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # Not on_predict_end: a rank that got no input skips the predict loop and its hooks, but
        # every rank reaches teardown, where the ranks' lists are gathered.
        try:
            if stage == "predict" and self.root is not None:
                self.finish(trainer, pl_module)
        finally:
            self._leave()

    def finish(self, trainer, pl_module, interrupted: str | None = None) -> None:
        """Gather every rank's list; rank 0 writes summary.json and failed.json; error if nothing worked.

        ``interrupted``: the run was stopped (the signal's name): no gathering (the ranks stop at
        different points); each rank writes its own lists, the inputs not processed as not done."""
        rank = trainer.global_rank
        local = {"done": self._done, "failed": self._failed, "warnings": self._warnings}
        if interrupted is not None:
            local["failed"] = self._failed + [
                {**p, "error": NOT_DONE.format(signal=interrupted), "not_done": True, "rank": rank}
                for p in self._remaining(trainer)
            ]
            gathered: list[Any] = [local]
        elif trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
        else:
            gathered = [local]
        done = sorted((d for g in gathered for d in g["done"]), key=lambda d: d["index"])
        failed = sorted((f for g in gathered for f in g["failed"]), key=lambda f: f["index"])
        warnings = sorted((w for g in gathered for w in g["warnings"]), key=lambda w: w["index"])
        not_done = [f for f in failed if f.get("not_done")]
        names = [d["name"] for d in done] + [f["name"] for f in failed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if rank == 0 or interrupted is not None:
            task = getattr(pl_module, "task_name", None)
            datamodule = getattr(trainer, "datamodule", None)
            summary = {
                "task": task,
                "prior": getattr(pl_module, "prior_dir", None),
                "output_dir": str(self.root),
                "world_size": trainer.world_size,
                "num_inputs": len(done) + len(failed),
                "num_done": len(done),
                "num_failed": len(failed) - len(not_done),
                "num_not_done": len(not_done),
                "done": done,
                "failed": failed,
                "warnings": warnings,
                "provenance": self.provenance.state,
            }
            if getattr(datamodule, "identity_note", None):
                summary["identity"] = datamodule.identity_note
            if interrupted is not None:
                summary["interrupted"] = interrupted
                if trainer.world_size > 1:
                    summary["rank"] = rank
                    summary["note"] = "stopped under DDP: each rank wrote its own lists (summary.rank<k>.json)"
            if duplicates:  # never with the data modules' own sampler; a guard for custom ones
                summary["processed_more_than_once"] = duplicates
                log.warning("inputs processed more than once (by several ranks?): %s", duplicates)
            suffix = f".rank{rank}" if interrupted is not None and rank > 0 else ""
            write_bytes_atomic(self.root / FAILED_FILE.replace(".json", f"{suffix}.json"), _json_bytes(failed))
            write_bytes_atomic(self.root / SUMMARY_FILE.replace(".json", f"{suffix}.json"), _json_bytes(summary))
            rank_zero_info(
                f"{task}: {len(done)} result(s) written to {self.root}"
                + (f"; {len(failed) - len(not_done)} input(s) skipped" if len(failed) > len(not_done) else "")
                + (f"; {len(not_done)} not processed (stopped by {interrupted})" if not_done else "")
                + (f", see {self.root / FAILED_FILE}" if failed else "")
            )
        if interrupted is None and failed and not done:
            more = f"; the others' reasons are in {self.root / FAILED_FILE}" if len(failed) > 1 else ""
            raise NoUsableInputError(f"no input could be used ({len(failed)} failed): {failed[0]['error']}{more}")

    # ------------------------------------------------------------------ writing

    def write(self, pred: Prediction, rank: int = 0) -> Path | None:
        """Write one prediction's folder (or record its failure); returns the folder, or None when the
        input failed (before, or while writing: out of memory in paste-back, disk full, ...)."""
        item = pred.item
        for warning in item.warnings:
            self._warnings.append({"index": item.index, "name": item.name, "warning": warning})
        if pred.error is None:
            assert self.root is not None, "TaskWriter.setup was not called"
            folder = self.root / item.name
            try:
                self._write_folder(folder, lambda tmp: self._write_files(tmp, pred, rank))
            except _WriteError as e:
                pred.error = input_error(item.source or item.name, e.error, e.stage)
            except (OSError, MemoryError) as e:
                pred.error = input_error(item.source or item.name, e, "writing the results")
            else:
                self._done.append(
                    {"index": item.index, "name": item.name, "source": item.source, "folder": str(folder), "rank": rank}
                )
                return folder
        log.error("skipped: %s", pred.error)
        entry = {"index": item.index, "name": item.name, "source": item.source, "error": pred.error, "rank": rank}
        if "faces" in pred.record:  # a photo of data.faces: every face found and what was done to it
            entry["faces"] = pred.record["faces"]
        self._failed.append(entry)
        return None

    def _write_folder(self, folder: Path, fill) -> None:
        write_folder_atomic(folder, fill)  # a re-run replaces the folder whole (no stale files)

    def _png(self, folder: Path, stem: str, image, files: list[str], labelled: bool = False, photo: bool = False) -> None:
        if labelled and self.provenance.enabled:
            self.provenance.write(folder / f"{stem}.png", image, photo=photo, compress_level=self.compress_level)
        else:
            write_image(folder / f"{stem}.png", image, compress_level=self.compress_level)
        files.append(f"{stem}.png")

    def _write_files(self, folder: Path, pred: Prediction, rank: int) -> None:
        item, files = pred.item, []
        # The one place images leave predict: results are watermarked (in the face) and labelled here.
        pred.record.update(self.provenance.begin(pred))
        if self.save_input:
            for stem, image in pred.inputs().items():  # input.png, or input_face<N>.png per face
                self._png(folder, stem, image, files)
        for key, image in pred.images.items():
            self._png(folder, key, image, files, labelled=key in self.provenance.labelled_keys(pred))
        for stem, keys in pred.strips().items():  # strip.png, or strip_face<N>.png per face
            self._png(folder, stem, torch.cat([pred.images[k] for k in keys], dim=-1), files, labelled=True)
        if self.save_photo and item.aligned_here and pred.paste:
            self._paste(folder, pred, files)
        if pred.latents:
            meta = {"task": str(pred.record.get("task")), "name": item.name, "prior": str(pred.record.get("prior"))}
            save_safetensors_atomic(dict(pred.latents), folder / "latents.safetensors", metadata=meta)
            files.append("latents.safetensors")
        record = {**pred.record, "rank": rank, "files": [*files, "record.json"]}
        if item.warnings:
            record["warnings"] = list(item.warnings)
        write_bytes_atomic(folder / "record.json", _json_bytes(record))

    def _paste(self, folder: Path, pred: Prediction, files: list[str]) -> None:
        """photo*.png: the results pasted into the photo, at most ``max_photo_pixels`` pixels."""
        item = pred.item
        h, w = item.photo.photo.shape[:2]
        out_h, out_w = pasted_size(h, w, pred.upscale, self._cap)
        full_h, full_w = h * pred.upscale, w * pred.upscale
        if (out_h, out_w) != (full_h, full_w):
            warning = (
                f"{item.source}: photo.png would be {full_w}x{full_h} ({full_w * full_h / 1e6:.0f} MP, the photo "
                f"x{pred.upscale}), over data.max_photo_pixels={self._cap:,}: written at {out_w}x{out_h} "
                f"(x{out_w / w:.2f}); crop.png has the face at full resolution (raise --data.max_photo_pixels for more)"
            )
            log.warning("%s", warning)
            item.warnings.append(warning)
            self._warnings.append({"index": item.index, "name": item.name, "warning": warning})
        pred.record["photo_size"] = [out_w, out_h]
        pred.record["photo_scale"] = round(out_w / w, 4)
        for stem, key in pred.paste.items():
            try:
                if getattr(pred, "faces", None):  # data.faces: every processed face; other pixels the photo's (predict.faces)
                    image = faces.paste_faces(pred, key, self._cap)
                else:
                    image = paste_into_photo(item.photo, pred.images[key], upscale=pred.upscale, mask=pred.paste_mask,
                                             max_pixels=self._cap)  # fmt: skip
            except (MemoryError, RuntimeError, ValueError) as e:
                if isinstance(e, RuntimeError) and not is_out_of_memory(e):
                    raise
                raise _WriteError(e, "paste-back") from e
            try:
                self._png(folder, stem, image, files, labelled=True, photo=True)
            except (MemoryError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and not is_out_of_memory(e):
                    raise
                raise _WriteError(e, "paste-back") from e
            del image
