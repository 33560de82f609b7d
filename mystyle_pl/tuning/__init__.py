"""Tuning a personal prior: the ``PersonalTuner`` LightningModule and its callbacks."""

from .callbacks import ExportPrior, ImageGridLogger, export_prior, hull_samples
from .loggers import AutoWandbLogger, RunCSVLogger
from .module import PersonalTuner

__all__ = ["AutoWandbLogger", "ExportPrior", "ImageGridLogger", "PersonalTuner", "RunCSVLogger", "export_prior", "hull_samples"]
