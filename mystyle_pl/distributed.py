"""Process-group housekeeping shared by the multi-process runs (``fit`` and ``predict`` under DDP).

Lightning destroys the default process group at interpreter exit only for NCCL
(``lightning.fabric.utilities.distributed._init_dist_connection``). A gloo group (DDP on CPU) is
left to interpreter finalisation, where gloo's worker threads may still hold finished work
objects whose tensors need the GIL: the rank dies with SIGABRT after its work is done, at random
(pytorch/pytorch#179291 describes the race; our ``ddp_spawn`` predict test hit it in CI).
:func:`destroy_process_group_at_exit` registers the cleanup that Lightning registers for NCCL.
"""

from __future__ import annotations

import atexit

import torch.distributed as dist

_registered = False


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def destroy_process_group_at_exit() -> None:
    """Destroy the default process group (if one is initialised then) when this process exits,
    while the interpreter is still whole. Idempotent: registers one handler per process.
    Call it from a hook that runs on every rank (``setup``)."""
    global _registered
    if not _registered and dist.is_available():
        atexit.register(_destroy_process_group)
        _registered = True
