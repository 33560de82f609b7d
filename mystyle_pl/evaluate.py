"""The older name of :mod:`mystyle_pl.evaluation` (``from mystyle_pl.evaluate import evaluate`` keeps working)."""

from __future__ import annotations

from .evaluation import *  # noqa: F403  (the same public names)
from .evaluation import __all__  # noqa: F401
