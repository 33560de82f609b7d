"""The optimiser's step loop that every projection shares (the P+ and W+ projectors, pivotal tuning):
the learning-rate ramps, early stopping, and the per-image best state.

``run_steps`` reads its schedule from a settings object with the fields ``steps``, ``lr_rampdown``,
``lr_rampup``, ``patience``, ``min_delta`` and ``progress`` (:class:`~.projection.ProjectionSettings`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm


@contextlib.contextmanager
def frozen_weights(*modules: torch.nn.Module) -> Iterator[None]:
    """Inside: no parameter of ``modules`` requires a gradient (the optimised tensors are elsewhere:
    codes, feature offsets); after: each parameter's own flag back, whatever happened inside."""
    params = list({id(p): p for m in modules for p in m.parameters()}.values())  # a module given twice counts once
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class EarlyStopping:
    """``stop(value)`` is True once the batch mean loss has not improved by ``min_delta`` for
    ``patience`` consecutive steps (``patience=None``: never)."""

    def __init__(self, patience: int | None, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.since_best = float("inf"), 0

    def stop(self, value: float) -> bool:
        if self.patience is None:
            return False
        if value < self.best - self.min_delta:
            self.best, self.since_best = value, 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience


def lr_factor(step: int, steps: int, rampdown: float, rampup: float = 0.0) -> float:
    """Learning-rate multiplier at ``step`` of ``steps``: a linear warm-up over the first ``rampup``
    fraction, 1, then a cosine ramp to 0 over the last ``rampdown`` fraction (StyleGAN2's projector,
    NVlabs/stylegan2-ada-pytorch ``projector.py``: rampup 0.05, rampdown 0.25). Fractions of the
    budget, so the schedule follows the number of steps. Adam moves every coordinate by about
    ``lr`` per step whatever its gradient, so with the non-smooth ``||delta_l||`` penalty the
    offsets keep jittering at the scale of ``lr``; the ramp lets them settle.

    >>> [round(lr_factor(i, 10, 0.5, 0.2), 3) for i in (0, 1, 2, 5, 9)]
    [0.5, 1.0, 1.0, 1.0, 0.095]
    """
    if steps <= 0:
        return 1.0
    t = step / steps
    factor = 1.0
    if rampup > 0:
        factor = min(1.0, (step + 1) / max(1.0, rampup * steps))
    if rampdown <= 0:
        return factor
    start = 1.0 - rampdown
    if t <= start:
        return factor
    return factor * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (t - start) / rampdown)))


class BestState:
    """Per image of a batch, the lowest loss seen and the state that gave it: the loss can rise
    before it falls (e.g. at tiny observation sizes), and early stopping must not return a worse
    state. ``states``: the optimised tensors (``[B, ...]`` each; None entries are skipped)."""

    def __init__(self, batch: int, device: torch.device, *states: torch.Tensor | None) -> None:
        self.loss = torch.full((batch,), float("inf"), device=device)
        self.states = [None if t is None else t.detach().clone() for t in states]

    def offer(self, loss: torch.Tensor, *states: torch.Tensor | None) -> None:
        """Keep ``states`` for the images whose ``loss [B]`` is below their best so far."""
        improved = loss.detach() < self.loss
        self.loss = torch.where(improved, loss.detach(), self.loss)
        for best, t in zip(self.states, states):
            if best is not None:
                best[improved] = t.detach()[improved]


def run_steps(
    optimizer: torch.optim.Optimizer,
    lrs: list[float],  # each param group's lr before the ramps (base_lrs)
    settings: Any,  # ProjectionSettings (or any object with its schedule fields: steps, ramps, patience, min_delta, progress)
    objective: Callable[[], tuple[torch.Tensor, torch.Tensor]],  # -> (per-image loss [B], the scalar to differentiate)
    desc: str,  # the progress bar's label
    after_step: Callable[[], None] | None = None,  # e.g. the proximal step of the offsets' penalty
) -> tuple[list[float], list[float]]:
    """The step loop both projectors share: the lr ramps (:func:`lr_factor`), ``optimizer.step``
    with a closure (called once per step by Adam, several times by L-BFGS's line search), early
    stopping on the batch mean loss. Returns ``(trace, seconds)``: the batch mean loss at each
    step's start and the seconds since the loop began at each step's end."""
    s, trace, seconds, evaluated = settings, [], [], []
    stopping, start = EarlyStopping(s.patience, s.min_delta), time.perf_counter()

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        per_image, total = objective()
        evaluated.append(per_image.detach().mean().item())
        total.backward()
        return total.detach()

    bar = tqdm(range(s.steps), desc=desc, leave=False, disable=not s.progress)
    for step in bar:
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr * lr_factor(step, s.steps, s.lr_rampdown, s.lr_rampup)
        evaluated.clear()
        optimizer.step(closure)
        if after_step is not None:
            after_step()
        trace.append(evaluated[0])
        seconds.append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{trace[-1]:.4f}")
        if stopping.stop(trace[-1]):
            break
    return trace, seconds
