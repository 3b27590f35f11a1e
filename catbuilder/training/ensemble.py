"""Fitting ensembles and calibration maps after a plugin's ``fit``.

Both work through the estimator contract only, so every plugin gets them:
members are clones of one estimator with successive seeds (its ``seed`` or
``random_state`` parameter), each fitted as one Dask task on a worker (or in
this process, one after the other, without a cluster); a calibration map is
fitted to the model's probabilities on the validation split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder import config
from catbuilder.errors import warn

__all__ = ["calibrate", "calibration_method", "fit_members", "seed_param"]


def calibration_method(method: str | None = None) -> str:
    """``method`` (default ``train.calibration``), checked before any training starts.

    Raises
    ------
    ValueError
        For a method that is not ``temperature``, ``isotonic``, ``none`` or ``auto``.
    """
    from catbuilder.models.calibration import METHODS

    method = str(config.resolve("train.calibration", method))
    if method not in (*METHODS, "auto"):
        raise ValueError(
            f"unknown calibration method {method!r}; one of {', '.join(METHODS)} or auto"
        )
    return method


def seed_param(est: Any) -> str:
    """The estimator's seed parameter (``seed`` or ``random_state``).

    Raises
    ------
    ValueError
        When it has neither: its members would all be one model.
    """
    params = est.get_params(deep=False)
    for name in ("seed", "random_state"):
        if name in params:
            return name
    raise ValueError(
        f"{type(est).__name__} has no seed or random_state parameter, so the members of an "
        "ensemble of it would be one model; use ensemble=1"
    )


def _fit_member(est, stack_path, train_pos, val_pos, checkpoint_dir, resume, out) -> str:
    """One member, on a worker: fit on the stack's selections, save to ``out``."""
    from catbuilder.models.saved import save_model
    from catbuilder.stack.store import ImageStack

    stack = ImageStack.open(stack_path)
    val = None if val_pos is None else stack.isel(val_pos)
    train = stack.isel(train_pos)
    est.fit(train, validation_data=val, checkpoint_dir=checkpoint_dir, resume=resume)
    save_model(est, out)
    return str(out)


def fit_members(
    est: Any,
    k: int,
    train_set: Any,
    val_set: Any,
    *,
    workdir: Path,
    resume: bool = True,
    cluster: Any = None,
    workers: int | None = None,
) -> list[Any]:
    """Fit ``k`` clones of ``est`` with seeds ``seed, seed + 1, ...``.

    Parameters
    ----------
    est
        The (unfitted) estimator; its seed is the first member's.
    k
        Members.
    train_set, val_set
        Selections of one stored stack (``val_set`` may be None).
    workdir
        Where each member keeps its checkpoints and saved model
        (``member-<i>.checkpoints``, ``member-<i>.model``).
    resume
        Continue members from their checkpoints.
    cluster, workers
        None: fit in this process, one after the other; otherwise one Dask
        task per member (see :func:`catbuilder.runtime.connect`).

    Returns
    -------
    list
        The fitted members, loaded from their saved models.
    """
    from sklearn.base import clone

    from catbuilder.models.saved import load_model

    if train_set.path is None:
        raise ValueError("an ensemble is trained from a stack stored on disk")
    name = seed_param(est)
    first = int(est.get_params(deep=False)[name] or 0)
    stack_path = os.path.abspath(train_set.path)
    train_pos = np.asarray(train_set.ds["object"].values)
    val_pos = None if val_set is None else np.asarray(val_set.ds["object"].values)
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            clone(est).set_params(**{name: first + i}),
            stack_path,
            train_pos,
            val_pos,
            workdir / f"member-{i}.checkpoints",
            resume,
            workdir / f"member-{i}.model",
        )
        for i in range(k)
    ]
    if cluster is None:
        paths = [_fit_member(*job) for job in jobs]
    else:
        from catbuilder.runtime import connect

        with connect(cluster, workers) as client:
            futures = [
                client.submit(_fit_member, *job, pure=False, key=f"catbuilder-member-{i}")
                for i, job in enumerate(jobs)
            ]
            paths = client.gather(futures)
    return [load_model(p) for p in paths]


def calibrate(est: Any, val_set: Any, method: str | None = None) -> Any:
    """Fit ``est``'s calibration map (``calibration_``) on a validation split.

    Parameters
    ----------
    est
        A fitted estimator (or :class:`~catbuilder.models.ensemble.Ensemble`).
    val_set
        Labelled objects it was not fitted on; None leaves ``est`` uncalibrated,
        with a warning unless ``method`` is ``"none"``.
    method
        ``"temperature"``, ``"isotonic"``, ``"none"``, or ``"auto"`` (default
        ``train.calibration``): the estimator's ``calibration_method``.

    Returns
    -------
    estimator
        ``est``; its probabilities are those :func:`catbuilder.predict` uses
        (with test-time augmentation when ``infer.tta`` is on).
    """
    from catbuilder.models.calibration import fit_calibration
    from catbuilder.models.estimator import labels_of

    method = calibration_method(method)
    if method == "auto":
        method = getattr(est, "calibration_method", "temperature")
    if method == "none":
        return est
    if val_set is None or len(val_set) == 0:
        warn(
            "no validation objects: the model's probabilities are not calibrated "
            "(give it a validation split, or train.calibration: none)"
        )
        return est
    tta = bool(config.get("infer.tta"))
    batch = int(config.get("infer.batch-size"))
    proba = np.concatenate(
        [p for p, _ in est.iter_predictions(val_set, batch_size=batch, embed=False, tta=tta)]
    )
    index = {str(c): i for i, c in enumerate(est.classes_)}
    labels = labels_of(val_set)
    keep = np.array([str(v) in index for v in labels], dtype=bool)
    y = np.array([index[str(v)] for v in labels[keep]], dtype=np.int64)
    est.calibration_ = fit_calibration(proba[keep], y, method, tta=tta)
    return est
