"""A wall-clock budget for the whole fit: the anchors' inversions and the tuning together.

Lightning's ``trainer.max_time`` counts tuning only (its ``Timer`` starts at ``on_train_start``).
The anchors' W inversions run before that, in :meth:`~mystyle_pl.tuning.PersonalTuner.setup`, and
take 17-26 s per photo on a 2-core CPU (bfloat16 / float32 renders). With a fixed tuning budget,
a fit's length therefore grows with the album's size (with float32 tuning, a 17-photo album took
15.3 min with ``cpu_quick``'s 6-minute budget, 13-photo albums 12 min). This callback starts its clock in ``setup``, before the anchors, and ends
tuning once the whole fit has run for ``minutes``; it sits beside ``max_time``, which stays the cap
on tuning alone, so whichever comes first ends the fit. (Not a subclass of Lightning's ``Timer``:
the trainer ignores ``max_time`` when its callbacks already hold a ``Timer``.)
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class FitTimeBudget(Callback):
    """End tuning once the fit, anchors included, has run for ``minutes`` of wall-clock time.

    The clock starts when the fit's ``setup`` begins (callbacks are set up before the
    LightningModule, whose ``setup`` computes the anchors) and is checked after every training
    batch; the decision is broadcast from rank 0 so DDP ranks stop together. A resumed fit
    continues the budget where its checkpoint left it (``state_dict``).

    Args:
        minutes: the budget in minutes (> 0), counted from ``setup``: the process's start (imports,
            the generator's download or load) and the work after the stop (the last epoch's end, the
            export) come on top, about a minute with ``cpu_quick`` on a 2-core CPU. ``cpu_quick.yaml``:
            13, for issue 12's 15 minutes per fit.
        verbose: log how much of the budget the anchors left for tuning, and the stop.

    Raises:
        ValueError: for a budget that is not positive.
    """

    def __init__(self, minutes: float, verbose: bool = True) -> None:
        if not minutes > 0:
            raise ValueError(f"minutes must be a positive fit budget, got {minutes}")
        self.minutes = float(minutes)
        self.verbose = verbose
        self._began: float | None = None
        self._offset = 0.0  # seconds spent by earlier runs of a resumed fit
        self._stopped = False

    @property
    def budget_s(self) -> float:
        return self.minutes * 60.0

    def elapsed(self) -> float:
        """Seconds of the fit so far (this run since its setup, plus a resumed fit's earlier runs)."""
        return self._offset + (time.monotonic() - self._began if self._began is not None else 0.0)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._began = time.monotonic()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.verbose:
            left = self.budget_s - self.elapsed()
            rank_zero_info(
                f"fit budget {self.minutes:g} min: {self.elapsed():.0f} s used before tuning (the anchors), "
                f"{max(left, 0.0):.0f} s left for tuning"
            )
        self._check(trainer)

    def on_train_batch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        should_stop = trainer.strategy.broadcast(self.elapsed() >= self.budget_s)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and not self._stopped:
            self._stopped = True
            if self.verbose:
                rank_zero_info(f"fit budget of {self.minutes:g} min reached after {self.elapsed():.0f} s: stopping")

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("elapsed_s", 0.0))
