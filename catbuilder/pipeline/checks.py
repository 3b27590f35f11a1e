"""A pipeline checked whole before anything runs.

What would otherwise fail hours into a run is found in a second, by
``--dry-run`` and at the start of every run: the model plugin's name and its
parameters, the settings a cluster kind needs, a work directory that can be
written, and the inputs that must exist. Each problem is one line.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Any

from catbuilder.errors import CatbuilderError

__all__ = ["check_pipeline"]


def check_pipeline(spec: Any, steps: list[str]) -> None:
    """Raise :class:`CatbuilderError` (one line) at the first problem of a run.

    Parameters
    ----------
    spec
        The :class:`~catbuilder.pipeline.spec.PipelineSpec`, its configuration
        applied.
    steps
        The steps the run makes.
    """
    where = str(spec.path) if spec.path else "pipeline"
    if "train" in steps or "selftrain" in steps:
        _check_model(spec, where)
    if "selftrain" in steps and spec.section("model").get("saved"):
        raise CatbuilderError(
            f"{where}: model.saved and selftrain both name the model that classifies the "
            "survey: drop one"
        )
    if "selftrain" in steps and not spec.labelled_inputs():
        raise CatbuilderError(f"{where}: the selftrain step needs a selftrain.labelled section")
    _check_cluster(where)
    _check_workdir(spec.workdir, where)
    _check_inputs(spec, steps, where)


def _check_model(spec: Any, where: str) -> None:
    from catbuilder import config
    from catbuilder.plugins import get_plugin

    model = spec.section("model")
    name = model.get("plugin") or config.get("train.model")
    try:
        plugin = get_plugin(name)
    except ValueError as err:
        raise CatbuilderError(f"{where}: model.plugin: {err}") from None
    params = model.get("params") or {}
    if not params:
        return
    try:
        cls = plugin.estimator_class()
    except (ImportError, AttributeError, NotImplementedError):
        return  # a plugin without an importable class says so when the model is made
    known = getattr(cls, "_get_param_names", None)
    if known is None:
        return
    names = set(known())
    for key in params:
        if key not in names:
            near = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CatbuilderError(
                f"{where}: model.params: {plugin.name or name} has no parameter {key!r}{hint} "
                f"(it has {', '.join(sorted(names))})"
            )


def _check_cluster(where: str) -> None:
    import dask

    from catbuilder import config
    from catbuilder.runtime import JOBQUEUE_CLASSES

    kind = config.get("cluster.kind")
    if kind not in JOBQUEUE_CLASSES:
        return
    given = {**(dask.config.get(f"jobqueue.{kind}", default={}) or {})}
    given.update(config.get("cluster.jobqueue") or {})
    missing = [k for k in ("cores", "memory") if given.get(k) in (None, "")]
    if missing:
        raise CatbuilderError(
            f"{where}: cluster kind {kind} needs {' and '.join(missing)} for each job: set "
            f"cluster.jobqueue.{missing[0]} (or jobqueue.{kind}.{missing[0]} in Dask's "
            "configuration)"
        )


def _check_workdir(workdir: Path, where: str) -> None:
    probe = workdir
    while not probe.exists():
        probe = probe.parent
    if probe != workdir and not probe.is_dir():
        raise CatbuilderError(f"{where}: workdir {workdir}: {probe} is not a directory")
    try:  # a real write: permission bits say nothing for root or on read-only mounts
        fd, name = tempfile.mkstemp(prefix=".catbuilder-write-check-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise CatbuilderError(
            f"{where}: workdir {workdir} cannot be written ({probe}: {err.strerror}); "
            "choose another with --workdir"
        ) from None


def _check_inputs(spec: Any, steps: list[str], where: str) -> None:
    made_by_run = "mock" in steps or "mock" in spec.data
    mock = spec.workdir / "mock"
    inputs = spec.section("inputs")
    paths: list[tuple[str, Path]] = []
    if "labels" in steps or "cutouts" in steps:
        for key in ("sources", "labels"):
            if inputs.get(key):
                paths.append((f"inputs.{key}", spec.resolve(inputs[key])))
    saved = spec.section("model").get("saved")
    if saved:
        paths.append(("model.saved", spec.resolve(saved)))
    if "selftrain" in steps:
        given = spec.labelled_inputs()
        for key in ("sources", "labels"):
            paths.append((f"selftrain.labelled.{key}", spec.resolve(given[key])))
        if not made_by_run:
            paths += [("selftrain.labelled.tiles", p) for p in spec.tile_inputs("selftrain")]
    for key, p in paths:
        if made_by_run and p.resolve().is_relative_to(mock.resolve()):
            continue  # the mock step makes it
        if not p.exists():
            raise CatbuilderError(f"{where}: {key}: {p} does not exist")
    if "tiles" in steps and not made_by_run:
        for p in spec.tile_inputs():
            if not p.exists():
                raise CatbuilderError(f"{where}: inputs.tiles: {p} does not exist")
