"""The catalog as a join: predictions with the stack's per-object table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from catbuilder._version import __version__


def build_catalog(predictions, stack=None) -> pd.DataFrame:
    """Join predictions with the stack's per-object table.

    Parameters
    ----------
    predictions
        :class:`catbuilder.predictions.Predictions` (or the path of one).
    stack
        The stack predicted on (default: the one recorded in the predictions).

    Returns
    -------
    pandas.DataFrame
        One row per object: ``objid, ra, dec``, ``p_<class>`` for each class
        (calibrated when the model was), ``predicted`` (class name),
        ``confidence`` (its probability), ``entropy``, for an ensemble
        ``member_std``, for a calibrated model ``raw_p_<class>``, the
        flags (``flags`` bits and each flag), ``tile``, ``label``, ``split``,
        and the label survey's ``label_objid``, ``label_prob`` and ``label_votes`` where the
        stack has them, then the source columns the stack carries
        (``extra_columns``), in their own types. Unknown values are nulls:
        objects off the footprint have NaN probabilities and a null
        ``predicted``; unlabelled objects a null ``label``, ``split`` and
        ``label_objid``. Units, UCDs and
        descriptions of every column: :mod:`catbuilder.catalog.schema`.
        ``df.attrs["catbuilder"]`` holds the model's and the stack's provenance.

    Examples
    --------
    >>> from catbuilder import build_catalog, write_catalog
    >>> catalog = build_catalog("des.predictions.zarr")  # doctest: +SKIP
    >>> write_catalog(catalog, "des-catalog.fits")  # doctest: +SKIP
    """
    from catbuilder.predictions import Predictions, open_predictions
    from catbuilder.stack.store import ImageStack

    if not isinstance(predictions, Predictions):
        predictions = open_predictions(predictions)
    meta = predictions.meta
    if stack is None:
        stack = ImageStack.open(meta["stack"]["path"])
    elif not isinstance(stack, ImageStack):
        stack = ImageStack.open(stack)
    positions = np.asarray(predictions.ds["position"].values)
    objects = stack.isel(positions).objects().reset_index(drop=True)
    proba = predictions.probabilities()
    classes = predictions.classes
    if len(objects) != len(proba):
        raise ValueError("predictions and stack disagree on the number of objects")
    off = objects["off_footprint"].to_numpy(dtype=bool)
    proba = proba.astype(np.float32).copy()
    proba[off] = np.nan
    cat = pd.DataFrame({"objid": objects["objid"], "ra": objects["ra"], "dec": objects["dec"]})
    for i, c in enumerate(classes):
        cat[f"p_{c}"] = proba[:, i]
    best = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
    cat["predicted"] = pd.Series(
        np.where(off, None, np.asarray(classes, dtype=object)[best]), dtype=object
    )
    cat["confidence"] = np.where(off, np.nan, np.nanmax(np.where(off[:, None], 0, proba), axis=1))
    cat["confidence"] = cat["confidence"].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(proba > 0, proba * np.log(proba), 0.0)
    cat["entropy"] = np.where(off, np.nan, -plogp.sum(axis=1)).astype(np.float32)
    spread = predictions.member_std()
    if spread is not None:
        picked = np.take_along_axis(spread.astype(np.float32), best[:, None], axis=1)[:, 0]
        cat["member_std"] = np.where(off, np.nan, picked).astype(np.float32)
    if predictions.calibrated:
        raw = predictions.probabilities(calibrated=False).astype(np.float32)
        for i, c in enumerate(classes):
            cat[f"raw_p_{c}"] = np.where(off, np.nan, raw[:, i]).astype(np.float32)
    cat["flags"] = objects["flags"].astype(np.uint8)
    for name in ("off_footprint", "edge", "saturated"):
        cat[name] = objects[name].astype(bool)
    cat["nan_fraction"] = objects["nan_fraction"].astype(np.float32)
    miss = [c for c in objects.columns if c.startswith("missing_band_")]
    cat["missing_band"] = objects[miss].any(axis=1) if miss else False
    for col in ("tile", "label", "split"):
        if col in objects:
            vals = objects[col].astype(str)
            cat[col] = vals.where(vals != "", None).astype(object)  # unknown is null, not ""
    if "label_objid" in objects:  # nulls already where the stack has no label object
        cat["label_objid"] = objects["label_objid"].reset_index(drop=True)
    for col in ("label_prob", "label_votes"):
        if col in objects:
            cat[col] = objects[col].astype(np.float32)
    for name in stack.meta.get("extra_columns") or {}:  # the source's, as it gave them
        cat[name] = objects[name].array
    cat.attrs["catbuilder"] = {
        "model": meta.get("model"),
        "predictions": str(predictions.path),
        "stack": meta.get("stack", {}).get("path"),
        "classes": classes,
        "tta": meta.get("parameters", {}).get("tta"),
        "catbuilder_version": __version__,
    }
    return cat
