"""Shared fixtures: small mock surveys made once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mock_survey(tmp_path_factory):
    """Both presets, 120 objects, rendered on Dask's process scheduler."""
    from catbuilder.synth import make_survey

    root = tmp_path_factory.mktemp("mock")
    return make_survey(root, n_objects=120, seed=7, progress=False)


@pytest.fixture(scope="session")
def des_stack(mock_survey, tmp_path_factory):
    """The des-like survey of ``mock_survey`` cut into a 32 px stack, 16 objects a chunk."""
    from catbuilder.stack import build_stack

    out = tmp_path_factory.mktemp("stack") / "des.zarr"
    files = mock_survey["des-like"]
    return build_stack(
        files.sources, files.directory / "tiles", out, size=32, chunk_objects=16, progress=False
    )


@pytest.fixture
def tile_copy(mock_survey, tmp_path):
    """A writable copy of the des-like tiles and sources."""
    import shutil

    files = mock_survey["des-like"]
    dst = tmp_path / "tiles"
    shutil.copytree(files.directory / "tiles", dst)
    return dst, files.read_sources()
