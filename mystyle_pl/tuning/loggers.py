"""Loggers: Weights & Biases by default, offline unless an API key is configured; CSV files without W&B.

Both take ``save_dir=None``: under ``mystyle-pl fit`` that is the run folder
(``trainer.default_root_dir``, see ``mystyle_pl.lightning_cli``).
"""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only


def wandb_key_configured() -> bool:
    """True when W&B can authenticate: ``WANDB_API_KEY`` or a ``~/.netrc`` entry for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class AutoWandbLogger(WandbLogger):
    """``WandbLogger`` whose ``offline`` defaults to "no API key configured".

    Offline runs are written under ``<save_dir>/wandb/offline-run-*`` and can be uploaded later
    with ``wandb sync``. ``WANDB_MODE`` still wins when set.

    Args:
        project: W&B project name.
        name: run name; None = W&B's generated name.
        save_dir: where the W&B files go (``<save_dir>/wandb``); None = the run folder under
            ``mystyle-pl fit`` (``trainer.default_root_dir``), the current folder elsewhere.
        offline: True / False to force; None = offline unless an API key is configured.
        log_model: upload checkpoints as W&B artifacts (online runs only).
        kwargs: anything else ``WandbLogger`` / ``wandb.init`` accepts (entity, tags, group, ...).
    """

    def __init__(
        self,
        project: str = "mystyle-pl",
        name: str | None = None,
        save_dir: str | None = None,
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ):
        if offline is None:
            offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_key_configured()
        if save_dir is not None:
            os.makedirs(save_dir, exist_ok=True)
        super().__init__(project=project, name=name, save_dir=save_dir, offline=offline, log_model=log_model and not offline, **kwargs)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End the W&B run with the fit, so that a later fit in the same process starts its own run
        (in its own run folder) instead of attaching to this one."""
        super().finalize(status)
        import wandb

        if self._experiment is not None and wandb.run is self._experiment:
            self._experiment.finish(exit_code=0 if status == "success" else 1)


class RunCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` (``<save_dir>/<name>/version_<n>/metrics.csv``) with ``save_dir`` optional.

    Args:
        save_dir: where the logs go; None = the run folder under ``mystyle-pl fit``, the current folder elsewhere.
        name: sub-folder of ``save_dir``; None = none.
        version: ``version_<n>`` sub-folder number, or a name; None = the next free number.
        prefix: prefix of every metric key.
        flush_logs_every_n_steps: how often the CSV file is written.
    """

    def __init__(
        self,
        save_dir: str | None = None,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ):
        super().__init__(save_dir if save_dir is not None else ".", name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)  # fmt: skip
