"""The LightningCLI half of ``mystyle-pl`` (fit / validate / test / predict).

Models and data modules are chosen with ``--model`` / ``--data`` (class_path + init_args
in YAML, stackable ``--config`` files from ``configs/``). Lightning is imported only when
one of these commands runs, so the tool commands start fast.

``predict`` reads ``configs/predict/base.yaml`` first (the trainer, the model, the writer and the
data defaults every task shares; shipped inside the package, :func:`config_path`), then the small
file of one task (``--config configs/predict/superres.yaml``). What the task needs from its inputs
(the generator's resolution, low-resolution inputs, a mask, the prior's identity) goes from the
model to the data module through one link: ``model.requirements`` -> ``data.init_args.requirements``.

``fit`` keeps one run in one folder, the run folder (``trainer.default_root_dir``):

* ``--trainer.default_root_dir RUN`` names it; left out, every run gets a new folder
  ``outputs/fit/<date>_<time>`` (all ranks of one DDP / SLURM / torchrun job agree on it).
* Everything the run writes goes under it: a logger whose ``save_dir`` is unset writes to
  ``RUN`` (W&B: ``RUN/wandb``; the config copy, ``split.json`` and image grids land in the
  logger's folder), a ``ModelCheckpoint`` without ``dirpath`` writes ``RUN/checkpoints``, and
  ``ExportPrior`` without ``dirpath`` writes ``RUN/prior``.
* A ``ModelCheckpoint`` that monitors nothing is a resume point: unless its
  ``save_on_train_epoch_end`` is set it is written at the end of every training epoch it is
  due, whatever the validation schedule (Lightning would otherwise wait for validation).
* Nothing is overwritten: a fit into a folder that holds an earlier run's checkpoints is
  refused unless it resumes (``--ckpt_path``), and an existing prior is never replaced unless
  ``--overwrite true`` is given (checked before anything runs).
"""

from __future__ import annotations

import datetime
import importlib
import logging
import os
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

DEFAULT_RUNS_DIR = "outputs/fit"  # where `fit` puts a new run folder when none is named
RUN_DIR_ENV = "MYSTYLE_FIT_RUN_DIR"  # hands rank 0's new run folder to the DDP processes Lightning starts
PREDICT_BASE = "predict/base.yaml"  # read before any predict config (the settings every task shares)


class _NoProductTips(logging.Filter):
    """Drops Lightning's "💡 Tip: try installing litlogger / litmodels" lines, printed on every run: they
    advertise cloud services this tool does not use and bury its own log. Lightning's other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip:")


# Lightning logs them through rank_zero_info on this logger (lightning 2.6: connectors/logger_connector.py,
# callback_connector.py); a filter on the logger drops them before any handler sees them.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoProductTips())


def quiet_lightning_deprecations() -> None:
    """Ignore the FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated" that torch (>= 2.10) raises
    from Lightning's own ``lightning/pytorch/utilities/_pytree.py`` on every fit and predict: nothing a
    user can act on (Lightning has to change). Only that message from that module is ignored."""
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


quiet_lightning_deprecations()


def config_path(name: str) -> Path:
    """A config shipped with the package (``mystyle_pl/configs``, the repository's ``configs/``), e.g.
    ``config_path("fit/demo.yaml")``; works from a checkout and from an installed wheel.

    Raises ``FileNotFoundError`` naming the file when it is not there."""
    path = Path(str(files("mystyle_pl") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such config in {path.parent} (the package's configs/)")
    return path


class MyStyleLightningCLI(LightningCLI):
    """LightningCLI in subclass mode: any LightningModule / LightningDataModule via class_path.

    For ``fit`` it also resolves the run folder and refuses to overwrite (see the module docstring).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault(
            "parser_kwargs", {"prog": "mystyle-pl", "predict": {"default_config_files": [str(config_path(PREDICT_BASE))]}}
        )
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":  # the task's needs go to the data module (the model is PersonalPredictor)
            parser.link_arguments("model.requirements", "data.init_args.requirements", apply_on="instantiate")
            parser.add_argument(
                "--provenance", choices=["on", "off"], default=None,
                help="on (the default): every result carries Content Credentials (a signed C2PA manifest), IPTC XMP "
                     "and an invisible watermark in the face (see mystyle-pl verify); off: results are written "
                     "unlabelled, for research runs only. Written into each record.json and summary.json as "
                     "\"provenance\": \"on\" | \"off\" (the TaskWriter's provenance option)",
            )  # fmt: skip
        if subcommand == "fit":  # only fit writes a prior
            parser.add_argument(
                "--overwrite", type=bool, default=False,
                help="replace an existing prior (RUN/prior or ExportPrior's dirpath) and reuse a run folder that "
                     "holds another run's checkpoints; by default both are refused before anything runs",
            )  # fmt: skip
        return parser

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit":
            resolve_fit_config(self.config["fit"])
        elif self.subcommand == "predict":
            apply_provenance_flag(self.config["predict"])
        elif self.subcommand is None and "trainer" in self.config:  # run=False: a trainer to fit from Python
            resolve_fit_config(self.config, new_folder=False)

    def before_fit(self) -> None:
        config = self.config["fit"]
        check_fit_outputs(self.trainer, ckpt_path=config.get("ckpt_path"), overwrite=bool(config.get("overwrite")))
        rank_zero_info(f"mystyle-pl fit: run folder {self.trainer.default_root_dir}")


# ----------------------------------------------------------------------------------------
# the run folder


def new_run_dir(base: str | os.PathLike = DEFAULT_RUNS_DIR) -> Path:
    """A run folder for a fit that names none: ``base/<YYYY-mm-dd_HH-MM-SS>`` (``-2``, ``-3`` ... if taken).

    Every process of one job gets the same folder: under SLURM ``base/slurm-<job id>``, under
    torchrun ``base/torchrun-<run id>``; processes that Lightning's DDP launcher starts inherit
    rank 0's choice through ``$MYSTYLE_FIT_RUN_DIR``. The folder is created.
    """
    base = Path(base).absolute()
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and int(os.environ.get("LOCAL_RANK", "0") or 0) > 0:  # a child of rank 0's launcher
        return Path(inherited)
    job = os.environ.get("SLURM_JOB_ID")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if job:
        name = f"slurm-{job}" + (f"-{os.environ['SLURM_STEP_ID']}" if os.environ.get("SLURM_STEP_ID") not in (None, "", "0") else "")
        path = base / name
        path.mkdir(parents=True, exist_ok=True)
    elif run_id and run_id != "none":
        path = base / f"torchrun-{run_id}"
        path.mkdir(parents=True, exist_ok=True)
    else:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        base.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = base / (stamp if i == 1 else f"{stamp}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 10 000 runs started within one second
            raise RuntimeError(f"could not create a new run folder under {base}")
    os.environ[RUN_DIR_ENV] = str(path)
    return path


def _entries(value: Any) -> list:
    """The class_path entries of a logger / callbacks setting (a single one, a list, or None/bool)."""
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _class_of(entry: Any) -> type | None:
    class_path = getattr(entry, "class_path", None)
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def apply_provenance_flag(config: Any) -> None:
    """``predict --provenance on|off`` -> the ``provenance`` option of every ``TaskWriter`` callback of a
    parsed ``predict`` config (in place); unset: the writers keep their own (true unless a config says)."""
    value = config.get("provenance")
    if value is None:
        return
    from .predict.writer import TaskWriter  # lazy like the other predict imports: start-up time of the tool commands

    for callback in _entries(config.trainer.get("callbacks")):
        cls, args = _class_of(callback), getattr(callback, "init_args", None)
        if cls is not None and args is not None and issubclass(cls, TaskWriter):
            args.provenance = value == "on"


def resolve_fit_config(config: Any, new_folder: bool = True) -> Path | None:
    """Fill the run folder into a parsed ``fit`` config (jsonargparse Namespace), in place.

    Sets ``trainer.default_root_dir`` (a new folder when unset and ``new_folder``; else it is
    left unset and so are the paths below), the ``save_dir`` of loggers that have none, the
    ``dirpath`` of ``ModelCheckpoint`` callbacks that have none (``RUN/checkpoints``), and
    ``save_on_train_epoch_end=True`` on checkpoints that monitor nothing and leave it unset.
    Returns the run folder (None when none was named and ``new_folder`` is false).
    """
    trainer = config.trainer
    if trainer.get("default_root_dir"):
        root = Path(trainer.default_root_dir)
    else:
        root = new_run_dir() if new_folder else None
    if root is not None:
        trainer.default_root_dir = str(root)
    for logger in _entries(trainer.get("logger")) if root is not None else []:
        args = getattr(logger, "init_args", None)
        if args is not None and "save_dir" in args and args.get("save_dir") is None and args.get("dir") is None:
            args.save_dir = str(root)
    for callback in _entries(trainer.get("callbacks")):
        cls, args = _class_of(callback), getattr(callback, "init_args", None)
        if cls is None or args is None or not issubclass(cls, ModelCheckpoint):
            continue
        if args.get("dirpath") is None and root is not None:
            args.dirpath = str(root / "checkpoints")
        if args.get("save_on_train_epoch_end") is None and args.get("monitor") is None:
            args.save_on_train_epoch_end = True
    return root


def check_fit_outputs(trainer: Any, ckpt_path: str | None = None, overwrite: bool = False) -> None:
    """Refuse, before anything runs, a fit that would overwrite another run's outputs.

    * a prior already at an ``ExportPrior`` target (``RUN/prior`` by default) and ``overwrite``
      false: ``FileExistsError``;
    * checkpoints (``*.ckpt``) already in a checkpoint folder of this run while not resuming
      (no ``ckpt_path``, no SLURM ``hpc_ckpt_*.ckpt`` to pick up) and ``overwrite`` false:
      ``FileExistsError``.

    ``overwrite`` is also handed to every ``ExportPrior`` callback.
    """
    from .tuning import ExportPrior  # lazy for start-up time: predict never loads the tuning code (LPIPS, torchmetrics)

    root = Path(trainer.default_root_dir)
    resuming = ckpt_path is not None or any(root.glob("hpc_ckpt_*.ckpt"))
    for callback in [] if resuming or overwrite else trainer.checkpoint_callbacks:
        folder = Path(callback.dirpath) if getattr(callback, "dirpath", None) else root / "checkpoints"
        found = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
        if found:
            last = folder / "last.ckpt"
            resume = last if last.exists() else found[-1]
            raise FileExistsError(
                f"{folder} already holds checkpoints of an earlier run ({', '.join(p.name for p in found[:3])}): "
                f"resume it with --ckpt_path {resume}, start a new run in another folder (--trainer.default_root_dir "
                "NEW_DIR, or leave it out for a new folder per run), or pass --overwrite true to write over it"
            )
    for callback in trainer.callbacks:
        if isinstance(callback, ExportPrior):
            callback.overwrite = callback.overwrite or overwrite
            target = callback.target(trainer)
            if target.exists() and not callback.overwrite:
                raise FileExistsError(
                    f"{target} already holds a personal prior and fit never replaces one: fit into another folder "
                    f"(--trainer.default_root_dir NEW_DIR, or leave it out for a new folder per run), move {target} "
                    "away, or pass --overwrite true to replace it"
                )
