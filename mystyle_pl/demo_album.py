"""A synthetic personal album: one made-up person, photographed many times, by the face prior itself.

The project may not ship anyone's photos, so ``mystyle-pl demo`` makes its person with the real,
generic FFHQ face generator (``mobilestylegan-ffhq``). :func:`synthesize_album` writes::

    OUT/photos/demo_00.png ... demo_{N-1}.png     the training photos (the "album")
    OUT/held_out/demo_N.png ...                   photos of the same person kept for evaluation
    OUT/album.json                                how every photo was made, and the identity check

How a photo is made (the recipe; every number is an :class:`AlbumRecipe` field, recorded in
``album.json`` with each photo's own draws so that any photo can be re-rendered):

1. **The person.** ``z = torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed))``,
   mapped to ``w`` and pulled toward the generator's average face,
   ``w0 = w_avg + psi * (mapping(z) - w_avg)`` (``psi = 0.7``, a mild truncation that keeps the
   face typical and well rendered). Photo ``demo_00`` is ``w0`` itself.
2. **Pose** (the coarse W+ slots, 4-8 px): ``w0 + sum_k a_k * sigma_k * d_k`` over the first 4
   principal directions ``d_k`` of W (GANSpace-style PCA of 10000 mapped ``z``,
   :func:`~mystyle_pl.tasks.edit.principal_directions`; ``sigma_k`` is the spread of W along
   ``d_k``), ``a_k`` uniform in ``[-1.75, 1.75]``. In the coarse slots these directions turn and
   tilt the head and put on or take off a hat, but keep the face's identity.
3. **Expression** (the 16 px slots, where StyleGAN keeps the smile and the mouth's shape): the
   same kind of move over the first 8 directions, ``a_k`` uniform in ``[-1, 1]``.
4. **Lighting and colour** (slots of 32 px and finer): style mixing toward another random face
   ``w_mix`` (truncated like ``w0``, seeded per photo): ``w + alpha * (w_mix - w)``, ``alpha``
   uniform in ``[0.25, 0.65]``. These styles carry light, white balance, skin tone, micro-texture
   and some of the mouth's detail, not the shape of the face.

Measured once on ``mobilestylegan-ffhq`` with seed 1 (12 + 4 photos at 512 px, 2-core CPU: 40 s,
half rendering, half the dlib check): every photo passed at the first draw; distances to the
identity centre 0.27-0.43 (median 0.37), like a real person's own photos (<= 0.48 on the shared
real albums, other people >= 0.63).

The generator renders at its own resolution (1024 px); photos are saved at ``size`` px (Lanczos),
512 by default, which keeps ``prepare`` fast.

Which slots are "coarse", "middle" and "fine" is read from the generator (:func:`slot_resolutions`):
MobileStyleGAN's 23 slots are ``b4.conv`` (slot 0), then ``up, conv0, conv1`` per block from 8 px
to 512 px, then ``to_img``; so 4-8 px = slots 0-3, 16 px = 4-6, 32 px = 7-9, >= 64 px = 10-22.
StyleGAN2's W+ slots go two per resolution (slots 0-1: 4 px, 2-3: 8 px, ...).

**The identity check** (``identity="dlib"``): every photo goes through the same face analysis as
``mystyle-pl prepare`` (dlib detection, refined landmarks, 128-d descriptor), the album's dominant
identity is found as curation finds it (:func:`~mystyle_pl.data.curate.dominant_identity`), and a
photo is replaced by a fresh draw when no face is found, when it lies ``identity_threshold`` (0.58,
curation's default; dlib's same-person rule is 0.6) or more from the identity centre, or when it is
a near-duplicate (closer than 0.14, curation's duplicate rule) of another photo. This repeats until
every photo passes, so that ``prepare`` keeps all of them. Each photo's final distance to the centre
is recorded in ``album.json``.

Everything is seeded: the same ``seed``, generator and recipe give the same album.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import load_generator
from .data.curate import dominant_identity
from .data.faces import FaceAnalyzer, check_face_models
from .data.io import to_uint8, write_bytes_atomic, write_image
from .tasks.edit import principal_directions

ALBUM_FILE = "album.json"
PHOTOS_DIR = "photos"
HELD_OUT_DIR = "held_out"
ALBUM_FORMAT = "mystyle_pl.demo_album"
ALBUM_VERSION = 1

Describe = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class AlbumRecipe:
    """How the variations of the demo person are drawn (see the module docstring)."""

    truncation_psi: float = 0.7  # Pull of the person (and of the mixing faces) toward w_avg; 1 = none.
    pose_directions: int = 4  # Principal directions of W moved in the coarse (pose) slots: the first k.
    pose_strength: float = 1.75  # Max |coefficient| per pose direction, in units of W's std along it.
    expression_directions: int = 8  # Principal directions moved in the expression slots: the first k.
    expression_strength: float = 1.0  # Max |coefficient| per expression direction (same units).
    lighting_alpha: tuple[float, float] = (0.25, 0.65)  # Range of the fine-slot mixing weight toward another face.
    pose_resolutions: tuple[int, int] = (4, 8)  # Slot resolutions (px, inclusive) of the pose moves.
    expression_resolutions: tuple[int, int] = (16, 16)  # Slot resolutions of the expression moves.
    lighting_min_resolution: int = 32  # Slots at this resolution and above get the lighting / colour mixing.
    principal_samples: int = 10000  # Mapped z used for the PCA of W.
    principal_seed: int = 0  # Seed of those z.
    identity_threshold: float = 0.58  # Max descriptor distance to the identity centre (curation's default).
    duplicate_threshold: float = 0.14  # Min descriptor distance between two photos (curation's duplicate rule).
    max_rounds: int = 8  # Rounds of replacing failed photos before giving up.

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class AlbumResult:
    """What :func:`synthesize_album` wrote."""

    out_dir: Path
    photos: list[Path]  # training photos, in order
    held_out: list[Path]  # held-out photos, in order
    record: dict = field(repr=False)  # the content of album.json
    seconds: float = 0.0

    def summary(self) -> str:
        ident = self.record.get("identity", {})
        head = (
            f"demo album {self.out_dir}: {len(self.photos)} photos + {len(self.held_out)} held out, "
            f"{self.record['size']} px, seed {self.record['seed']} ({self.seconds:.1f} s)"
        )
        lines = [head]
        if ident.get("check"):
            d = ident["distances"]
            lines.append(f"  identity ({ident['check']}): distance to the centre median {d['median']:.3f}, "
                         f"max {d['max']:.3f} (threshold {ident['threshold']}); {ident['replaced']} draws replaced")  # fmt: skip
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# the generator's W+ layout


def slot_resolutions(generator) -> list[int]:
    """The resolution (px) of the layer each W+ slot modulates, for ``generator.num_ws`` slots.

    MobileStyleGAN names its slots (``synthesis.ws_layers``: ``b4.conv``, ``b8.up``, ...,
    ``to_img``); StyleGAN2 uses two slots per resolution from 4 px (StyleGAN's usual convention).

    >>> from mystyle_pl.generators.mobilestylegan import MobileStyleGANGenerator
    >>> slot_resolutions(MobileStyleGANGenerator(z_dim=8, w_dim=8, channels=(16, 8, 8), mapping_layers=1))
    [4, 8, 8, 8, 16, 16, 16, 32]
    >>> from mystyle_pl.generators import StyleGAN2Generator
    >>> slot_resolutions(StyleGAN2Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=8))
    [4, 4, 8, 8, 16, 16]
    """
    num_ws, res = int(generator.num_ws), int(generator.img_resolution)
    names = getattr(generator.synthesis, "ws_layers", None)
    if names is not None and len(names) == num_ws:
        out = []
        for name in names:
            head = name.split(".")[0]
            out.append(int(head[1:]) if head.startswith("b") and head[1:].isdigit() else res)
        return out
    return [min(res, 2 ** (2 + s // 2)) for s in range(num_ws)]


def slots_between(resolutions: Sequence[int], low: int, high: int | None = None) -> list[int]:
    """Indices of the slots whose resolution lies in ``[low, high]`` (``high=None``: no upper bound)."""
    return [i for i, r in enumerate(resolutions) if r >= low and (high is None or r <= high)]


# ----------------------------------------------------------------------------------------
# drawing the photos


class AlbumDrawer:
    """Draws and renders the variations of one person (the recipe of the module docstring)."""

    def __init__(
        self,
        generator,  # the generic face generator (its mapping network and synthesis)
        seed: int,  # seeds the person and every photo's draws
        recipe: AlbumRecipe,  # strengths and layer ranges
        device: torch.device | str | None = None,  # where to render; None = the generator's device
    ):
        self.generator = generator
        self.seed = int(seed)
        self.recipe = recipe
        self.device = torch.device(device) if device is not None else generator.w_avg.device
        k = max(1, min(max(recipe.pose_directions, recipe.expression_directions), generator.w_dim))
        dirs, std = principal_directions(
            generator, k=k, num_samples=max(k, recipe.principal_samples), seed=recipe.principal_seed, return_std=True
        )
        self.directions = dirs.to(self.device)  # [k, w_dim] unit rows
        self.std = std.to(self.device)  # [k]
        res = slot_resolutions(generator)
        self.resolutions = res
        self.pose_slots = slots_between(res, *recipe.pose_resolutions)
        self.expression_slots = slots_between(res, *recipe.expression_resolutions)
        self.lighting_slots = slots_between(res, recipe.lighting_min_resolution)
        self.w0 = self._truncated_w(self._z(self.seed))  # [1, w_dim]

    def _z(self, seed: int) -> torch.Tensor:
        """The ``z [1, z_dim]`` of a seed (``torch.randn`` on the CPU, as the generator grids draw faces)."""
        return torch.randn(1, self.generator.z_dim, generator=torch.Generator().manual_seed(int(seed))).to(self.device)

    @torch.no_grad()
    def _truncated_w(self, z: torch.Tensor) -> torch.Tensor:
        w = self.generator.mapping(z)
        avg = self.generator.w_avg.to(w)
        return avg + self.recipe.truncation_psi * (w - avg)

    def draw(self, index: int) -> dict:
        """The random choices of draw ``index`` (0 = the person, unchanged). JSON-serialisable."""
        r = self.recipe
        kp, ke = min(r.pose_directions, len(self.std)), min(r.expression_directions, len(self.std))
        if index == 0:
            return {"draw": 0, "pose": [0.0] * kp, "expression": [0.0] * ke, "lighting_alpha": 0.0, "mix_seed": None}
        rng = np.random.default_rng([self.seed, index])
        pose = rng.uniform(-r.pose_strength, r.pose_strength, kp)
        expression = rng.uniform(-r.expression_strength, r.expression_strength, ke)
        alpha = rng.uniform(*r.lighting_alpha)
        mix_seed = int(rng.integers(0, 2**31 - 1))
        return {
            "draw": int(index),
            "pose": [round(float(v), 4) for v in pose],
            "expression": [round(float(v), 4) for v in expression],
            "lighting_alpha": round(float(alpha), 4),
            "mix_seed": mix_seed,
        }

    def ws(self, draw: dict) -> torch.Tensor:
        """``ws [1, num_ws, w_dim]`` of a draw."""
        g = self.generator
        ws = g.broadcast_w(self.w0).clone()
        scale = self.std[:, None] * self.directions  # [k, w_dim]
        pose = torch.tensor(draw["pose"], device=self.device, dtype=ws.dtype) @ scale[: len(draw["pose"])]
        expr = torch.tensor(draw["expression"], device=self.device, dtype=ws.dtype) @ scale[: len(draw["expression"])]
        ws[:, self.pose_slots] += pose
        ws[:, self.expression_slots] += expr
        if draw["mix_seed"] is not None and self.lighting_slots:
            w_mix = self._truncated_w(self._z(draw["mix_seed"]))  # [1, w_dim]
            fine = ws[:, self.lighting_slots]
            ws[:, self.lighting_slots] = fine + draw["lighting_alpha"] * (w_mix[:, None] - fine)
        return ws

    @torch.no_grad()
    def render(self, draws: Sequence[dict], size: int, batch_size: int = 4) -> list[np.ndarray]:
        """Render draws to ``uint8 [size, size, 3]`` arrays (Lanczos-resized from the generator's resolution)."""
        out = []
        for i in range(0, len(draws), batch_size):
            ws = torch.cat([self.ws(d) for d in draws[i : i + batch_size]])
            images = to_uint8(self.generator.synthesis(ws, noise_mode="const"))
            for img in images:
                if img.shape[0] != size:
                    img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
                out.append(img)
        return out


# ----------------------------------------------------------------------------------------
# identity


def dlib_describer() -> Describe:
    """A function ``uint8 image -> 128-d descriptor`` (or None when no face) using ``prepare``'s analysis."""
    check_face_models()
    analyzer = FaceAnalyzer()

    def describe(image: np.ndarray) -> np.ndarray | None:
        faces = analyzer.analyze(image)
        if not faces or faces[0].descriptor is None:
            return None
        return np.asarray(faces[0].descriptor, dtype=np.float64)

    return describe


def identity_failures(
    descriptors: Sequence[np.ndarray | None], threshold: float, duplicate_threshold: float
) -> tuple[np.ndarray | None, list[float | None], dict[int, str]]:
    """Judge photos by their descriptors: ``(centre, distance to it per photo, {index: reason})``.

    Reasons: ``no_face``, ``other_person`` (distance >= ``threshold``), ``duplicate`` (closer than
    ``duplicate_threshold`` to an earlier photo that passes).

    >>> a = np.zeros(4)
    >>> d = [a, a + 0.1, a + 0.01, None, a + 1.0]
    >>> centre, dist, bad = identity_failures(d, threshold=0.58, duplicate_threshold=0.14)
    >>> bad
    {2: 'duplicate', 3: 'no_face', 4: 'other_person'}
    """
    dim = next((len(d) for d in descriptors if d is not None), 1)
    stacks = [np.asarray(d, dtype=np.float64)[None] if d is not None else np.zeros((0, dim)) for d in descriptors]
    centre, picks = dominant_identity(stacks, threshold=threshold, pair_threshold=max(threshold, 0.6))
    distances = [None if dist is None else float(dist) for _, dist in picks]
    bad: dict[int, str] = {}
    kept: list[int] = []
    for i, (d, dist) in enumerate(zip(descriptors, distances)):
        if d is None:
            bad[i] = "no_face"
        elif dist is None or dist >= threshold:
            bad[i] = "other_person"
        elif any(np.linalg.norm(np.asarray(d) - np.asarray(descriptors[j])) < duplicate_threshold for j in kept):
            bad[i] = "duplicate"
        else:
            kept.append(i)
    return centre, distances, bad


# ----------------------------------------------------------------------------------------
# the album


def synthesize_album(
    out_dir: str | Path,  # album folder to create (photos/, held_out/, album.json)
    num_photos: int = 12,  # training photos
    num_held_out: int = 4,  # photos of the same person kept out of training, for evaluation
    seed: int = 1,  # seeds the person and every variation (1: the default demo person)
    generator=None,  # a Generator; None = load_generator("mobilestylegan-ffhq")
    size: int = 512,  # side of the saved photos in px (the generator renders at its own resolution)
    recipe: AlbumRecipe | None = None,  # strengths, layer ranges and identity rules; None = AlbumRecipe()
    identity: str | Describe | None = "dlib",  # "dlib", a function uint8 image -> descriptor or None, or None (no check)
    device: torch.device | str | None = None,  # where to render; None = the generator's device
    batch_size: int = 4,  # images rendered at once
    generator_name: str | None = None,  # how album.json names the generator; None = the asset name or family
    overwrite: bool = False,  # replace an existing album.json (photos are rewritten)
    log: Callable[[str], None] | None = print,  # progress messages; None = quiet
) -> AlbumResult:
    """Synthesise one person's album with a generic face generator (see the module docstring)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    say = log or (lambda msg: None)
    if num_photos < 1 or num_held_out < 0:
        raise ValueError(f"need num_photos >= 1 and num_held_out >= 0, got {num_photos} and {num_held_out}")
    if size < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    if (out_dir / ALBUM_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir / ALBUM_FILE} exists; pass overwrite=True to make the album again")
    recipe = recipe if recipe is not None else AlbumRecipe()
    if generator is None:
        generator = load_generator("mobilestylegan-ffhq")
        generator_name = generator_name or "mobilestylegan-ffhq"
    generator = generator.eval()
    if device is not None:
        generator = generator.to(device)
    drawer = AlbumDrawer(generator, seed, recipe, device=device)
    describe: Describe | None = dlib_describer() if identity == "dlib" else identity  # type: ignore[assignment]
    if isinstance(describe, str):
        raise TypeError(f"identity must be 'dlib', a function or None, got {identity!r}")

    total = num_photos + num_held_out
    draws = [drawer.draw(i) for i in range(total)]
    images = drawer.render(draws, size, batch_size)
    say(f"demo album: rendered {total} photos of the demo person (seed {seed}) in {time.perf_counter() - start:.1f} s")
    next_draw, replaced, rejected = total, 0, []
    descriptors: list[np.ndarray | None] = [None] * total
    distances: list[float | None] = [None] * total
    if describe is not None:
        descriptors = [describe(img) for img in images]
        for round_ in range(recipe.max_rounds + 1):
            _, distances, bad = identity_failures(descriptors, recipe.identity_threshold, recipe.duplicate_threshold)
            if not bad:
                break
            if round_ == recipe.max_rounds:
                raise RuntimeError(
                    f"demo album: {len(bad)} photos still fail the identity check after {recipe.max_rounds} rounds "
                    f"({sorted(set(bad.values()))}); try another seed or smaller strengths"
                )
            for i, reason in sorted(bad.items()):
                dist = distances[i]
                rejected.append({"draw": draws[i]["draw"], "reason": reason, "distance": None if dist is None else round(dist, 4)})
                draws[i] = drawer.draw(next_draw)
                next_draw += 1
            redo = sorted(bad)
            for i, img in zip(redo, drawer.render([draws[i] for i in redo], size, batch_size)):
                images[i], descriptors[i] = img, describe(img)
            replaced += len(redo)
            say(f"demo album: replaced {len(redo)} draws ({', '.join(sorted(set(bad.values())))})")

    entries, photos, held_out = [], [], []
    for i, (draw, img) in enumerate(zip(draws, images)):
        split = "train" if i < num_photos else "held_out"
        rel = f"{PHOTOS_DIR if split == 'train' else HELD_OUT_DIR}/demo_{i:02d}.png"
        path = write_image(out_dir / rel, img)
        (photos if split == "train" else held_out).append(path)
        dist = distances[i]
        entries.append({"file": rel, "split": split, **draw, "identity_distance": None if dist is None else round(dist, 4)})
    record: dict[str, Any] = {
        "format": ALBUM_FORMAT,
        "version": ALBUM_VERSION,
        "generator": generator_name or getattr(generator, "family", type(generator).__name__),
        "generator_resolution": int(generator.img_resolution),
        "num_ws": int(generator.num_ws),
        "seed": int(seed),
        "size": int(size),
        "recipe": recipe.to_dict(),
        "slots": {
            "resolutions": drawer.resolutions,
            "pose": drawer.pose_slots,
            "expression": drawer.expression_slots,
            "lighting": drawer.lighting_slots,
        },
        "principal_directions_std": [round(float(s), 4) for s in drawer.std],
        "identity": _identity_record(describe, identity, recipe, distances, replaced, rejected),
        "photos": entries,
    }
    write_bytes_atomic(out_dir / ALBUM_FILE, (json.dumps(record, indent=2) + "\n").encode())
    result = AlbumResult(out_dir, photos, held_out, record, time.perf_counter() - start)
    say(result.summary())
    return result


def _identity_record(describe, identity, recipe: AlbumRecipe, distances, replaced: int, rejected: list) -> dict:
    if describe is None:
        return {"check": None}
    values = np.array([d for d in distances if d is not None], dtype=np.float64)
    stats = (
        {"min": values.min(), "median": float(np.median(values)), "mean": values.mean(), "max": values.max()}
        if values.size
        else {"min": math.nan, "median": math.nan, "mean": math.nan, "max": math.nan}
    )
    return {
        "check": "dlib" if identity == "dlib" else getattr(identity, "__name__", "custom"),
        "threshold": recipe.identity_threshold,
        "duplicate_threshold": recipe.duplicate_threshold,
        "distances": {k: round(float(v), 4) for k, v in stats.items()},
        "replaced": replaced,
        "rejected_draws": rejected,
    }


def load_album_record(out_dir: str | Path) -> dict:
    """Read ``album.json`` of a synthesised album."""
    path = Path(out_dir) / ALBUM_FILE
    record = json.loads(path.read_text())
    if record.get("format") != ALBUM_FORMAT:
        raise ValueError(f"{path} is not a demo album description (format {record.get('format')!r})")
    return record
