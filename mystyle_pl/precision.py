"""The arithmetic of the projection steps' forward/backward passes through the generator.

``ProjectionSettings.precision``, in Lightning's words:

* ``"32"``: float32 throughout (the official google/mystyle projection).
* ``"bf16-mixed"``: the generator's render inside the projection's steps runs under
  ``torch.autocast(dtype=torch.bfloat16)`` (matrix products and convolutions in bfloat16, the
  rest in float32); the loss (LPIPS, MSE, the penalties) and the optimiser stay in float32, and so
  does the final render of the result. Pivotal tuning (:mod:`mystyle_pl.tasks.pivotal`) always runs in float32:
  under bfloat16 its 50 steps lost 0.17 dB, 0.014 LPIPS-VGG and 0.04 dlib distance on album 00001.
* ``"auto"``: ``"bf16-mixed"`` where the device computes bfloat16 natively (a CUDA device with
  bfloat16 support; a CPU with AVX512-BF16 or AMX), else ``"32"``: bfloat16 emulated on an older
  CPU is slower than float32.

Measured on the shared 2-core EPYC (AVX512-BF16), MobileStyleGAN at 1024 px, one image: a forward
and backward pass takes 1.04 s in float32 and 0.81 s under bfloat16 autocast; the two renders agree
to 50.7 dB PSNR (``docs/fidelity.md``, "Session 8", for the effect on the tasks' figures).
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

PRECISIONS = ("32", "bf16-mixed", "auto")
_ALIASES = {"32": "32", "32-true": "32", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "auto": "auto"}


def canonical_precision(precision: str | int) -> str:
    """One of :data:`PRECISIONS` for ``precision`` as Lightning's ``Trainer(precision=...)`` spells it
    (``32``, ``"32-true"``, ``"bf16"``, ...). Raises ``ValueError`` for anything else."""
    name = _ALIASES.get(str(precision).strip().lower())
    if name is None:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return name


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (CUDA: ``torch.cuda.is_bf16_supported``;
    CPU: AVX512-BF16 or AMX tiles, through torch's own CPU feature probes). Asked once per device
    type and process: ``"auto"`` is resolved at every optimisation step."""
    return _bf16_native(torch.device(device).type)


@lru_cache(maxsize=None)
def _bf16_native(device_type: str) -> bool:
    device = torch.device(device_type)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(probe is not None and probe() for probe in probes)
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"32"`` or ``"bf16-mixed"``: ``precision`` with ``"auto"`` decided for ``device``.

    Raises ``ValueError`` for a value :func:`canonical_precision` does not know."""
    precision = canonical_precision(precision)
    if precision == "auto":
        return "bf16-mixed" if bf16_native(device) else "32"
    return precision


def emulated_bf16_warning(trainer_precision: str | int, device: torch.device | str) -> str | None:
    """A warning for a Lightning ``Trainer(precision=...)`` that asks for bfloat16 on a device that
    only emulates it (a CPU without AVX512-BF16 or AMX: several times slower than float32), saying how
    to fix it; ``None`` when the precision is not bfloat16 or the device computes it natively.

    >>> emulated_bf16_warning("32-true", "cpu") is None
    True
    """
    if not str(trainer_precision).startswith("bf16") or bf16_native(device):
        return None
    return (
        f"trainer.precision is {trainer_precision} but this {torch.device(device).type} has no native bfloat16 "
        "(AVX512-BF16 or AMX on a CPU): it is emulated, several times slower than float32. "
        "Pass --trainer.precision 32-true."
    )


def render_context(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context in which an optimisation step renders: bfloat16 autocast for ``"bf16-mixed"``
    (or ``"auto"`` on a device with native bfloat16), else a no-op."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def render_step(generator, ws: torch.Tensor, noise_mode: str, precision: str) -> torch.Tensor:
    """``generator.synthesis(ws)`` for an optimisation step, under ``precision``; float32
    ``[B, 3, R, R]`` (an autocast render is cast back, so the loss is computed in float32)."""
    with render_context(precision, ws.device):
        images = generator.synthesis(ws, noise_mode=noise_mode)
    return images.float()
