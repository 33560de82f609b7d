"""The LightningCLI half of ``mystyle-pl`` (fit / validate / test / predict).

Models and data modules are chosen with ``--model`` / ``--data`` (class_path + init_args
in YAML, stackable ``--config`` files from ``configs/``). Lightning is imported only when
one of these commands runs, so the tool commands start fast.
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI


class MyStyleLightningCLI(LightningCLI):
    """LightningCLI in subclass mode: any LightningModule / LightningDataModule via class_path."""

    def __init__(self, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"prog": "mystyle-pl"})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )
