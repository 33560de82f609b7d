"""Tuning a personal prior: the ``PersonalTuner`` LightningModule and its callbacks."""

from .budget import FitTimeBudget
from .callbacks import ExportPrior, ImageGridLogger, export_prior, hull_samples
from .loggers import AutoWandbLogger, RunCSVLogger
from .module import PersonalTuner
from .target import ReconstructionTarget

__all__ = ["AutoWandbLogger", "ExportPrior", "FitTimeBudget", "ImageGridLogger", "PersonalTuner", "ReconstructionTarget", "RunCSVLogger", "export_prior", "hull_samples"]
