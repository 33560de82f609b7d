"""Callbacks of ``fit``: image grids for the logger, and exporting the personal prior bundle."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from ..data.anchors_io import Anchors
from ..data.dataset import load_photo
from ..data.io import write_image
from ..imaging import downsample_to
from ..prior import PersonalPrior

log = logging.getLogger(__name__)


def hull_samples(anchors: torch.Tensor, n: int, seed: int = 0, k: int = 3) -> torch.Tensor:
    """``n`` points of the anchors' convex hull: uniform-weight mixes of ``k`` random anchors (official sampler)."""
    g = torch.Generator().manual_seed(seed)
    num = anchors.shape[0]
    k = min(k, num)
    rows = []
    for _ in range(n):
        idx = torch.randperm(num, generator=g)[:k]
        weights = torch.rand(k, generator=g)
        rows.append((weights / weights.sum()) @ anchors[idx].cpu())
    return torch.stack(rows).to(anchors.device)


def make_grid(rows: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Stack rows of images ``[n_i, 3, R, R]`` (in [-1, 1]) into one image ``[3, H, W]`` (rows padded to equal length)."""
    cols = max(r.shape[0] for r in rows)
    res = rows[0].shape[-1]
    canvas = torch.ones(3, len(rows) * (res + pad) + pad, cols * (res + pad) + pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (res + pad), pad + j * (res + pad)
            canvas[:, y : y + res, x : x + res] = img.float().clamp(-1, 1).cpu()
    return canvas


class ImageGridLogger(Callback):
    """Every ``every_n_steps`` (and at the end of fit) log a grid: photos | reconstructions | hull samples.

    The grid is saved as a PNG under ``<log_dir>/grids/`` and sent to the logger (W&B images,
    TensorBoard images; CSV logs just keep the PNG files).

    Args:
        every_n_steps: optimizer steps between grids; 0 = only at the end of fit.
        num_photos: training photos shown (with their reconstructions from the anchors).
        num_samples: new points from the anchors' convex hull shown in the third row.
        resolution: size of each cell in pixels.
    """

    def __init__(self, every_n_steps: int = 200, num_photos: int = 4, num_samples: int = 4, resolution: int = 128):
        self.every_n_steps = every_n_steps
        self.num_photos = num_photos
        self.num_samples = num_samples
        self.resolution = resolution

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module, batch)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_grid(trainer, pl_module, None)

    @torch.no_grad()
    def log_grid(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> Path | None:
        if not trainer.is_global_zero or pl_module.anchors is None:
            return None
        anchors = pl_module.anchors
        dm = trainer.datamodule
        photos = {p.name: p for p in dm.photos}
        names = anchors.names[: self.num_photos]
        res = pl_module.generator.img_resolution
        real = torch.stack([load_photo(photos[n].path, res) for n in names]).to(pl_module.device)
        w = anchors.w[: len(names)].to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        fake = pl_module.render(w)
        samples = pl_module.render(hull_samples(anchors.w.to(pl_module.device), self.num_samples, seed=0))
        pl_module.train(was_training)
        rows = [downsample_to(x.float(), self.resolution) for x in (real, fake, samples)]
        grid = make_grid(rows)
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        path = write_image(log_dir / "grids" / f"step_{trainer.global_step:06d}.png", grid)
        caption = "rows: photos | reconstructions from anchors | samples from the anchors' convex hull"
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("grids/reconstruction", [str(path)], step=trainer.global_step, caption=[caption])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("grids/reconstruction", (grid + 1) / 2, trainer.global_step)
            elif isinstance(logger, CSVLogger):
                pass  # the PNG in <log_dir>/grids/ is the record
        return path


def album_digest(names: list[str], paths: list[Path]) -> str:
    """sha256 over the training photos' names and bytes (identifies the album a prior was tuned on)."""
    h = hashlib.sha256()
    for name, path in zip(names, paths):
        h.update(name.encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def export_prior(
    pl_module: LightningModule,
    path: str | Path,
    datamodule: Any = None,
    metrics: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the personal prior bundle of a (tuned) ``PersonalTuner`` to the folder ``path``.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false (a prior is never
    replaced silently), ``RuntimeError`` when the tuner has no anchors.
    """
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists and a prior is never replaced silently; pass overwrite=True to replace it")
    anchors: Anchors | None = pl_module.anchors
    if anchors is None:
        raise RuntimeError("the tuner has no anchors yet: nothing to export")
    info: dict[str, Any] = {
        "generator_source": str(pl_module.hparams.generator),
        "training": {k: v for k, v in pl_module.hparams.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "metrics": metrics or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if datamodule is not None and getattr(datamodule, "photos", None):
        photos = {p.name: p.path for p in datamodule.photos}
        info["album"] = str(datamodule.album)
        info["album_digest"] = album_digest(anchors.names, [photos[n] for n in anchors.names if n in photos])
        info["held_out"] = datamodule.split_record().get("val", [])
    generator = pl_module.generator
    prior = PersonalPrior(generator=generator, anchors=Anchors(w=anchors.w.cpu(), names=list(anchors.names), metadata=anchors.metadata), info=info)
    return prior.save(path, overwrite=overwrite)


class ExportPrior(Callback):
    """At the end of fit, export the personal prior bundle.

    An existing prior at the target is never replaced unless ``overwrite`` is true: the fit is
    refused at its start (``setup``), before any work, with ``FileExistsError``.

    Args:
        dirpath: output folder; None = ``<trainer.default_root_dir>/prior`` (the run folder's ``prior``).
        overwrite: replace a prior already at the target (``mystyle-pl fit --overwrite true`` sets it).
    """

    def __init__(self, dirpath: str | None = None, overwrite: bool = False):
        self.dirpath = dirpath
        self.overwrite = overwrite
        self.path: Path | None = None

    def target(self, trainer: Trainer) -> Path:
        """Where the prior will be written."""
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "prior"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        target = self.target(trainer)
        if stage == "fit" and target.exists() and not self.overwrite:
            raise FileExistsError(
                f"{target} already holds a personal prior and fit never replaces one: fit into another folder "
                "(trainer.default_root_dir, or ExportPrior(dirpath=...)), move it away, or set "
                "ExportPrior(overwrite=True) (CLI: --overwrite true)"
            )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        target = self.target(trainer)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        self.path = export_prior(pl_module, target, trainer.datamodule, metrics, overwrite=self.overwrite)
        print(f"personal prior written to {self.path}")
        log.info("personal prior written to %s (%s)", self.path, json.dumps(metrics))
