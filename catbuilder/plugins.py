"""Classifier and embedder backends as entry-point plugins.

Modelled on xarray's backend entry points. A plugin is a small class with
class-level metadata, registered by a package in the one entry-point group
``catbuilder.models``::

    [project.entry-points."catbuilder.models"]
    "keras.xception" = "catbuilder_keras.plugin:XceptionPlugin"

What a plugin can do is metadata (``capabilities``: ``classify``, ``embed``,
``distributed``), not a second group. Loading a plugin class must import no
deep-learning framework: the framework is imported when a model is made or
loaded (``ModelPlugin.estimator`` names the class as ``"module:Class"``).
Discovery is cached (:func:`list_plugins`) and refreshable
(:func:`refresh_plugins`). Wherever a plugin name is used, a plugin that
failed to import is reported with the last line of its error, two installed
distributions that provide one name are an error naming both (a saved model
records its distribution and loads with that one), and an unknown name is a
ValueError listing what is installed. A plugin class can be passed wherever a
name is accepted, as xarray accepts a backend class for ``engine``.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar

from catbuilder import config
from catbuilder.importing import import_object

__all__ = [
    "CAPABILITIES",
    "GROUP",
    "ModelPlugin",
    "describe",
    "get_plugin",
    "list_plugins",
    "make_model",
    "plugin_of",
    "refresh_plugins",
    "registered",
]

GROUP = "catbuilder.models"
CAPABILITIES = ("classify", "embed", "distributed")
_KINDS = {"classifier": "classify", "embedder": "embed"}
_INSTALL_HINT = (
    "Install more with `pip install -e plugins/catbuilder-keras` (Xception, ResNet50, "
    "InceptionV3, VGG16/19, a small CNN) or `pip install -e plugins/catbuilder-morphology` "
    "(statmorph + scikit-learn), or any package that registers the 'catbuilder.models' "
    "entry point; see docs/plugins.md."
)


class ModelPlugin:
    """Contract for a model plugin: metadata, and where its estimator lives.

    Subclass it and set the class attributes; they describe the model without
    importing it. The default :meth:`create` and :meth:`load` import the
    class named by ``estimator`` (a :class:`catbuilder.models.estimator.ImageEstimator`)
    only when a model is made or loaded.

    Attributes
    ----------
    estimator
        ``"module:Class"`` of the estimator.
    description
        One line shown by ``catbuilder plugins``.
    url
        Where to read more.
    bands
        Bands the model expects, in the order it maps them to channels.
    input_size
        Side in pixels it is built for (None: any).
    capabilities
        What it can do: ``"classify"`` (``predict_proba``), ``"embed"``
        (``transform``), ``"distributed"`` (Horovod ranks on Dask workers).
    framework
        What it runs on, e.g. ``"tensorflow"`` or ``"scikit-learn"``.
    default_params
        Keyword arguments merged under the user's.
    fixed_params
        Parameters this plugin always sets, which tell its models apart from
        other plugins' models of the same class (``{"architecture":
        "xception"}``); a saved model finds its plugin by class and these.
    fork_unsafe_modules
        Modules that start native thread pools when imported: once one is
        loaded, catbuilder's process pools spawn workers instead of forking.
    name, distribution, registered
        Set by the registry: the entry-point name, the installed distribution
        that provides it, and that it was found by entry point (a saved
        model then names it; a class given directly is recorded by class).
    """

    estimator: ClassVar[str] = ""
    description: ClassVar[str] = ""
    url: ClassVar[str] = ""
    bands: ClassVar[tuple[str, ...]] = ("g", "r", "i")
    input_size: ClassVar[int | None] = None
    capabilities: ClassVar[frozenset[str]] = frozenset({"classify"})
    framework: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}
    fixed_params: ClassVar[dict[str, Any]] = {}
    fork_unsafe_modules: ClassVar[tuple[str, ...]] = ()
    name: str = ""
    distribution: str | None = None
    registered: bool = False

    @property
    def can_embed(self) -> bool:
        return "embed" in self.capabilities

    def estimator_class(self) -> type:
        """The estimator class (imports its module, and so the framework)."""
        if not self.estimator:
            raise NotImplementedError(
                f"{type(self).__name__} names no estimator ('module:Class') and overrides "
                "neither create nor load"
            )
        return import_object(self.estimator)

    def create(self, **params: Any) -> Any:
        """Return a new, unfitted estimator (imports the framework)."""
        for key, value in self.fixed_params.items():
            if key in params and params[key] != value:
                raise ValueError(
                    f"plugin {self.name or type(self).__name__!r} sets {key}={value!r}; "
                    f"for {key}={params[key]!r} choose the plugin that makes it"
                )
        return self.estimator_class()(**{**params, **self.fixed_params})

    def load(self, path: str) -> Any:
        """Rebuild the estimator saved at ``path`` (its own state; no manifest)."""
        return self.estimator_class().load_state(Path(path))

    def owns(self, est: Any) -> bool:
        """Whether ``est`` is a model this plugin makes.

        By default: its class is the one ``estimator`` names and its
        parameters agree with ``fixed_params``.
        """
        cls = type(est)
        if not self.estimator or self.estimator != f"{cls.__module__}:{cls.__qualname__}":
            return False
        params = est.get_params() if hasattr(est, "get_params") else {}
        return all(params.get(k) == v for k, v in self.fixed_params.items())

    def add_weights(self, file: str) -> str:
        """Register a pretrained weights file for this plugin's models (checked);
        return where it is kept. Plugins without pretrained weights refuse."""
        raise ValueError(f"plugin {self.name or type(self).__name__!r} has no pretrained weights")

    def fetch_weights(self) -> str:
        """Download this plugin's pretrained weights (checked); return where they are."""
        raise ValueError(f"plugin {self.name or type(self).__name__!r} has no pretrained weights")

    def worker_env(self, threads: int) -> dict[str, str]:
        """Environment variables for Dask worker processes that run this model
        with ``threads`` threads each (e.g. a framework's thread pools)."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.description}>"


@dataclass
class _Entry:
    name: str
    value: str
    distribution: str | None
    plugin: ModelPlugin | None = None
    error: str | None = None

    @property
    def origin(self) -> str:
        return f"{self.value} from {self.distribution or 'an unnamed distribution'}"


def _entry_points(group: str) -> list[EntryPoint]:
    return list(entry_points(group=group))


@contextmanager
def registered(entries: list[EntryPoint], keep_installed: bool = False) -> Iterator[None]:
    """Use ``entries`` as the ``catbuilder.models`` entry points inside a block.

    What :func:`catbuilder.testing.installed_plugins` registers plugins
    through, without installing a distribution; ``keep_installed`` keeps the
    installed ones beside them. Discovery is refreshed on entry and exit.
    """
    global _entry_points
    original = _entry_points

    def override(group: str) -> list[EntryPoint]:
        base = original(group) if keep_installed else []
        return base + (list(entries) if group == GROUP else [])

    _entry_points = override
    refresh_plugins()
    try:
        yield
    finally:
        _entry_points = original
        refresh_plugins()


def _last_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[-1] if text else type(err).__name__


@cache
def _discover() -> dict[str, list[_Entry]]:
    """Every entry point of the group, by name, loaded or with its error."""
    disabled = set(config.get("plugins.disabled", []) or [])
    found: dict[str, list[_Entry]] = {}
    seen: set[tuple[str, str, str | None]] = set()
    for ep in sorted(_entry_points(GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else None
        if ep.name in disabled or (ep.name, ep.value, dist) in seen:
            continue
        seen.add((ep.name, ep.value, dist))
        entry = _Entry(ep.name, ep.value, dist)
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
            if not isinstance(plugin, ModelPlugin):
                raise TypeError(f"{ep.value} is not a catbuilder.plugins.ModelPlugin")
            plugin.name, plugin.distribution = ep.name, dist
            plugin.registered = True
            entry.plugin = plugin
        except Exception as err:  # a broken third-party plugin must not break catbuilder
            entry.error = _last_line(err)
        found.setdefault(ep.name, []).append(entry)
    return found


def _problems() -> list[str]:
    out = []
    for name, entries in _discover().items():
        for e in entries:
            if e.error:
                out.append(f"plugin {name!r} ({e.origin}) failed to load: {e.error}")
        if len(entries) > 1:
            out.append(_duplicate_message(name, entries))
    return out


def _duplicate_message(name: str, entries: list[_Entry]) -> str:
    return (
        f"plugin name {name!r} is provided by {len(entries)} installed distributions: "
        + " and ".join(e.origin for e in entries)
        + "; uninstall one of them"
    )


def list_plugins(kind: str | None = None) -> dict[str, ModelPlugin]:
    """Working plugins by name, all or those of one kind (``"classifier"``, ``"embedder"``).

    Plugins that failed to load and names provided twice are left out, with a
    warning; :func:`get_plugin` says why when such a name is used. The
    result is cached; :func:`refresh_plugins` clears it.

    Parameters
    ----------
    kind
        ``"classifier"`` or ``"embedder"``: only plugins that can do it.

    Returns
    -------
    dict of str to ModelPlugin
        The working plugins by entry-point name.

    Examples
    --------
    >>> from catbuilder import list_plugins
    >>> "keras.small-cnn" in list_plugins("classifier")
    True
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    for msg in _problems():
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    out = {}
    for name, entries in _discover().items():
        if len(entries) == 1 and entries[0].plugin is not None:
            plugin = entries[0].plugin
            if kind is None or _KINDS[kind] in plugin.capabilities:
                out[name] = plugin
    return out


def refresh_plugins() -> None:
    """Forget discovered plugins, so newly installed ones are found."""
    _discover.cache_clear()


def get_plugin(
    name: str | type[ModelPlugin] | ModelPlugin,
    kind: str | None = None,
    *,
    distribution: str | None = None,
) -> ModelPlugin:
    """The plugin registered as ``name`` (or the plugin class or instance given).

    Parameters
    ----------
    name
        An entry-point name, or a :class:`ModelPlugin` subclass or instance.
    kind
        ``"classifier"`` or ``"embedder"``: require that capability.
    distribution
        Choose among installed distributions that provide ``name`` (what a
        saved model's manifest records).

    Returns
    -------
    ModelPlugin
        The plugin: its metadata, and :meth:`ModelPlugin.create` to make a model.

    Raises
    ------
    ValueError
        For an unknown name (listing the installed ones and how to get more),
        a plugin that failed to load (with its error), a name provided by two
        distributions, or a plugin without the capability ``kind`` needs.

    Examples
    --------
    >>> from catbuilder import get_plugin
    >>> get_plugin("keras.xception").input_size
    299
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    if isinstance(name, type) and issubclass(name, ModelPlugin):
        plugin = name()
        plugin.name = plugin.name or name.__name__
    elif isinstance(name, ModelPlugin):
        plugin = name
    else:
        entries = _discover().get(str(name), [])
        if distribution is not None and len(entries) > 1:
            entries = [e for e in entries if e.distribution == distribution] or entries
        if not entries:
            names = sorted(list_plugins(kind))
            have = ", ".join(names) or "none"
            what = f"{kind} plugin" if kind else "plugin"
            near = difflib.get_close_matches(str(name), names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown {what} {name!r}{hint} Installed: {have}. {_INSTALL_HINT}")
        if len(entries) > 1:
            raise ValueError(_duplicate_message(str(name), entries))
        entry = entries[0]
        if entry.plugin is None:
            raise ValueError(
                f"plugin {name!r} ({entry.origin}) failed to load: {entry.error}; fix or "
                "reinstall that package"
            )
        plugin = entry.plugin
    if kind is not None and _KINDS[kind] not in plugin.capabilities:
        raise ValueError(
            f"plugin {plugin.name!r} cannot {_KINDS[kind]} (its capabilities: "
            f"{', '.join(sorted(plugin.capabilities))})"
        )
    return plugin


def make_model(
    name: str | type[ModelPlugin] | ModelPlugin, kind: str | None = None, **params: Any
) -> Any:
    """Create an unfitted estimator from a plugin.

    Parameters
    ----------
    name
        A registered plugin name (``"keras.small-cnn"``), a plugin class or
        an instance of one.
    kind
        ``"classifier"`` or ``"embedder"``: refuse a plugin that cannot do it.
    **params
        The estimator's parameters, merged over the plugin's
        ``default_params``.

    Returns
    -------
    estimator
        A new scikit-learn-style estimator. Nothing is attached to it: a saved
        model finds its plugin again through :meth:`ModelPlugin.owns`, so a
        ``sklearn.base.clone`` of it saves the same way.

    Examples
    --------
    >>> from catbuilder import make_model
    >>> make_model("morphology.random-forest").get_params()["model"]
    'random-forest'
    """
    plugin = get_plugin(name, kind)
    return plugin.create(**{**plugin.default_params, **params})


def plugin_of(est: Any) -> ModelPlugin | None:
    """The registered plugin that makes estimators like ``est``, if one does.

    Parameters
    ----------
    est
        An estimator.

    Returns
    -------
    ModelPlugin or None
        The one registered plugin whose :meth:`ModelPlugin.owns` accepts
        ``est``; None when none does (the model is then saved by class).

    Raises
    ------
    ValueError
        When several plugins claim it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are reported where they are used
        owners = [p for p in list_plugins().values() if p.owns(est)]
    if len(owners) > 1:
        raise ValueError(
            f"plugins {', '.join(sorted(p.name for p in owners))} all claim a "
            f"{type(est).__name__}; save it with save_model(est, path, plugin=NAME)"
        )
    return owners[0] if owners else None


def describe(kind: str | None = None) -> list[dict[str, Any]]:
    """Rows describing every installed plugin (for ``catbuilder plugins``),
    broken and duplicated ones included with their problem."""
    rows = []
    for name, entries in sorted(_discover().items()):
        for e in entries:
            p = e.plugin
            problem = e.error and f"failed to load: {e.error}"
            if len(entries) > 1:
                problem = f"also provided by another distribution ({e.origin})"
            if p is not None and kind is not None and _KINDS[kind] not in p.capabilities:
                continue
            rows.append(
                {
                    "name": name,
                    "description": p.description if p else "",
                    "framework": p.framework if p else "",
                    "input_size": p.input_size if p else None,
                    "bands": ",".join(p.bands) if p else "",
                    "capabilities": sorted(p.capabilities) if p else [],
                    "can_embed": bool(p and p.can_embed),
                    "url": p.url if p else "",
                    "distribution": e.distribution,
                    "problem": problem,
                }
            )
    return rows
