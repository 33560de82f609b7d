"""A distributed batch sampler that neither drops nor repeats a photo and keeps every rank in step.

A personal album is small (tens to a few hundred photos), so the usual DDP recipe hurts:
``DistributedSampler`` pads the album with repeated photos so that every rank gets the same
count (a few photos weigh double every epoch), and ``drop_last`` would lose photos. Ranks must
still run the same number of optimizer steps, or DDP's gradient all-reduce waits forever.

:class:`BalancedDistributedBatchSampler` shuffles the album with a permutation seeded by
``seed + epoch`` (the same on every rank), deals it round-robin to the ranks (their counts differ
by at most one), and cuts every rank's share into the same number of batches,
``ceil(N / (num_replicas * batch_size))``, with sizes as equal as possible (so some batches are
one photo smaller than ``batch_size``). Every photo is seen exactly once per epoch across ranks.

>>> s = BalancedDistributedBatchSampler(7, batch_size=2, num_replicas=2, rank=1, shuffle=False)
>>> list(s), len(s)
([[1, 3], [5]], 2)
>>> list(BalancedDistributedBatchSampler(7, batch_size=2, num_replicas=2, rank=0, shuffle=False))
[[0, 2], [4, 6]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler


def _epoch_permutation(num_samples: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    if not shuffle:
        return list(range(num_samples))
    generator = torch.Generator()
    generator.manual_seed(int(seed) + int(epoch))
    return torch.randperm(num_samples, generator=generator).tolist()


class BalancedShardSampler(Sampler[int]):
    """This rank's share of an epoch: ``permutation[rank::num_replicas]`` (counts differ by at most one).

    It is the ``sampler`` of :class:`BalancedDistributedBatchSampler`. Lightning calls
    ``dataloader.batch_sampler.sampler.set_epoch(epoch)`` at the start of every epoch, which is how the
    epoch reaches the permutation.
    """

    def __init__(
        self,
        num_samples: int,  # Dataset length N (photos in this split).
        num_replicas: int = 1,  # World size (number of DDP ranks).
        rank: int = 0,  # This process's global rank, 0 <= rank < num_replicas.
        shuffle: bool = True,  # New permutation every epoch (seeded by seed + epoch)? False = album order.
        seed: int = 0,  # Permutation seed; must be the same on every rank.
    ):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.num_samples = int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        permutation = _epoch_permutation(self.num_samples, self.shuffle, self.seed, self.epoch)
        return iter(permutation[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))


class BalancedDistributedBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one DDP rank: every sample once per epoch, equal batch counts on all ranks.

    With ``drop_last=False`` (the default) rank ``r`` gets ``permutation[r::num_replicas]`` cut into
    ``ceil(N / (num_replicas * batch_size))`` batches whose sizes differ by at most one. The only case
    where that count cannot be met without an empty batch is ``batch_size=1`` with ``N`` not divisible
    by ``num_replicas``: then every rank gets ``N // num_replicas`` batches and one batch on some ranks
    holds two samples. Fewer samples than ranks is an error (a rank would have nothing to do).

    With ``drop_last=True`` every batch holds exactly ``batch_size`` samples and the tail of each
    epoch's permutation (fewer than ``num_replicas * batch_size`` samples, different ones each epoch
    when shuffling) is skipped.

    ``set_epoch(epoch)`` selects the permutation (Lightning calls it through ``.sampler``, see
    :class:`BalancedShardSampler`); ``state_dict()`` / ``load_state_dict()`` carry the epoch.
    """

    def __init__(
        self,
        num_samples: int,  # Dataset length N (photos in this split).
        batch_size: int,  # Largest batch per rank (per-GPU batch size).
        num_replicas: int = 1,  # World size (number of DDP ranks).
        rank: int = 0,  # This process's global rank, 0 <= rank < num_replicas.
        shuffle: bool = True,  # New permutation every epoch (seeded by seed + epoch)? False = album order.
        seed: int = 0,  # Permutation seed; must be the same on every rank.
        drop_last: bool = False,  # Only full batches, skipping each epoch's remainder? False = keep every sample.
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = BalancedShardSampler(num_samples, num_replicas, rank, shuffle=shuffle, seed=seed)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        if self.drop_last and num_samples < num_replicas * batch_size:
            raise ValueError(
                f"drop_last=True needs at least num_replicas * batch_size = {num_replicas} * {batch_size} samples "
                f"for one full batch per rank, got {num_samples}"
            )
        if not self.drop_last and num_samples < num_replicas:
            raise ValueError(
                f"{num_samples} sample(s) cannot be spread over {num_replicas} ranks without repeating one: "
                "every rank needs at least one (use fewer devices or more photos)"
            )

    # The sampler's settings, readable here too.
    num_samples = property(lambda self: self.sampler.num_samples)
    num_replicas = property(lambda self: self.sampler.num_replicas)
    rank = property(lambda self: self.sampler.rank)
    shuffle = property(lambda self: self.sampler.shuffle)
    seed = property(lambda self: self.sampler.seed)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (call it with the same value on every rank)."""
        self.sampler.set_epoch(epoch)

    def num_batches(self) -> int:
        """Batches per rank and epoch (the same on every rank)."""
        n, world, bs = self.num_samples, self.num_replicas, self.batch_size
        if self.drop_last:
            return n // (world * bs)
        return min(math.ceil(n / (world * bs)), n // world)  # n // world < ceil(...) only when batch_size == 1.

    def __len__(self) -> int:
        return self.num_batches()

    def __iter__(self) -> Iterator[list[int]]:
        num_batches = self.num_batches()
        if self.drop_last:
            permutation = _epoch_permutation(self.num_samples, self.shuffle, self.seed, self.epoch)
            used = permutation[: num_batches * self.num_replicas * self.batch_size]
            share = used[self.rank :: self.num_replicas]
            for b in range(num_batches):
                yield share[b * self.batch_size : (b + 1) * self.batch_size]
            return
        share = list(self.sampler)
        base, extra = divmod(len(share), num_batches)
        start = 0
        for b in range(num_batches):
            size = base + (1 if b < extra else 0)
            yield share[start : start + size]
            start += size

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "num_samples" in state and int(state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"sampler state was saved for {state['num_samples']} samples, this sampler has {self.num_samples}"
            )
        self.set_epoch(int(state["epoch"]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"num_replicas={self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
            f"drop_last={self.drop_last}, epoch={self.epoch})"
        )
