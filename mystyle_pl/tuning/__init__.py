"""Tuning a personal prior: the ``PersonalTuner`` LightningModule and its callbacks."""

from .callbacks import ExportPrior, ImageGridLogger, export_prior, hull_samples
from .loggers import AutoWandbLogger
from .module import PersonalTuner

__all__ = ["AutoWandbLogger", "ExportPrior", "ImageGridLogger", "PersonalTuner", "export_prior", "hull_samples"]
