"""Tools for testing plugins: ``check_plugin``, a synthetic stack, fake entry points.

:func:`check_plugin` runs a plugin through everything catbuilder will ask of
it, as scikit-learn's ``check_estimator`` does for estimators: parameters
round-trip, ``fit`` returns ``self`` and sets ``classes_``, probabilities have
the right shape and sum to one, embeddings keep their width, a saved model
loads (through the manifest and the registry) and predicts the same,
``iter_predictions`` agrees with ``predict_proba`` with and without
test-time augmentation, and importing the plugin class imports no framework.

In a plugin's own tests::

    from catbuilder.testing import check_plugin
    from mylab_catbuilder.plugin import ResNetTinyPlugin

    def test_contract(tmp_path):
        check_plugin(ResNetTinyPlugin, params={"epochs": 1}, workdir=tmp_path)

and, to register plugins for a test without installing them, the
``installed_plugins`` context manager (or the ``catbuilder_plugins`` fixture,
with ``pytest_plugins = ["catbuilder.testing"]`` in ``conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["catbuilder_plugins", "check_plugin", "installed_plugins", "synthetic_stack"]

CLASSES = ("elliptical", "spiral")


def synthetic_stack(
    path: str | os.PathLike[str], n_objects: int = 40, size: int = 32, seed: int = 0
) -> Any:
    """A small labelled stack of two easily told classes, for contract checks.

    Ellipticals are round, red (bright in i) and concentrated; spirals are
    elongated, blue (bright in g) and extended. Objects sit on one FITS tile
    per band (TAN WCS, Gaussian noise); every third one is in the ``test``
    split. Built with :func:`catbuilder.stack.build_stack` (Dask's
    synchronous scheduler), so it is a real Zarr stack on disk.
    """
    import pandas as pd
    from astropy.io import fits
    from astropy.wcs import WCS

    from catbuilder.stack import build_stack

    root = Path(path)
    tiles = root.with_name(root.name + ".tiles")
    tiles.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_objects)))
    spacing = size + 8
    npix = side * spacing + 8
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [npix / 2 + 0.5, npix / 2 + 0.5]
    w.wcs.cdelt = [-0.3 / 3600, 0.3 / 3600]
    k = np.arange(n_objects)
    x = 4 + spacing / 2 + (k % side) * spacing + rng.uniform(-1, 1, n_objects)
    y = 4 + spacing / 2 + (k // side) * spacing + rng.uniform(-1, 1, n_objects)
    label = np.array(CLASSES)[k % 2]
    yy, xx = np.mgrid[:npix, :npix]
    colours = {"elliptical": (0.4, 1.0, 1.6), "spiral": (1.6, 1.0, 0.5)}
    images = [rng.normal(0.0, 1.0, (npix, npix)) for _ in range(3)]
    for xi, yi, lab in zip(x, y, label):
        near = (np.abs(xx - xi) < size) & (np.abs(yy - yi) < size)
        dx, dy = xx[near] - xi, yy[near] - yi
        if lab == "elliptical":
            profile = 60 * np.exp(-np.hypot(dx, dy) / 1.5)
        else:
            theta = rng.uniform(0, np.pi)
            u = dx * np.cos(theta) + dy * np.sin(theta)
            v = -dx * np.sin(theta) + dy * np.cos(theta)
            profile = 25 * np.exp(-np.hypot(u / 5.0, v / 1.8))
        for b in range(3):
            images[b][near] += colours[lab][b] * profile
    header = w.to_header()
    for band, img in zip("gri", images):
        header["BAND"] = band
        header["MAGZERO"] = 30.0
        fits.PrimaryHDU(img.astype(np.float32), header).writeto(
            tiles / f"S1_{band}.fits", overwrite=True
        )
    ra, dec = w.all_pix2world(x, y, 0)
    split = np.where(k % 3 == 2, "test", "train")
    sources = pd.DataFrame({"objid": k + 1, "ra": ra, "dec": dec, "label": label, "split": split})
    return build_stack(
        sources, tiles, root, size=size, chunk_objects=16, cluster="sync", progress=False
    )


def _check(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise AssertionError(f"check_plugin: {name}: {why}")


def _imports_nothing_heavy(plugin: Any) -> None:
    """Importing the plugin's module imports neither its estimator module (when
    separate) nor any of its ``fork_unsafe_modules``."""
    cls = type(plugin)
    module = cls.__module__
    est_module = (plugin.estimator or ":").partition(":")[0]
    heavy = [m for m in plugin.fork_unsafe_modules]
    if est_module and est_module != module:
        heavy.append(est_module)
    if not heavy:
        return
    code = (
        "import importlib, sys\n"
        f"m = importlib.import_module({module!r})\n"
        f"p = getattr(m, {cls.__qualname__!r})()\n"
        "(p.description, p.capabilities, p.bands, p.input_size)\n"
        f"print(' '.join(h for h in {heavy!r} if h in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    _check(res.returncode == 0, "discovery", f"importing {module} failed: {res.stderr[-500:]}")
    loaded = res.stdout.strip()
    _check(not loaded, "discovery", f"importing {module} imported {loaded}")


def check_plugin(
    plugin: Any,
    params: Mapping[str, Any] | None = None,
    *,
    n_objects: int = 40,
    workdir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Check that a plugin keeps catbuilder's contract; raise on the first breach.

    Parameters
    ----------
    plugin
        A :class:`~catbuilder.plugins.ModelPlugin` subclass or instance, or
        an installed plugin's name.
    params
        Estimator parameters for a quick fit (e.g. ``{"epochs": 1}``).
    n_objects
        Objects in the synthetic stack it is fitted on.
    workdir
        Where to put the stack and the saved model (default a temporary
        directory, removed after).

    Returns
    -------
    dict
        The checks that passed, with what was measured.

    Raises
    ------
    AssertionError
        Naming the check that failed and why.
    """
    from sklearn.base import clone

    from catbuilder.models.saved import load_model, read_manifest, save_model
    from catbuilder.plugins import get_plugin, make_model

    plugin = get_plugin(plugin)
    caps = set(plugin.capabilities)
    report: dict[str, str] = {}
    _check(bool(caps), "capabilities", "a plugin must declare what it can do")
    _imports_nothing_heavy(plugin)
    report["discovery"] = "imports no framework"

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        stack = synthetic_stack(tmp / "check.zarr", n_objects=n_objects)
        train, test = stack.select(split="train"), stack.select(split="test")
        merged = dict(params or {})
        est = make_model(plugin, **merged)
        p = est.get_params()
        _check(clone(est).get_params().keys() == p.keys(), "params", "clone changes parameters")
        _check(est.set_params(**p) is est, "params", "set_params must return self")
        report["params"] = f"{len(p)} parameters round-trip"

        fitted = est.fit(train)
        _check(fitted is est, "fit", "fit must return self")
        classes = [str(c) for c in getattr(est, "classes_", [])]
        if "classify" in caps:
            want = sorted(CLASSES)
            _check(classes == want, "classes_", f"expected {want}, got {classes}")
        report["fit"] = f"fitted on {len(train)} objects"

        n = len(test)
        if "classify" in caps:
            P = np.asarray(est.predict_proba(test))
            _check(P.shape == (n, 2), "predict_proba", f"shape {P.shape}, expected {(n, 2)}")
            _check(bool(np.isfinite(P).all()), "predict_proba", "non-finite probabilities")
            _check(
                bool(np.allclose(P.sum(axis=1), 1, atol=1e-4)),
                "predict_proba",
                "rows must sum to 1",
            )
            pred = np.asarray(est.predict(test)).astype(str)
            _check(
                set(pred) <= set(classes), "predict", f"unknown classes {set(pred) - set(classes)}"
            )
            report["predict_proba"] = (
                f"({n}, 2), accuracy {np.mean(pred == test.objects()['label']):.2f}"
            )
        if "embed" in caps:
            _check(hasattr(est, "transform"), "transform", "capability 'embed' needs transform")
            E = np.asarray(est.transform(test))
            E2 = np.asarray(est.transform(train.isel(slice(0, 5))))
            _check(
                E.ndim == 2 and E.shape[0] == n and E.shape[1] > 0, "transform", f"shape {E.shape}"
            )
            _check(E2.shape[1] == E.shape[1], "transform", "embedding width changes with input")
            _check(
                getattr(est, "n_features_out_", None) == E.shape[1],
                "transform",
                f"n_features_out_ must be the embedding's width, {E.shape[1]}",
            )
            report["transform"] = f"({n}, {E.shape[1]})"

        if "classify" in caps:
            out = list(est.iter_predictions(test, batch_size=7, embed="embed" in caps, tta=False))
            P_iter = np.concatenate([o[0] for o in out])
            _check(
                bool(np.allclose(P_iter, P, atol=1e-5)),
                "iter_predictions",
                "batches disagree with predict_proba",
            )
            if "embed" in caps:
                E_iter = np.concatenate([o[1] for o in out])
                _check(bool(np.allclose(E_iter, E, atol=1e-4)), "iter_predictions", "embeddings")
            tta = list(est.iter_predictions(test, batch_size=7, embed=False, tta=True))
            P_tta = np.concatenate([o[0] for o in tta])
            _check(P_tta.shape == P.shape, "iter_predictions", f"with tta, shape {P_tta.shape}")
            _check(
                bool(np.allclose(P_tta.sum(axis=1), 1, atol=1e-4)),
                "iter_predictions",
                "with tta, rows must sum to 1",
            )
            report["iter_predictions"] = "agrees with predict_proba; tta shaped right"

        path = save_model(est, tmp / "model")
        manifest = read_manifest(path)
        # a registered plugin is named; a class given directly is recorded by its
        # class, or by the installed plugin that owns that class
        named = manifest.get("plugin") == plugin.name if plugin.registered else True
        _check(
            named and bool(manifest.get("files")),
            "save",
            f"manifest {manifest.get('plugin')!r} / files {manifest.get('files')}",
        )
        again = load_model(path)
        if "classify" in caps:
            _check(
                bool(np.allclose(np.asarray(again.predict_proba(test)), P, atol=1e-5)),
                "load",
                "a loaded model predicts differently",
            )
        if "embed" in caps:
            _check(
                bool(np.allclose(np.asarray(again.transform(test)), E, atol=1e-4)),
                "load",
                "a loaded model embeds differently",
            )
        report["save/load"] = f"{len(manifest['files'])} file(s), same predictions"

        if "distributed" in caps:
            entry = getattr(est, "distributed_entry", None)
            _check(bool(entry) and ":" in str(entry), "distributed", "no distributed_entry")
            from catbuilder.models.estimator import ImageEstimator

            own = type(est).fitted_from_ranks is not ImageEstimator.fitted_from_ranks
            _check(own, "distributed", "fitted_from_ranks is not implemented")
            report["distributed"] = str(entry)
    return report


@contextmanager
def installed_plugins(
    plugins: Mapping[str, Any], keep_installed: bool = False
) -> Iterator[dict[str, Any]]:
    """Register ``plugins`` (name -> class, or ``"module:attr"``) for a block,
    alone or beside the installed ones, without installing anything."""
    from catbuilder import plugins as registry

    entries = []
    for name, target in plugins.items():
        value = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
        entries.append(EntryPoint(name=name, value=value, group=registry.GROUP))
    with registry.registered(entries, keep_installed=keep_installed):
        yield dict(plugins)


try:  # a pytest fixture, for `pytest_plugins = ["catbuilder.testing"]`
    import pytest

    @pytest.fixture
    def catbuilder_plugins():
        """Register plugins for one test: ``catbuilder_plugins({"name": Cls})``."""
        stack = []

        def register(plugins: Mapping[str, Any], keep_installed: bool = False) -> None:
            cm = installed_plugins(plugins, keep_installed)
            cm.__enter__()
            stack.append(cm)

        yield register
        while stack:
            stack.pop().__exit__(None, None, None)

except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
