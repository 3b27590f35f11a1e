"""catbuilder: galaxy morphology catalogs from survey images at scale.

The top-level namespace is lazy: ``import catbuilder`` imports no deep-learning
framework and no Dask; each attribute imports its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from catbuilder._version import __version__ as __version__

# public name -> "module:attribute" (attribute None: the module itself)
_LAZY: dict[str, str] = {
    "config": "catbuilder.config",
    "synth": "catbuilder.synth",
    "make_survey": "catbuilder.synth:make_survey",
    "build_stack": "catbuilder.stack:build_stack",
    "open_stack": "catbuilder.stack:open_stack",
    "predict": "catbuilder.infer:predict",
    "open_predictions": "catbuilder.infer:open_predictions",
    "build_catalog": "catbuilder.catalog:build_catalog",
    "write_catalog": "catbuilder.catalog:write_catalog",
    "read_catalog": "catbuilder.catalog:read_catalog",
    "demo": "catbuilder.pipeline:demo",
    "Pipeline": "catbuilder.pipeline:Pipeline",
    "similar": "catbuilder.embeddings:similar",
    "self_train": "catbuilder.selftrain:self_train",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    try:
        target = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'catbuilder' has no attribute {name!r}") from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from catbuilder import config, synth  # noqa: F401
