"""Shared fixtures: tiny seeded generators and the location of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from mystyle_pl.generators import StyleGAN2Generator

from .helpers import make_tiny_stylegan2, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared test data not found: set MYSTYLE_SHARED_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def fetch_asset():
    """``fetch_asset(name)`` -> the converted asset's path, or skip when no source can provide it."""
    from mystyle_pl import assets

    def fetch(name: str) -> Path:
        try:
            return assets.fetch(name, progress=False)
        except assets.AssetError as e:
            pytest.skip(f"asset {name!r} unavailable here: {str(e).splitlines()[0]}")

    return fetch


@pytest.fixture
def tiny_generator() -> StyleGAN2Generator:
    return make_tiny_stylegan2()
