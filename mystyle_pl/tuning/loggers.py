"""Loggers: Weights & Biases by default, offline unless an API key is configured."""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger


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
        save_dir: where the run folder goes.
        offline: True / False to force; None = offline unless an API key is configured.
        log_model: upload checkpoints as W&B artifacts (online runs only).
        kwargs: anything else ``WandbLogger`` / ``wandb.init`` accepts (entity, tags, group, ...).
    """

    def __init__(
        self,
        project: str = "mystyle-pl",
        name: str | None = None,
        save_dir: str = "outputs",
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ):
        if offline is None:
            offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_key_configured()
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(project=project, name=name, save_dir=save_dir, offline=offline, log_model=log_model and not offline, **kwargs)
