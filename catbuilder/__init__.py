"""catbuilder: galaxy morphology catalogs from survey images at scale.

The top-level namespace is lazy: ``import catbuilder`` imports no deep-learning
framework and no Dask; each attribute imports its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catbuilder._version import __version__ as __version__
from catbuilder.importing import import_object

# public name -> "module:attribute" (a plain "module" is the module itself)
_LAZY: dict[str, str] = {
    # the sky: tiles, source tables, labels
    "TileIndex": "catbuilder.sky.tiles:TileIndex",
    "crossmatch": "catbuilder.sky.crossmatch:crossmatch",
    "select_galaxy_zoo": "catbuilder.sky.selection:select_galaxy_zoo",
    "label_sources": "catbuilder.sky.selection:label_sources",
    # image stacks
    "build_stack": "catbuilder.stack.build:build_stack",
    "open_stack": "catbuilder.stack.store:open_stack",
    # models
    "list_plugins": "catbuilder.plugins:list_plugins",
    "get_plugin": "catbuilder.plugins:get_plugin",
    "make_model": "catbuilder.plugins:make_model",
    "save_model": "catbuilder.models.saved:save_model",
    "load_model": "catbuilder.models.saved:load_model",
    "train": "catbuilder.training.api:train",
    "predict": "catbuilder.infer:predict",
    "open_predictions": "catbuilder.predictions:open_predictions",
    # products
    "build_catalog": "catbuilder.catalog.build:build_catalog",
    "write_catalog": "catbuilder.catalog.formats:write_catalog",
    "read_catalog": "catbuilder.catalog.formats:read_catalog",
    "evaluate": "catbuilder.evaluation.metrics:evaluate",
    "similar": "catbuilder.embeddings.similarity:similar",
    "self_train": "catbuilder.selftrain.loop:self_train",
    # where work runs, whole runs, mock data
    "make_cluster": "catbuilder.runtime.clusters:make_cluster",
    "run_survey": "catbuilder.survey.run:run_survey",
    "Pipeline": "catbuilder.pipeline.run:Pipeline",
    "demo": "catbuilder.pipeline.demo:demo",
    "make_survey": "catbuilder.synth.survey:make_survey",
    # configuration (a module: catbuilder.config.set, .get, .load)
    "config": "catbuilder.config",
}

#: the public API: what ``import catbuilder`` offers (docs/api.md is generated
#: from it, and numpydoc validates every entry's docstring)
API = tuple(name for name in _LAZY if name != "config")


__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    try:
        target = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'catbuilder' has no attribute {name!r}") from None
    value = import_object(target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from catbuilder import config  # noqa: F401
