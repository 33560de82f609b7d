"""Album data: reading aligned photos, anchors files, the balanced DDP sampler and the LightningDataModule.

Exports are resolved lazily (PEP 562), so that ``import mystyle_pl.data.prepare`` (the ``prepare``
tool command) does not pay for importing Lightning. The preparation pipeline (``io``, ``faces``,
``align``, ``curate``, ``prepare``) is imported from its own modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Anchors": ".anchors_io",
    "AnchorsError": ".anchors_io",
    "load_anchors": ".anchors_io",
    "save_anchors": ".anchors_io",
    "AlbumDataset": ".dataset",
    "AlbumError": ".dataset",
    "BalancedDistributedBatchSampler": ".sampler",
    "PersonalPhotosDataModule": ".datamodule",
    # album preparation (mystyle-pl prepare) and pasting results back
    "AlignTransform": ".align",
    "align_face": ".align",
    "face_mask": ".align",
    "paste_back": ".align",
    "ImageReadError": ".io",
    "read_image": ".io",
    "load_manifest": ".manifest",
    "prepare_album": ".prepare",
}

__all__ = [
    "AlignTransform",
    "ImageReadError",
    "align_face",
    "face_mask",
    "load_manifest",
    "paste_back",
    "prepare_album",
    "read_image",
    "AlbumDataset",
    "AlbumError",
    "Anchors",
    "AnchorsError",
    "BalancedDistributedBatchSampler",
    "PersonalPhotosDataModule",
    "load_anchors",
    "save_anchors",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
