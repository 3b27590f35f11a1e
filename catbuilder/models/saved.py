"""Saved models: the plugin's own state wrapped in catbuilder's manifest.

A saved model is a directory. The plugin writes its own files into it
(:meth:`~catbuilder.models.estimator.ImageEstimator.save_state`); catbuilder writes
``catbuilder-model.json`` beside them: which plugin (and which installed
distribution) made it, the estimator class, its parameters and classes, what
it was fitted on (cutout size, bands), its calibration map
(:mod:`catbuilder.models.calibration`), the SHA-256 of every file and of all
of them together (the *weights hash* that predictions record), and the
versions of Python, catbuilder and the plugin's packages. Loading reads the
manifest and hands the directory back to the same plugin; a plugin never
parses the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from catbuilder import outputs
from catbuilder.errors import OutputExistsError
from catbuilder.importing import import_object
from catbuilder.provenance import distribution_of, now, package_version

__all__ = ["MANIFEST", "load_model", "read_manifest", "save_model"]

MANIFEST = "catbuilder-model.json"
FORMAT = "catbuilder-model/1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    return repr(value)


def _embedding_dim(est: Any) -> int | None:
    """The width of ``est``'s embedding (``n_features_out_``), None without one."""
    if not hasattr(est, "transform"):
        return None
    n = getattr(est, "n_features_out_", None)
    return None if n is None else int(n)


def _calibration_of(est: Any) -> dict[str, Any] | None:
    """The estimator's calibration map (``calibration_``) as the manifest stores it."""
    cal = getattr(est, "calibration_", None)
    return None if cal is None else _jsonable(cal.to_dict())


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the model saved at ``path``.

    Raises
    ------
    FileNotFoundError
        When ``path`` holds no saved model.
    ValueError
        When the manifest cannot be read or names no plugin or class.
    """
    path = Path(path)
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except ValueError as err:
            raise ValueError(f"{manifest}: not a readable model manifest ({err})") from None
        return data
    raise FileNotFoundError(f"no saved model at {path} ({MANIFEST} is missing)")


def _replaceable(path: Path) -> list[Path]:
    """The files of a saved model at ``path`` that a new save may replace."""
    if not path.exists():
        return []
    if not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a directory; choose another path")
    entries = sorted(path.iterdir())
    if not entries:
        return []
    if (path / MANIFEST).is_file():
        listed = set(read_manifest(path).get("files", {})) | {MANIFEST}
        root = path.resolve()
        inside = [path / n for n in sorted(listed) if (path / n).resolve().is_relative_to(root)]
        # the listed files and the folders they are in (an ensemble's members)
        mine = set(inside) | {q for p in inside for q in p.parents if q.is_relative_to(path)}
        others = [p for p in path.rglob("*") if p not in mine]
        if others:  # checked before anything is replaced: the saved model stays whole
            names = ", ".join(str(p.relative_to(path)) for p in others[:5])
            raise OutputExistsError(
                f"{path} holds files its manifest does not list ({names}); move them out or "
                "choose another path"
            )
        return [p for p in inside if p.exists() and p.resolve() != root]
    raise OutputExistsError(
        f"{path} exists and is not a model catbuilder saved (it holds "
        f"{', '.join(p.name for p in entries[:5])}); choose another path"
    )


def save_model(est: Any, path: str | os.PathLike[str], plugin: str | None = None) -> Path:
    """Save ``est`` into directory ``path``: its state, then the manifest.

    The model is written beside ``path`` and moved into place when complete;
    an existing ``path`` is replaced only if it is empty or a model catbuilder
    saved (and then only the files its manifest lists).

    Parameters
    ----------
    est
        A fitted estimator with ``save_state``.
    path
        The directory.
    plugin
        The plugin name to record (default: the registered plugin that owns
        the estimator's class and parameters, :func:`catbuilder.plugins.plugin_of`).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> from catbuilder import make_model, save_model
    >>> model = make_model("keras.small-cnn").fit(stack)  # doctest: +SKIP
    >>> save_model(model, "small-cnn.model")  # doctest: +SKIP
    PosixPath('small-cnn.model')
    """
    path = Path(path)
    old = _replaceable(path)
    from catbuilder.plugins import get_plugin, plugin_of

    owner = get_plugin(plugin) if plugin else plugin_of(est)
    cls = type(est)
    tmp = outputs.temporary_sibling(path, "model-")
    try:
        tmp.mkdir(parents=True)
        est.save_state(tmp)
        files = {
            str(p.relative_to(tmp)): outputs.file_sha256(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        combined = hashlib.sha256(
            "".join(f"{name}\0{digest}\n" for name, digest in files.items()).encode()
        ).hexdigest()
        dist = (owner.distribution if owner else None) or distribution_of(cls.__module__)
        get_params = getattr(est, "get_params", None)
        manifest = {
            "format": FORMAT,
            "plugin": owner.name if owner is not None and owner.registered else None,
            "distribution": {"name": dist, "version": package_version(dist) if dist else None},
            "estimator": f"{cls.__module__}:{cls.__qualname__}",
            "params": _jsonable(get_params() if get_params else {}),
            "classes": [str(c) for c in getattr(est, "classes_", [])],
            "embedding_dim": _embedding_dim(est),
            "fit_input": _jsonable(getattr(est, "fit_input_", None)),
            "calibration": _calibration_of(est),
            "ensemble_size": len(est.members_) if hasattr(est, "members_") else None,
            "files": files,
            "weights_sha256": combined,
            "versions": {
                "python": platform.python_version(),
                "catbuilder": package_version("catbuilder"),
                **({dist: package_version(dist)} if dist else {}),
                **{k: package_version(k) for k in getattr(est, "framework_packages", ())},
            },
            "saved": now(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for p in old:
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
        if path.exists():  # only the listed files' folders are left (_replaceable)
            for d in sorted(path.rglob("*"), key=lambda q: -len(q.parts)):
                d.rmdir()
            path.rmdir()
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            outputs.remove_temporary(tmp)
    return path


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model saved with :func:`save_model` (or an estimator's ``save``).

    The manifest names the plugin and the distribution that provides it;
    that plugin loads the state. A model whose plugin is not registered
    (an estimator made without the registry) is loaded by its class.

    Parameters
    ----------
    path
        The saved model's directory.

    Returns
    -------
    estimator
        The fitted estimator, made by the plugin the manifest names.

    Raises
    ------
    FileNotFoundError
        When ``path`` holds no saved model.
    ValueError
        When the plugin that saved it is not installed, or is broken.

    Examples
    --------
    >>> from catbuilder import load_model
    >>> model = load_model("small-cnn.model")  # doctest: +SKIP
    >>> model.predict_proba(stack)  # doctest: +SKIP
    """
    from catbuilder.plugins import get_plugin

    path = Path(path)
    m = read_manifest(path)
    name = m.get("plugin")
    dist = (m.get("distribution") or {}).get("name") if m.get("plugin") else None
    if name:
        est = get_plugin(name, distribution=dist).load(str(path))
    elif m.get("estimator"):
        try:
            cls = import_object(m["estimator"])
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"the model at {path} was saved by {m['estimator']}, which cannot be "
                f"imported here ({type(err).__name__}: {err}); install the package that "
                "provides it"
            ) from None
        est = cls.load_state(path)
    else:
        raise ValueError(f"{path / MANIFEST} names neither a plugin nor an estimator class")
    if m.get("fit_input") and not getattr(est, "fit_input_", None):
        est.fit_input_ = m["fit_input"]
    if m.get("calibration"):
        from catbuilder.models.calibration import Calibration

        est.calibration_ = Calibration.from_dict(m["calibration"])
    return est
