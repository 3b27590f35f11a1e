"""Configuration through :mod:`dask.config`, in the manner of dask-jobqueue.

All defaults live in the packaged, commented ``catbuilder.yaml`` under the
top-level key ``catbuilder``. Values are looked up, from lowest to highest
precedence, in:

1. the packaged defaults;
2. YAML files that dask reads by itself (``~/.config/dask/*.yaml``,
   ``DASK_CONFIG``) and ``DASK_CATBUILDER__...`` environment variables;
3. a user file given to :func:`load` (or ``catbuilder --config FILE``);
4. ``CATBUILDER_<SECTION>__<KEY>`` environment variables, e.g.
   ``CATBUILDER_CUTOUTS__SIZE=96``;
5. :func:`set` / :func:`dask.config.set` blocks;
6. keyword arguments of the API function being called (see :func:`resolve`).

Keys are checked: an unknown key is a :class:`ConfigKeyError` that names it and
suggests the nearest known key, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.config
import yaml

__all__ = [
    "ConfigKeyError",
    "defaults",
    "get",
    "load",
    "plugin_sections",
    "resolve",
    "set",
    "validate",
    "yaml_error",
]

PREFIX = "catbuilder"
ENV_PREFIX = "CATBUILDER_"
_DEFAULTS_FILE = Path(__file__).with_name("catbuilder.yaml")
_no_default = object()


class ConfigKeyError(KeyError, ValueError):
    """An unknown configuration key (a typo, or a key from another version)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def _normalise(key: str) -> str:
    return key.replace("_", "-").lower()


def _load_defaults() -> dict[str, Any]:
    with open(_DEFAULTS_FILE) as f:
        data = yaml.safe_load(f)
    return data


def _merge_new(base: dict[str, Any], extra: Mapping[str, Any], where: str) -> None:
    """Add ``extra``'s keys to ``base``; a plugin may not redefine a core key."""
    for key, value in extra.items():
        if key not in base:
            base[key] = value
        elif isinstance(base[key], dict) and isinstance(value, Mapping):
            _merge_new(base[key], value, f"{where}.{key}")
        else:
            raise ConfigKeyError(f"a plugin's defaults redefine '{where}.{key}'")


def _plugin_defaults(defaults: dict[str, Any]) -> None:
    """Merge the packaged YAML of every plugin (entry-point group ``catbuilder.config``:
    a path to a YAML file with a ``catbuilder`` section) into ``defaults``.

    This is how a backend brings its own settings (as dask-jobqueue's
    ``jobqueue.yaml`` does for dask): they are validated, documented and
    overridden exactly like catbuilder's own.
    """
    import warnings
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="catbuilder.config"), key=lambda e: e.name):
        try:
            path = ep.load()
            with open(path) as f:
                data = yaml.safe_load(f) or {}
            _merge_new(defaults, {PREFIX: data.get(PREFIX, {})}, "")
        except Exception as err:  # a broken plugin must not break catbuilder
            warnings.warn(
                f"configuration of plugin package {ep.name!r} ({ep.value}) not loaded: "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=2,
            )


_DEFAULTS: dict[str, Any] = _load_defaults()
_CORE_SECTIONS = frozenset(_DEFAULTS[PREFIX])
_plugin_defaults(_DEFAULTS)


def plugin_sections() -> list[str]:
    """Sections that plugin packages added to the defaults (e.g. ``keras``)."""
    return sorted(k for k in _DEFAULTS[PREFIX] if k not in _CORE_SECTIONS)


def defaults() -> dict[str, Any]:
    """Return a copy of the packaged defaults (the ``catbuilder`` section)."""
    import copy

    return copy.deepcopy(_DEFAULTS[PREFIX])


def _is_free_form(node: Any) -> bool:
    # An empty mapping in the defaults is a pass-through section (for example
    # extra keyword arguments for a dask-jobqueue class): any key is allowed.
    return isinstance(node, Mapping) and len(node) == 0


def validate(mapping: Mapping[str, Any], where: str = PREFIX) -> None:
    """Check that every key of ``mapping`` exists in the packaged defaults.

    Parameters
    ----------
    mapping
        Nested configuration, relative to ``where`` (for ``where="catbuilder"``
        the keys are sections such as ``cutouts``).
    where
        Dotted path of ``mapping`` inside the configuration tree.

    Raises
    ------
    ConfigKeyError
        Naming the first unknown key and the closest known ones.
    """
    node: Any = {PREFIX: _DEFAULTS[PREFIX]}
    for part in where.split("."):
        node = {_normalise(k): v for k, v in node.items()}[_normalise(part)]
    _validate(mapping, node, where)


def _validate(mapping: Mapping[str, Any], schema: Any, where: str) -> None:
    if _is_free_form(schema) or schema is None:
        return
    if not isinstance(schema, Mapping):
        return
    known = {_normalise(k): v for k, v in schema.items()}
    for key, value in mapping.items():
        nkey = _normalise(str(key))
        if nkey not in known:
            close = difflib.get_close_matches(nkey, list(known), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigKeyError(
                f"unknown configuration key '{where}.{key}'.{hint} "
                f"Known keys under '{where}': {', '.join(sorted(known))}."
            )
        if isinstance(value, Mapping) and isinstance(known[nkey], Mapping):
            _validate(value, known[nkey], f"{where}.{nkey}")


def _known_key(path: str) -> bool:
    node: Any = _DEFAULTS[PREFIX]
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return False
        known = {_normalise(k): v for k, v in node.items()}
        if _normalise(part) not in known:
            return _is_free_form(node)
        node = known[_normalise(part)]
    return True


def _env_config(environ: Mapping[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in environ.items():
        # every key lives in a section, so a setting always has a "__"; other
        # CATBUILDER_* variables (CATBUILDER_CONFIG, tools' own flags) are not settings,
        # unless they are a setting spelled with one underscore: that is a typo
        if name.startswith(ENV_PREFIX) and "__" not in name:
            tail = name[len(ENV_PREFIX) :]
            rest = tail.lower()
            for i, ch in enumerate(rest):
                if ch == "_" and _known_key(f"{rest[:i]}.{rest[i + 1 :]}"):
                    fixed = f"{ENV_PREFIX}{tail[:i]}__{tail[i + 1 :]}"
                    raise ConfigKeyError(
                        f"environment variable {name} is not a setting: a section and its "
                        f"key are separated by two underscores; did you mean {fixed}?"
                    )
        if name.startswith(ENV_PREFIX) and "__" in name:
            path = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            flat[path] = dask.config.interpret_value(value)
    nested: dict[str, Any] = {}
    dask.config.set(flat, config=nested)
    return nested


def _apply_env(environ: Mapping[str, str] | None = None) -> None:
    environ = os.environ if environ is None else environ
    env = _env_config(environ)
    if env:
        try:
            validate(env, PREFIX)
        except ConfigKeyError as err:  # say which variable: the key is its spelling
            names = sorted(n for n in environ if n.startswith(ENV_PREFIX) and "__" in n)
            raise ConfigKeyError(f"{err} (from the environment: {', '.join(names)})") from None
        dask.config.update(dask.config.config, {PREFIX: env}, priority="new")


def yaml_error(path: str | os.PathLike[str], err: Exception) -> str:
    """One line for a YAML syntax error: the file, line, column and the problem."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{path}: not valid YAML{where}: {what}"


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a user YAML file into the active configuration.

    The file may hold the ``catbuilder`` section itself or a mapping with a
    top-level ``catbuilder`` key (as in ``~/.config/dask/catbuilder.yaml``).
    Environment variables keep precedence over the file.

    Parameters
    ----------
    path
        A YAML file.

    Returns
    -------
    dict
        The ``catbuilder`` section that was read.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigKeyError
        If the file holds a key that catbuilder does not know.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"configuration file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ValueError(yaml_error(path, err)) from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    section = data.get(PREFIX, data)
    try:
        validate(section, PREFIX)
    except ConfigKeyError as err:
        raise ConfigKeyError(f"{path}: {err}") from None
    dask.config.update(dask.config.config, {PREFIX: section}, priority="new")
    _apply_env()
    return dict(section)


def get(key: str, default: Any = _no_default) -> Any:
    """Return ``catbuilder.<key>`` from the active configuration.

    Parameters
    ----------
    key
        Dotted key below ``catbuilder``, e.g. ``"cutouts.size"``.
    default
        Returned when the key is absent; without it an absent key raises.
    """
    if default is _no_default:
        return dask.config.get(f"{PREFIX}.{key}")
    return dask.config.get(f"{PREFIX}.{key}", default=default)


def resolve(key: str, value: Any = None) -> Any:
    """Return ``value`` unless it is None, else the configured ``key``.

    This is how every keyword argument that defaults to ``None`` falls back to
    the configuration, as in dask-jobqueue.
    """
    return get(key) if value is None else value


def _default_node(key: str) -> Any:
    node: Any = _DEFAULTS[PREFIX]
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return None
        node = {_normalise(k): v for k, v in node.items()}.get(_normalise(part))
    return node


def _flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys down to the packaged defaults' leaves and free-form sections."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = _default_node(key)
        if isinstance(value, Mapping) and isinstance(node, Mapping) and node:
            out.update(_flatten({f"{key}.{k}": v for k, v in value.items()}))
        else:
            out[key] = value
    return out


@contextmanager
def set(values: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[None]:
    """Temporarily set configuration values (keys relative to ``catbuilder``).

    A mapping given for a section sets the keys it holds and leaves the
    section's others alone (``{"cluster": {"workers": 2}}`` is
    ``{"cluster.workers": 2}``); a free-form section (``cluster.jobqueue``)
    is set as a whole.

    Examples
    --------
    >>> import catbuilder.config as cfg
    >>> with cfg.set({"cutouts.size": 96}):
    ...     cfg.get("cutouts.size")
    96
    """
    given = dict(values or {})
    given.update({k.replace("__", "."): v for k, v in kwargs.items()})
    flat = _flatten(given)
    nested: dict[str, Any] = {}
    dask.config.set(flat, config=nested)
    validate(nested, PREFIX)
    with dask.config.set({f"{PREFIX}.{k}": v for k, v in flat.items()}):
        yield


dask.config.update_defaults({PREFIX: _DEFAULTS[PREFIX]})
_apply_env()
if os.environ.get("CATBUILDER_CONFIG"):
    load(os.environ["CATBUILDER_CONFIG"])
