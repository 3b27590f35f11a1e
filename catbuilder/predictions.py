"""Predictions on disk: the store :func:`catbuilder.predict` writes, opened lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder import zarr_store as zs
from catbuilder.errors import IncompleteStoreError

__all__ = ["KIND", "Predictions", "open_predictions"]

#: the ``kind`` a predictions store records in its metadata
KIND = "predictions"


@dataclass
class Predictions:
    """Probabilities (and embeddings) of a stack's objects, on Zarr.

    Attributes
    ----------
    path
        The Zarr store.
    ds
        The lazy dataset: ``probabilities (object, class)`` (calibrated when
        the model carries a calibration, the model's own then in
        ``raw_probabilities``), ``member_std (object, class)`` for an
        ensemble, ``embeddings (object, feature)``, coordinates ``position``
        (in the stack) and ``objid``.
    """

    path: Path
    ds: Any

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.ds["class"].values]

    @property
    def meta(self) -> dict:
        return zs.read_meta(self.ds)

    def probabilities(self, calibrated: bool = True) -> np.ndarray:
        """``(object, class)``: calibrated when the model was, else the model's own."""
        if not calibrated and "raw_probabilities" in self.ds:
            return zs.read_values(self.ds["raw_probabilities"])
        return zs.read_values(self.ds["probabilities"])

    @property
    def calibrated(self) -> bool:
        """Whether ``probabilities()`` went through the model's calibration map."""
        return "raw_probabilities" in self.ds

    def member_std(self) -> np.ndarray | None:
        """``(object, class)`` spread of an ensemble's members; None for one model."""
        return zs.read_values(self.ds["member_std"]) if "member_std" in self.ds else None

    def embeddings(self) -> np.ndarray | None:
        return zs.read_values(self.ds["embeddings"]) if "embeddings" in self.ds else None

    def __len__(self) -> int:
        return int(self.ds.sizes["object"])


def open_predictions(path: str | os.PathLike[str]) -> Predictions:
    """Open a predictions store written by :func:`predict`.

    Parameters
    ----------
    path
        The predictions' Zarr directory.

    Returns
    -------
    Predictions
        ``probabilities()``, ``embeddings()``, ``classes`` and the provenance.

    Examples
    --------
    >>> from catbuilder import open_predictions
    >>> preds = open_predictions("des.predictions.zarr")  # doctest: +SKIP
    >>> preds.classes, preds.probabilities().shape  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no predictions at {path}")
    ds = zs.open_zarr(path)
    if not zs.read_meta(ds).get("complete"):
        raise IncompleteStoreError(f"predictions {path} are incomplete: run predict again")
    return Predictions(path, ds.drop_vars("written"))
