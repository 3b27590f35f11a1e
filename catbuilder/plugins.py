"""Classifier and embedder backends as entry-point plugins.

Modelled on xarray's backend entry points. A plugin is a small class with
class-level metadata and one factory method; it is registered by a package in
the ``catbuilder.classifiers`` and/or ``catbuilder.embedders`` entry-point
group::

    [project.entry-points."catbuilder.classifiers"]
    "keras.xception" = "catbuilder_keras.plugin:XceptionPlugin"

Loading a plugin class must import no deep-learning framework: the
framework is imported by :meth:`ModelPlugin.create`, when a model is made.
Discovery is cached (:func:`list_plugins`) and refreshable
(:func:`refresh_plugins`); a plugin that fails to load is a warning naming
it; two plugins with one name warn; an unknown name is a ValueError listing
what is installed and how to install more.
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

from catbuilder import config

__all__ = [
    "GROUPS",
    "ModelPlugin",
    "get_plugin",
    "list_plugins",
    "load_model",
    "make_model",
    "refresh_plugins",
]

GROUPS = {"classifier": "catbuilder.classifiers", "embedder": "catbuilder.embedders"}
_INSTALL_HINT = (
    "Install more with `pip install -e plugins/catbuilder-keras` (Xception, ResNet50, "
    "InceptionV3, VGG16/19, a small CNN) or `pip install -e plugins/catbuilder-morphology` "
    "(statmorph + scikit-learn), or any package that registers the "
    "'catbuilder.classifiers' / 'catbuilder.embedders' entry points; see docs/plugins.md."
)


class ModelPlugin:
    """Contract for a classifier/embedder plugin (subclass it).

    Class attributes describe the model without importing it; :meth:`create`
    returns an estimator that follows scikit-learn conventions (``fit``,
    ``predict``, ``predict_proba``, ``classes_``, ``get_params``/``set_params``,
    ``transform`` for embedders) plus ``save(path)`` and ``load(path)``; see
    :class:`catbuilder.estimator.ImageEstimator`.

    Attributes
    ----------
    description
        One line shown by ``catbuilder plugins``.
    url
        Where to read more.
    bands
        Bands the model expects, in the order it maps them to channels.
    input_size
        Side in pixels it is built for (None: any).
    can_embed
        Whether the estimator has ``transform`` (an embedding).
    framework
        What it runs on, e.g. ``"tensorflow"`` or ``"scikit-learn"``.
    """

    description: ClassVar[str] = ""
    url: ClassVar[str] = ""
    bands: ClassVar[tuple[str, ...]] = ("g", "r", "i")
    input_size: ClassVar[int | None] = None
    can_embed: ClassVar[bool] = False
    framework: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}

    def create(self, **params: Any) -> Any:
        """Return a new, unfitted estimator (imports the framework)."""
        raise NotImplementedError

    def load(self, path: str) -> Any:
        """Load an estimator saved with its ``save`` method."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.description}>"


def _entry_points(group: str) -> list[EntryPoint]:
    return list(entry_points(group=group))


@cache
def _load_group(group: str) -> dict[str, ModelPlugin]:
    disabled = set(config.get("plugins.disabled", []) or [])
    found: dict[str, ModelPlugin] = {}
    for ep in sorted(_entry_points(group), key=lambda e: (e.name, e.value)):
        if ep.name in disabled:
            continue
        if ep.name in found:
            warnings.warn(
                f"two plugins are named {ep.name!r} in {group}; using the first, ignoring "
                f"{ep.value}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        try:
            cls = ep.load()
            plugin = cls() if isinstance(cls, type) else cls
        except Exception as err:  # a broken third-party plugin must not break catbuilder
            warnings.warn(
                f"plugin {ep.name!r} ({ep.value}) in {group} failed to load: "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if not isinstance(plugin, ModelPlugin):
            warnings.warn(
                f"plugin {ep.name!r} ({ep.value}) is not a catbuilder.plugins.ModelPlugin; ignored",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        found[ep.name] = plugin
    return found


def list_plugins(kind: str = "classifier") -> dict[str, ModelPlugin]:
    """Installed plugins of one kind (``"classifier"`` or ``"embedder"``), by name.

    The result is cached; :func:`refresh_plugins` clears it.
    """
    if kind not in GROUPS:
        raise ValueError(f"kind must be one of {', '.join(GROUPS)}, got {kind!r}")
    return dict(_load_group(GROUPS[kind]))


def refresh_plugins() -> None:
    """Forget discovered plugins, so newly installed ones are found."""
    _load_group.cache_clear()


def get_plugin(name: str, kind: str = "classifier") -> ModelPlugin:
    """The plugin registered as ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the installed ones and how to get more.
    """
    plugins = list_plugins(kind)
    try:
        return plugins[name]
    except KeyError:
        have = ", ".join(sorted(plugins)) or "none"
        raise ValueError(
            f"unknown {kind} plugin {name!r}; installed {kind}s: {have}. {_INSTALL_HINT}"
        ) from None


def make_model(name: str, kind: str = "classifier", **params: Any) -> Any:
    """Create an unfitted estimator from the plugin ``name`` with ``params``."""
    plugin = get_plugin(name, kind)
    merged = {**plugin.default_params, **params}
    return plugin.create(**merged)


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model saved by a plugin estimator's ``save(path)``.

    The ``estimator.json`` in ``path`` names the plugin that wrote it; that
    plugin (classifier or embedder) loads it.

    Raises
    ------
    FileNotFoundError
        When ``path`` holds no ``estimator.json``.
    ValueError
        When the plugin that saved it is not installed.
    """
    import json
    from pathlib import Path

    meta_path = Path(path) / "estimator.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no saved model in {path} (no estimator.json)")
    meta = json.loads(meta_path.read_text())
    name = meta.get("plugin")
    if not name:
        raise ValueError(f"{meta_path} does not name the plugin that saved it")
    for kind in GROUPS:
        if name in list_plugins(kind):
            return get_plugin(name, kind).load(str(path))
    return get_plugin(name)  # raises the unknown-plugin error


def describe(kind: str | None = None) -> list[dict[str, Any]]:
    """Rows describing every installed plugin (for ``catbuilder plugins``)."""
    rows = []
    for k in [kind] if kind else list(GROUPS):
        for name, p in sorted(list_plugins(k).items()):
            rows.append(
                {
                    "kind": k,
                    "name": name,
                    "description": p.description,
                    "framework": p.framework,
                    "input_size": p.input_size,
                    "bands": ",".join(p.bands),
                    "can_embed": p.can_embed,
                    "url": p.url,
                }
            )
    return rows
