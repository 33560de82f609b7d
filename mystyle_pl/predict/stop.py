"""Stopping ``predict`` cleanly on SIGTERM (how cluster schedulers stop a job).

While a predict run is active (:func:`enter` ... :func:`exit`, nestable: the command line enters
before the model loads, the :class:`~mystyle_pl.predict.writer.TaskWriter` at setup), SIGTERM
only sets a flag. The writer checks it after each batch: the batch in progress is finished and
written, then :class:`PredictInterrupted` is raised; the writer writes ``summary.json`` and
``failed.json`` (the inputs not processed are listed as ``"not_done": true``) and the command
exits with status :data:`EXIT_CODE` (143 = 128 + SIGTERM, what a shell reports for a job ended
by SIGTERM).

Outside a run the previous handler is restored; if a signal still reaches this handler then
(e.g. Lightning put it back after an error), it restores the previous handler and re-sends the
signal, so SIGTERM is never swallowed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from ..errors import PredictInterrupted

log = logging.getLogger(__name__)

EXIT_CODE = PredictInterrupted.exit_code  # 143 = 128 + SIGTERM (15)
SIGNALS = (signal.SIGTERM,)
__all__ = ["EXIT_CODE", "PredictInterrupted", "active", "enter", "exit", "request", "requested"]

_state: dict = {"depth": 0, "requested": None, "previous": {}}


def _handler(signum, frame) -> None:
    if _state["depth"] == 0:  # stale: no run is active any more; behave as if we were never here
        previous = _state["previous"].get(signum, signal.SIG_DFL)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    name = signal.Signals(signum).name
    if _state["requested"] is None:
        log.warning("%s received: finishing the batch in progress, then writing summary.json and failed.json", name)
    _state["requested"] = name


def enter() -> None:
    """Start (or nest into) a predict run: SIGTERM sets the stop flag instead of ending the process.
    Only the main thread can install signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    if _state["depth"] == 0:
        _state["requested"] = None
        for sig in SIGNALS:
            current = signal.getsignal(sig)
            if current is not _handler:
                _state["previous"][sig] = current
            signal.signal(sig, _handler)
    _state["depth"] += 1


def exit() -> None:  # noqa: A001 - the counterpart of enter()
    """Leave a predict run; the outermost exit restores the handlers that were there before."""
    if threading.current_thread() is not threading.main_thread() or _state["depth"] == 0:
        return
    _state["depth"] -= 1
    if _state["depth"] == 0:
        for sig, previous in _state["previous"].items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        _state["previous"] = {}


def requested() -> str | None:
    """The name of the stop signal received during this run (``"SIGTERM"``), or None."""
    return _state["requested"]


def request(name: str = "SIGTERM") -> None:
    """Ask the active run to stop after its current batch, as SIGTERM does (tests, embedding code)."""
    _state["requested"] = name


def active() -> bool:
    return _state["depth"] > 0
