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
