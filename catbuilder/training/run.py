"""Training runs described by a YAML file or by arguments (``catbuilder train``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from catbuilder import config

__all__ = ["RunResult", "run_training"]

_RUN_KEYS = {
    "stack",
    "model",
    "params",
    "output",
    "epochs",
    "checkpoint-dir",
    "resume",
    "cluster",
    "workers",
    "ensemble",
    "calibration",
    "soft-labels",
    "catbuilder",
}


@dataclass
class RunResult:
    model: Any
    history: pd.DataFrame
    output: Path


def _read_run(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - _RUN_KEYS
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {sorted(unknown)}; a run file has "
            f"{', '.join(sorted(_RUN_KEYS))}"
        )
    if "catbuilder" in spec:  # configuration overrides for this run only (run_training)
        config.validate(spec["catbuilder"])
    base = path.parent
    for key in ("stack", "output", "checkpoint-dir"):
        if spec.get(key) is not None and not os.path.isabs(str(spec[key])):
            spec[key] = str(base / spec[key])
    return spec


def run_training(
    stack: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    model: str | None = None,
    params: dict | None = None,
    epochs: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    cluster: Any = None,
    workers: int | None = None,
    ensemble: int | None = None,
    calibration: str | None = None,
    soft_labels: bool | None = None,
) -> RunResult:
    """Train and save a model; arguments override a run file's values.

    ``stack`` is an image stack, or a YAML run file with keys ``stack``,
    ``model``, ``params``, ``output``, ``epochs``, ``checkpoint-dir``,
    ``resume``, ``cluster``, ``workers``, ``ensemble``, ``calibration``, ``soft-labels`` and an
    optional ``catbuilder:``
    section of configuration overrides.
    """
    from catbuilder.training.api import train

    spec: dict = {}
    if str(stack).endswith((".yaml", ".yml")):
        spec = _read_run(Path(stack))
        stack = spec.get("stack")
        if stack is None:
            raise ValueError("the run file names no stack")
    model = model or spec.get("model")
    params = {**(spec.get("params") or {}), **(params or {})}
    epochs = epochs if epochs is not None else spec.get("epochs")
    if epochs is not None:  # the plugin's own "epochs" parameter
        params["epochs"] = int(epochs)
    from catbuilder.zarr_store import sibling

    out = Path(output or spec.get("output") or sibling(stack, ".model"))
    with config.set(spec.get("catbuilder") or {}):  # the run file's settings, for this run
        result = train(
            stack,
            model,
            params=params,
            checkpoint_dir=checkpoint_dir or spec.get("checkpoint-dir"),
            resume=resume if spec.get("resume") is None else bool(spec["resume"]) and resume,
            cluster=cluster or spec.get("cluster"),
            workers=workers or spec.get("workers"),
            output=out,
            ensemble=ensemble or spec.get("ensemble"),
            calibration=calibration or spec.get("calibration"),
            soft_labels=soft_labels if soft_labels is not None else spec.get("soft-labels"),
        )
    return RunResult(result.model, result.history, out)
