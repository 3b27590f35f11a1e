"""What every product records about how it was made: versions, times, digests.

Stacks, predictions, saved models and pipeline manifests all carry
provenance; they take it from here so that each says it the same way.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

__all__ = ["distribution_of", "fingerprint", "now", "package_version", "versions"]

#: the packages a run's results depend on (those installed are recorded)
RUN_PACKAGES = (
    "catbuilder",
    "numpy",
    "pandas",
    "dask",
    "distributed",
    "dask-jobqueue",
    "xarray",
    "zarr",
    "astropy",
    "scikit-learn",
    "tensorflow",
    "tf-keras",
    "horovod",
    "faiss-cpu",
    "galsim",
)


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, None when absent."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(packages: tuple[str, ...] = RUN_PACKAGES, *, plugins: bool = False) -> dict[str, str]:
    """Python's version and those of the installed ``packages``.

    With ``plugins``, also the distributions that provide model plugins.
    """
    out = {"python": platform.python_version(), "platform": sys.platform}
    for name in packages:
        v = package_version(name)
        if v is not None:
            out[name] = v
    if plugins:
        for ep in metadata.entry_points(group="catbuilder.models"):
            dist = getattr(ep, "dist", None)
            if dist is not None:
                out.setdefault(dist.name, dist.version)
    return out


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides ``module``, if known."""
    names = metadata.packages_distributions().get(module.split(".")[0]) or []
    return names[0] if names else None


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def fingerprint(value: Any) -> str:
    """A short, stable digest of JSON-able ``value``."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
