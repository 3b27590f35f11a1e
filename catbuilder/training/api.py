"""``catbuilder.training``: fit a plugin model on an image stack."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = ["TrainResult", "split_for_training", "train"]


@dataclass
class TrainResult:
    """A fitted model and how it got there.

    Attributes
    ----------
    model
        The fitted estimator.
    history
        One row per stage and epoch: ``stage, epoch, loss, accuracy, val_loss,
        val_accuracy, lr`` (and ``samples_per_s`` for distributed runs).
    checkpoint_dir
        Where the per-epoch checkpoints are.
    path
        Where the model was saved (``train(..., output=...)``), else None.
    """

    model: Any
    history: pd.DataFrame
    checkpoint_dir: Path | None = None
    path: Path | None = None


def split_for_training(stack, exclude_flags=None, validation_fraction=None, seed=None):
    """Training and validation stacks from a stack's labels, splits and flags.

    Labelled objects without the excluded flags are used. When the stack has
    ``split`` values, ``train`` and ``validation`` are taken from them;
    otherwise a deterministic fraction (by object id) is held out.
    """
    from catbuilder.sky.selection import assign_splits
    from catbuilder.zarr_store import as_strings, read_values

    exclude = list(config.resolve("train.exclude-flags", exclude_flags))
    usable = stack.select(labelled=True, exclude=exclude)
    if len(usable) == 0:
        raise ValueError(
            "the stack has no labelled objects to train on (labels come from a 'label' column "
            "of the source table)"
        )
    if len(usable.classes) < 2:
        raise ValueError(f"training needs at least two classes; the stack has {usable.classes}")
    splits = as_strings(read_values(usable.ds["split"]))
    if (splits == "train").any():
        return usable.select(split="train"), (
            usable.select(split="validation") if (splits == "validation").any() else None
        )
    vf = float(config.resolve("train.validation-fraction", validation_fraction))
    s = assign_splits(
        read_values(usable.ds["objid"]),
        validation=vf,
        test=0.0,
        seed=config.resolve("train.seed", seed),
    )
    return usable.isel(np.flatnonzero(s == "train")), usable.isel(np.flatnonzero(s != "train"))


def _history(est: Any) -> pd.DataFrame:
    """The fit's history; an ensemble's members' one after another (``member``)."""
    members = getattr(est, "members_", None)
    if members is None:
        history = getattr(est, "history_", None)
        return pd.DataFrame() if history is None else history
    parts = [
        m.history_.assign(member=i)
        for i, m in enumerate(members)
        if getattr(m, "history_", None) is not None
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def train(
    stack: Any,
    model: str | Any | None = None,
    *,
    params: dict[str, Any] | None = None,
    validation: Any = "auto",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    cluster: Any = None,
    workers: int | None = None,
    exclude_flags: list[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    ensemble: int | None = None,
    calibration: str | None = None,
    soft_labels: bool | None = None,
) -> TrainResult:
    """Train a plugin model on the labelled objects of an image stack.

    Parameters
    ----------
    stack
        An :class:`~catbuilder.stack.ImageStack` or the path of one.
    model
        A plugin name (see ``catbuilder plugins``; default ``train.model``), a
        plugin class (:class:`catbuilder.plugins.ModelPlugin`), or an estimator.
    params
        Keyword arguments for the plugin's estimator (e.g. ``stages``,
        ``batch_size``, ``input_size``, ``weights``).
    validation
        ``"auto"`` (the stack's ``validation`` split, else a held-out fraction),
        None (no validation), or a stack.
    checkpoint_dir
        Where per-epoch checkpoints go (default ``train.checkpoint-dir``, else
        ``<stack>.checkpoints``); a run that was stopped resumes from them.
    resume
        Continue from the checkpoints in ``checkpoint_dir`` when they match.
    cluster
        None: train in this process. Otherwise Horovod ranks on Dask workers
        (with ``ensemble`` > 1: one Dask task per member instead):
        ``"local"``, a dask-jobqueue name (``"slurm"`` ...), a scheduler
        address, a Cluster or a Client (see :mod:`catbuilder.runtime`).
    workers
        Ranks (or, for an ensemble, worker processes) on ``cluster``.
    exclude_flags
        Objects with these flags are left out (default ``train.exclude-flags``).
    output
        Save the fitted model there (:func:`catbuilder.save_model`: the
        plugin's files and the manifest); None keeps it in memory only.
    ensemble
        Train this many models with successive seeds and return their mean
        as one :class:`~catbuilder.models.ensemble.Ensemble` (default
        ``train.ensemble``); predictions then carry the members' spread.
    calibration
        How the probabilities are calibrated on the validation split:
        ``"temperature"``, ``"isotonic"``, ``"none"`` or ``"auto"`` (the
        plugin's choice; default ``train.calibration``). See
        :mod:`catbuilder.models.calibration`.
    soft_labels
        Train on the labels' vote fractions as soft targets, weighted by
        vote counts (default ``train.soft-labels``): with every Galaxy Zoo
        galaxy labelled (``label_sources(..., sample="fo")``) instead of the
        high-probability few. The plugin's estimator must take a
        ``soft_labels`` parameter.

    Returns
    -------
    TrainResult
        The fitted model, its history, its checkpoints and where it was saved.

    Examples
    --------
    >>> from catbuilder import train
    >>> result = train("hp.zarr", "keras.small-cnn", params={"epochs": 8},
    ...                output="small-cnn.model")  # doctest: +SKIP
    >>> result.history.tail(1)  # doctest: +SKIP
    """
    from catbuilder.plugins import ModelPlugin, make_model
    from catbuilder.stack.store import ImageStack
    from catbuilder.training.ensemble import calibrate, calibration_method

    calibration = calibration_method(calibration)

    if not isinstance(stack, ImageStack):
        stack = ImageStack.open(stack)
    if (
        model is None
        or isinstance(model, (str, ModelPlugin))
        or (isinstance(model, type) and issubclass(model, ModelPlugin))
    ):
        est = make_model(config.resolve("train.model", model), **(params or {}))
    else:
        est = model
    if config.resolve("train.soft-labels", soft_labels):
        if "soft_labels" not in est.get_params(deep=False):
            raise ValueError(
                f"{type(est).__name__} does not train on soft labels (it has no soft_labels "
                "parameter); train on the labels as they are (soft_labels=False)"
            )
        est.set_params(soft_labels=True)
    train_set, val_set = split_for_training(stack, exclude_flags)
    if validation is None:
        val_set = None
    elif validation != "auto":
        val_set = validation if isinstance(validation, ImageStack) else ImageStack.open(validation)
    ckpt = checkpoint_dir or config.get("train.checkpoint-dir")
    if ckpt is None and stack.path is not None:
        from catbuilder.zarr_store import sibling

        ckpt = sibling(stack.path, ".checkpoints")
    ckpt = Path(ckpt) if ckpt is not None else None
    k = int(config.resolve("train.ensemble", ensemble))
    if k < 1:
        raise ValueError(f"ensemble must be a number of models, 1 or more; got {k}")
    if k > 1:
        from catbuilder.models.ensemble import Ensemble
        from catbuilder.training.ensemble import fit_members

        if ckpt is None:
            raise ValueError("an ensemble needs a checkpoint_dir (its members are saved there)")
        members = fit_members(
            est, k, train_set, val_set, workdir=ckpt, resume=resume, cluster=cluster,
            workers=workers,
        )  # fmt: skip
        est = Ensemble(members).fit()
    elif cluster is None:
        est.fit(train_set, validation_data=val_set, checkpoint_dir=ckpt, resume=resume)
    else:
        from catbuilder.training.distributed import fit_distributed

        est = fit_distributed(
            est,
            train_set,
            val_set,
            cluster=cluster,
            workers=workers,
            checkpoint_dir=ckpt,
            resume=resume,
        )
    calibrate(est, val_set, calibration)
    history = _history(est)
    saved = None
    if output is not None:
        from catbuilder.models.saved import save_model

        saved = save_model(est, output)
    return TrainResult(est, history, ckpt, saved)
