"""``PersonalPhotosDataModule``: one person's album (and its anchors) for LightningCLI ``fit``.

In YAML (every key is an ``__init__`` argument)::

    data:
      class_path: mystyle_pl.data.PersonalPhotosDataModule
      init_args:
        album: albums/alice            # from `mystyle-pl prepare`, or a folder of aligned square photos
        anchors: albums/alice/anchors.safetensors
        resolution: 1024
        batch_size: 4                  # per rank
        val_fraction: 0.1

Under DDP the trainer must not swap in its own ``DistributedSampler`` (it pads the album with
repeated photos, and cannot rebuild this module's batch sampler): set ``trainer.use_distributed_sampler:
false``. The data module also switches it off itself at ``setup`` when it finds it on (with an info log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from ..generators.fileutil import write_bytes_atomic
from .anchors_io import Anchors, load_anchors
from .dataset import AlbumDataset, AlbumError, Photo, album_image_dir, list_album_files, scan_album
from .prepare import prepare_album
from .sampler import BalancedDistributedBatchSampler

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"


def hash_fraction(name: str, seed: int) -> float:
    """A uniform number in ``[0, 1)`` fixed by ``(seed, name)``: ``sha256(f"{seed}:{name}")``'s first 8 bytes / 2**64.

    >>> hash_fraction("0001.png", 0) == hash_fraction("0001.png", 0) != hash_fraction("0001.png", 1)
    True
    """
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _atomic_write_json(path: Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def _warn(message: str) -> None:
    """A warning shown once per job (rank 0 only under DDP)."""
    rank_zero_warn(message, category=UserWarning)


class PersonalPhotosDataModule(LightningDataModule):
    """One person's album of aligned face photos, with optional anchors and a held-out split.

    Batches are dicts: ``image [B, 3, R, R]`` float32 in ``[-1, 1]``; ``index [B]`` long (position in the
    album's photo list, sorted by file name); ``name`` (list of B file names); ``flipped [B]`` bool; and,
    when ``anchors`` is given, ``w [B, w_dim]``: each photo's own anchor, matched by file name.

    Args:
        album: Album folder. Photos are read from ``ALBUM/images/`` when it exists (what ``mystyle-pl prepare``
            writes), else from ``ALBUM/`` itself: any folder of already-aligned square photos
            (png, jpg, webp, bmp, tif). A photo that cannot be decoded is skipped with a warning naming it; a
            non-square photo is an error naming it.
        resolution: Side of the served images in pixels (the generator's resolution). Photos of another size
            are resampled with PIL's antialiased Lanczos filter (the filter FFHQ was made with); upsampling is
            reported with a warning.
        batch_size: Photos per batch on each rank. Under DDP every rank gets the same number of batches,
            ``ceil(N / (world_size * batch_size))``, so some batches are one photo smaller; no photo is dropped or
            repeated within an epoch.
        num_workers: DataLoader worker processes per rank (0 = load in the main process).
        hflip: Random horizontal flips of training photos. Default False, on evidence: (1) the tuner trains on
            (anchor ``w``, photo) pairs where ``w`` is the inversion of the *unflipped* photo, so a mirrored photo
            with the same ``w`` is a contradictory target (measured on the four shared FFHQ-aligned albums, a photo
            differs from its mirror by a mean L1 of 0.33-0.40 in [-1, 1], 65-95% of its distance to *another photo*
            of the person); (2) faces are not symmetric (hair parting, moles, a crooked smile) and a personal prior
            should learn the real person, not a symmetrised one; (3) the reference implementation (google/mystyle,
            ``utils/data_utils.py``) does not augment. With ``hflip=True`` and ``anchors`` the anchors file must hold
            ``w_flip`` (inversions of the mirrored photos), which flipped photos are paired with; without it setup
            raises. Without anchors flipping is allowed. Validation photos are never flipped.
        val_fraction: Hold out each photo whose ``hash_fraction(name, seed)`` is below this (in ``[0, 1)``). The
            rule looks at each file name alone, so the split does not change when files are reordered, and adding
            photos never moves existing ones between train and val; the held-out count is about
            ``val_fraction * N``, not exact. 0 = no held-out photos. Exclusive with ``val_names``.
        val_names: Explicit held-out photos: file names (``"0003.png"``) or, when unambiguous, stems (``"0003"``).
            An unknown name is an error listing it. None = use ``val_fraction``.
        anchors: Path of an anchors safetensors file (``w [N, w_dim]``, optional ``w_flip``, metadata ``names``;
            see ``mystyle_pl.data.anchors_io``). Matched to photos by file name, not order; a photo without an anchor
            is an error naming it and the file. None = batches carry no ``w``: even when ``ALBUM/anchors.safetensors``
            exists it is not loaded implicitly (explicit is better; pass its path).
        seed: Seed of the held-out split hash and of the per-epoch shuffling (the same on every rank).
        raw: Folder of raw, unaligned photos. When given, ``prepare_data`` (rank 0) runs
            ``mystyle_pl.data.prepare.prepare_album(raw, album, resolution=resolution)`` once, unless ``album``
            already holds a ``manifest.json`` (the cached result). None = ``album`` is already prepared.
    """

    def __init__(
        self,
        album: str,
        resolution: int = 1024,
        batch_size: int = 4,
        num_workers: int = 2,
        hflip: bool = False,
        val_fraction: float = 0.0,
        val_names: list[str] | None = None,
        anchors: str | None = None,
        seed: int = 0,
        raw: str | None = None,
    ):
        super().__init__()
        if not album:
            raise ValueError("data.album is required: the folder of aligned photos (from `mystyle-pl prepare`), e.g. --data.album albums/alice")
        if int(resolution) < 1:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_names is not None and float(val_fraction) > 0:
            raise ValueError("give either val_fraction or val_names, not both")
        self.save_hyperparameters()
        self.album = str(album)
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.hflip = bool(hflip)
        self.val_fraction = float(val_fraction)
        self.val_names = list(val_names) if val_names is not None else None
        self.anchors = anchors
        self.seed = int(seed)
        self.raw = raw

        self.photos: list[Photo] = []  # The album's readable photos, sorted by name.
        self.skipped: list[tuple[Path, str]] = []  # Unreadable files and why.
        self.anchor_set: Anchors | None = None  # The loaded anchors file.
        self.train_dataset: AlbumDataset | None = None
        self.val_dataset: AlbumDataset | None = None
        self._split: dict[str, Any] | None = None

    # ------------------------------------------------------------------ preparation

    def prepare_data(self) -> None:
        """Align ``raw`` into ``album`` once (rank 0; skipped when ``album/manifest.json`` exists)."""
        if self.raw is None:
            return
        album = Path(self.album)
        if (album / "manifest.json").is_file():
            log.info(
                "album %s is already prepared (manifest.json found); not re-running prepare on %s", album, self.raw
            )
            return
        log.info("preparing album %s from raw photos in %s (resolution %d)", album, self.raw, self.resolution)
        prepare_album(self.raw, self.album, resolution=self.resolution)

    # ------------------------------------------------------------------ setup

    def _trainer(self) -> Any:
        return getattr(self, "trainer", None)

    def _world(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer, else ``(1, 0)``."""
        trainer = self._trainer()
        if trainer is None:
            return 1, 0
        return int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))

    def _keep_own_batch_sampler(self) -> None:
        """Stop Lightning from replacing the balanced batch sampler with a padded ``DistributedSampler``."""
        trainer = self._trainer()
        connector = getattr(trainer, "_accelerator_connector", None)
        if connector is None:
            return
        distributed = self._world()[0] > 1 or bool(getattr(connector, "is_distributed", False))
        if distributed and getattr(connector, "use_distributed_sampler", False):
            log.info(
                "PersonalPhotosDataModule: setting use_distributed_sampler=False: its balanced batch sampler already "
                "shards the album over the ranks (every photo once per epoch, equal batch counts), whereas Lightning's "
                "DistributedSampler would repeat photos to pad the album. Set `trainer.use_distributed_sampler: false` "
                "to silence this."
            )
            connector.use_distributed_sampler = False

    def _scan(self) -> None:
        album = Path(self.album)
        if not album.is_dir() or not list_album_files(album):
            hint = " (run prepare_data(), or `mystyle-pl prepare`, first)" if self.raw is not None else ""
            where = album_image_dir(album) if album.is_dir() else album
            raise AlbumError(f"no photos found in album {where}{hint}")
        self.photos, self.skipped = scan_album(album)
        for path, reason in self.skipped:
            _warn(f"skipping unreadable photo {path}: {reason}")
        if not self.photos:
            raise AlbumError(f"album {album_image_dir(album)} has no readable photo")
        small = [p.name for p in self.photos if p.size < self.resolution]
        if small:
            _warn(
                f"{len(small)} photo(s) are smaller than resolution={self.resolution} and will be upsampled "
                f"(e.g. {small[0]}); consider a lower resolution or larger photos"
            )
        self._split = self._make_split()
        if not self._split["train"]:
            raise AlbumError(f"every photo of {album} is held out for validation; lower val_fraction or val_names")
        if self._split["rule"] != "none" and not self._split["val"]:
            _warn(f"no photo of {album} fell into the held-out split ({self._split['rule']}); validation is skipped")
        if self.anchors is not None:
            self.anchor_set = load_anchors(self.anchors)
        self._build_datasets()

    def attach_anchors(self, anchors: Anchors) -> None:
        """Pair the training photos with ``anchors`` (matched by name), e.g. anchors computed at fit start.

        Only training photos need an anchor: held-out photos are never part of the personal space.
        """
        self.anchor_set = anchors
        if self._split is not None:
            self._build_datasets()

    @property
    def train_names(self) -> list[str]:
        """File names of the training photos (album order)."""
        return list(self.split_record()["train"])

    @property
    def val_names_resolved(self) -> list[str]:
        """File names of the held-out photos (album order)."""
        return list(self.split_record()["val"])

    def _build_datasets(self) -> None:
        val = set(self._split["val"])
        train_rows = [i for i, p in enumerate(self.photos) if p.name not in val]
        val_rows = [i for i, p in enumerate(self.photos) if p.name in val]
        w = w_flip = None
        if self.anchor_set is not None:
            w, w_flip = self.anchor_set.select([self.photos[i].name for i in train_rows])
            if self.hflip and w_flip is None:
                raise ValueError(
                    f"hflip=True with anchors {self.anchor_set.path}: a mirrored photo paired with the anchor of the "
                    "unmirrored photo is a contradictory target. Store the mirrored photos' inversions as `w_flip` in "
                    "the anchors file, or set hflip=False (the default)."
                )
        self.train_dataset = AlbumDataset(
            [self.photos[i] for i in train_rows], self.resolution, w=w, w_flip=w_flip, hflip=self.hflip
        )
        self.val_dataset = AlbumDataset([self.photos[i] for i in val_rows], self.resolution)

    def _make_split(self) -> dict[str, Any]:
        names = [p.name for p in self.photos]
        if self.val_names is not None:
            by_stem: dict[str, list[str]] = {}
            for name in names:
                by_stem.setdefault(Path(name).stem, []).append(name)
            chosen, unknown = set(), []
            for wanted in self.val_names:
                if wanted in names:
                    chosen.add(wanted)
                elif len(by_stem.get(wanted, [])) == 1:
                    chosen.add(by_stem[wanted][0])
                else:
                    unknown.append(wanted)
            if unknown:
                skipped = {p.name for p, _ in self.skipped}
                notes = [f"{u!r}" + (" (unreadable, skipped)" if u in skipped else "") for u in unknown]
                raise AlbumError(
                    f"val_names not found in album {album_image_dir(self.album)}: {', '.join(notes)}; "
                    f"photos are named like {names[:3]}"
                )
            rule = "val_names: explicit list"
        elif self.val_fraction > 0:
            chosen = {n for n in names if hash_fraction(n, self.seed) < self.val_fraction}
            rule = f"hash: sha256('<seed>:<name>')[:8 bytes] / 2**64 < val_fraction={self.val_fraction}"
        else:
            chosen, rule = set(), "none"
        return {
            "train": [n for n in names if n not in chosen],
            "val": [n for n in names if n in chosen],
            "seed": self.seed,
            "rule": rule,
        }

    def setup(self, stage: str | None = None) -> None:
        """Scan the album, match anchors, split; record the split (``split.json`` in the log dir, ``hparams.split``)."""
        if self._split is None:
            self._scan()
        self._keep_own_batch_sampler()
        record = self.split_record()
        self.hparams["split"] = record
        trainer = self._trainer()
        if trainer is not None:
            log_dir = getattr(trainer, "log_dir", None)  # A collective under DDP: every rank asks.
            if log_dir is not None and getattr(trainer, "is_global_zero", True):
                _atomic_write_json(Path(log_dir) / SPLIT_FILE, record)

    def split_record(self) -> dict[str, Any]:
        """``{"train": [names], "val": [names], "seed": int, "rule": str}`` (after ``setup``)."""
        if self._split is None:
            raise RuntimeError("the split is made in setup(); call setup() first")
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._split.items()}

    @property
    def album_names(self) -> list[str]:
        """The album's readable photos' file names; ``index`` in batches points into this list."""
        return [p.name for p in self.photos]

    @property
    def w_dim(self) -> int | None:
        return self.anchor_set.w_dim if self.anchor_set is not None else None

    # ------------------------------------------------------------------ loaders

    def _loader(self, dataset: AlbumDataset, shuffle: bool) -> DataLoader:
        world, rank = self._world()
        batch_sampler = BalancedDistributedBatchSampler(
            len(dataset), self.batch_size, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed
        )
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _require_setup(self) -> None:
        if self._split is None:
            self.setup("fit")
        self._keep_own_batch_sampler()

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        assert self.train_dataset is not None
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The held-out photos, in album order, balanced over ranks; ``[]`` (no validation) when there are none."""
        self._require_setup()
        assert self.val_dataset is not None
        if len(self.val_dataset) == 0:
            return []
        world, _ = self._world()
        if len(self.val_dataset) < world:
            raise AlbumError(
                f"{len(self.val_dataset)} held-out photo(s) cannot be shared by {world} ranks without repeating one: "
                "hold out at least one photo per rank, or none"
            )
        return self._loader(self.val_dataset, shuffle=False)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"split": self.split_record()} if self._split is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("split")
        if saved is not None and self._split is not None:
            current = self.split_record()
            if (saved.get("train"), saved.get("val")) != (current["train"], current["val"]):
                warnings.warn(
                    "the checkpoint was trained on a different train/val split of the album than this run's "
                    f"(train {len(saved.get('train', []))} -> {len(current['train'])} photos, "
                    f"val {len(saved.get('val', []))} -> {len(current['val'])})",
                    UserWarning,
                    stacklevel=2,
                )
