"""The personal prior bundle: what ``fit`` produces and every task loads.

A folder::

    PRIOR/
      generator.safetensors   the tuned generator (native format: weights + architecture)
      anchors.safetensors     one w per training photo [N, w_dim] + the photo names in order
      prior.json              family, source, resolution, training settings, album digest,
                              metrics at export, version

Loading never unpickles. Tasks import this module, never the tuning code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data.anchors_io import Anchors, load_anchors, save_anchors
from .generators import Generator, load_generator, save_generator

GENERATOR_FILE = "generator.safetensors"
ANCHORS_FILE = "anchors.safetensors"
INFO_FILE = "prior.json"
BUNDLE_VERSION = 1


class PriorError(ValueError):
    """A prior bundle is missing or malformed; the message names the folder and the file."""


@dataclass
class PersonalPrior:
    """A tuned generator and the anchors of the person's photos."""

    generator: Generator
    anchors: Anchors
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.anchors.w_dim != self.generator.w_dim:
            raise PriorError(f"anchors have w_dim={self.anchors.w_dim}, the generator has w_dim={self.generator.w_dim}")

    @property
    def w(self) -> torch.Tensor:
        """The anchors ``[N, w_dim]`` on the generator's device."""
        return self.anchors.w.to(self.generator.w_avg.device)

    @property
    def names(self) -> list[str]:
        return list(self.anchors.names)

    def to(self, device: torch.device | str) -> PersonalPrior:
        self.generator.to(device)
        return self

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the bundle atomically: into a temp folder beside ``path``, then renamed into place."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            save_generator(self.generator, tmp / GENERATOR_FILE)
            save_anchors(tmp / ANCHORS_FILE, self.anchors.w, self.anchors.names, metadata=self.anchors.metadata)
            info = {
                **self.info,
                "bundle_version": BUNDLE_VERSION,
                "mystyle_pl_version": __version__,
                "family": self.generator.family,
                "img_resolution": self.generator.img_resolution,
                "num_ws": self.generator.num_ws,
                "w_dim": self.generator.w_dim,
                "num_anchors": len(self.anchors.names),
            }
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> PersonalPrior:
        """Load a bundle folder (safetensors + JSON only)."""
        path = Path(path)
        if not path.is_dir():
            raise PriorError(f"prior bundle not found: {path} (expected a folder with {GENERATOR_FILE}, {ANCHORS_FILE}, {INFO_FILE})")
        missing = [f for f in (GENERATOR_FILE, ANCHORS_FILE, INFO_FILE) if not (path / f).is_file()]
        if missing:
            raise PriorError(f"{path}: not a prior bundle, missing {', '.join(missing)}")
        try:
            info = json.loads((path / INFO_FILE).read_text())
        except json.JSONDecodeError as e:
            raise PriorError(f"{path / INFO_FILE}: invalid JSON ({e})") from e
        if info.get("bundle_version", 0) > BUNDLE_VERSION:
            raise PriorError(f"{path}: bundle version {info['bundle_version']} is newer than this mystyle-pl reads ({BUNDLE_VERSION})")
        generator = load_generator(path / GENERATOR_FILE, format="native").to(device).eval()
        anchors = load_anchors(path / ANCHORS_FILE)
        return cls(generator=generator, anchors=anchors, info=info)

    def describe(self) -> dict[str, Any]:
        """A summary for ``mystyle-pl info PRIOR``."""
        return {
            "kind": "personal prior",
            "family": self.generator.family,
            "img_resolution": self.generator.img_resolution,
            "num_ws": self.generator.num_ws,
            "num_anchors": len(self.anchors.names),
            "photos": self.names[:5] + (["..."] if len(self.names) > 5 else []),
            "source": self.info.get("generator_source"),
            "album": self.info.get("album"),
            "album_digest": self.info.get("album_digest"),
            "metrics": self.info.get("metrics", {}),
            "training": self.info.get("training", {}),
            "created": self.info.get("created"),
            "mystyle_pl_version": self.info.get("mystyle_pl_version"),
        }

    @staticmethod
    def is_bundle(path: str | os.PathLike) -> bool:
        path = Path(path)
        return path.is_dir() and (path / INFO_FILE).is_file()
