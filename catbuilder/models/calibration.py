"""Calibrated probabilities: fitted on a validation split, applied at predict.

A probability is calibrated when, of the objects given 0.9, nine in ten are
right. A network's softmax usually is not (it is overconfident), so
:func:`catbuilder.train` fits a calibration map on the validation split once
the plugin's ``fit`` returns, for every plugin alike (the map only sees
probabilities), stores it in the saved model's manifest, and
:func:`catbuilder.predict` applies it, keeping the uncalibrated
probabilities beside the calibrated ones.

Two maps:

``temperature``
    Temperature scaling (Guo et al. 2017): ``softmax(log p / T)``, one
    parameter fitted by minimising the negative log-likelihood. Since
    ``log p`` differs from the network's logits by a constant per object, this
    is the usual logit scaling; it never changes the predicted class.
``isotonic``
    scikit-learn's :class:`~sklearn.isotonic.IsotonicRegression` per class
    (one against the rest), rows renormalised, as
    :class:`~sklearn.calibration.CalibratedClassifierCV` does; for models
    whose scores are not a softmax (trees, forests). It needs a few hundred
    validation objects per class.

The expected calibration error (ECE) is the mean gap between confidence and
accuracy over equal-width confidence bins, weighted by the bins' counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "METHODS",
    "Calibration",
    "expected_calibration_error",
    "fit_calibration",
    "reliability_table",
    "table_ece",
]

METHODS = ("temperature", "isotonic", "none")
N_BINS = 15
_EPS = 1e-7


def reliability_table(y: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """Accuracy against confidence in equal-width bins of the top probability.

    Parameters
    ----------
    y
        True class indices (columns of ``proba``).
    proba
        Probabilities ``(n, classes)``.
    n_bins
        Bins over [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``lower, upper, confidence`` (mean top
        probability), ``accuracy`` and ``n``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    right = (proba.argmax(axis=1) == y) if len(proba) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows.append(
                {
                    "lower": edges[b],
                    "upper": edges[b + 1],
                    "confidence": float(conf[sel].mean()),
                    "accuracy": float(right[sel].mean()),
                    "n": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["lower", "upper", "confidence", "accuracy", "n"])


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    """The count-weighted mean of ``|accuracy - confidence|`` over confidence bins.

    Parameters
    ----------
    y
        True class indices (columns of ``proba``).
    proba
        Probabilities ``(n, classes)``.
    n_bins
        Equal-width bins over [0, 1].

    Returns
    -------
    float
        NaN for no objects.

    Examples
    --------
    >>> import numpy as np
    >>> from catbuilder.models.calibration import expected_calibration_error
    >>> p = np.array([[0.9, 0.1]] * 10)
    >>> round(expected_calibration_error(np.array([0] * 9 + [1]), p), 3)
    0.0
    >>> round(expected_calibration_error(np.array([0] * 5 + [1] * 5), p), 3)
    0.4
    """
    return table_ece(reliability_table(y, proba, n_bins))


def table_ece(table: pd.DataFrame) -> float:
    """The ECE of a :func:`reliability_table`: its bins' gaps weighted by their counts."""
    if table.empty:
        return float("nan")
    gaps = np.abs(table["accuracy"] - table["confidence"])
    return float(np.sum(table["n"] * gaps) / table["n"].sum())


def _tempered(proba: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(np.asarray(proba, np.float64), _EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return -float(np.mean(np.log(_tempered(proba, np.exp(log_t))[rows, y] + 1e-12)))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def _fit_isotonic(proba: np.ndarray, y: np.ndarray) -> list[dict[str, list[float]]]:
    from sklearn.isotonic import IsotonicRegression

    maps = []
    for k in range(proba.shape[1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(proba[:, k], (y == k).astype(np.float64))
        maps.append({"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
    return maps


@dataclass
class Calibration:
    """A calibration map and what it did on the split it was fitted on.

    Attributes
    ----------
    method
        ``"temperature"`` or ``"isotonic"``.
    n
        Objects it was fitted on.
    ece_before, ece_after
        Expected calibration error on those objects, uncalibrated and calibrated.
    held_out_ece
        The ECE of the same objects, each calibrated by a map fitted on the
        other folds (5-fold cross-validation): what the map does on objects it
        has not seen.
    applied
        Whether :meth:`apply` changes probabilities: False when the held-out
        ECE is not below ``ece_before`` (the map would not improve on the
        model's own probabilities, so it is not used).
    tta
        Whether the probabilities it was fitted on averaged the eight
        dihedral views (:func:`catbuilder.predict` warns when it applies the
        map to the other kind).
    temperature
        The fitted temperature (``method="temperature"``).
    isotonic
        Per class, the isotonic map's thresholds ``{"x": [...], "y": [...]}``.
    """

    method: str
    n: int
    ece_before: float
    ece_after: float
    held_out_ece: float | None = None
    applied: bool = True
    tta: bool = False
    temperature: float | None = None
    isotonic: list[dict[str, list[float]]] | None = field(default=None, repr=False)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(n, classes)`` (float32, rows summing to 1);
        the model's own when the map is not ``applied``."""
        proba = np.asarray(proba, dtype=np.float64)
        if len(proba) == 0 or not self.applied:
            return proba.astype(np.float32)
        if self.method == "temperature":
            out = _tempered(proba, float(self.temperature))
        elif self.method == "isotonic":
            cols = [np.interp(proba[:, k], m["x"], m["y"]) for k, m in enumerate(self.isotonic)]
            out = np.stack(cols, axis=1)
            total = out.sum(axis=1, keepdims=True)
            flat = total[:, 0] <= 0
            out[flat] = proba[flat]  # every class mapped to 0: keep the model's own
            out[~flat] /= total[~flat]
        else:
            raise ValueError(f"unknown calibration method {self.method!r}; one of {METHODS}")
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the saved model's manifest holds it)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The calibration :meth:`to_dict` wrote."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def fit_calibration(
    proba: np.ndarray, y: np.ndarray, method: str = "temperature", *, tta: bool = False
) -> Calibration | None:
    """Fit a calibration map to probabilities and their true class indices.

    Parameters
    ----------
    proba
        Uncalibrated probabilities ``(n, classes)`` of a validation split.
    y
        True class indices.
    method
        ``"temperature"``, ``"isotonic"`` or ``"none"`` (returns None).
    tta
        Whether ``proba`` averaged the dihedral views (recorded).

    Returns
    -------
    Calibration or None
        Not ``applied`` when, cross-validated, it does not lower the ECE.

    Examples
    --------
    >>> import numpy as np
    >>> from catbuilder.models.calibration import fit_calibration
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000)
    >>> right = rng.random(2000) < 0.8  # right 80% of the time, at 0.99
    >>> p1 = np.where(right == (y == 1), 0.99, 0.01)
    >>> cal = fit_calibration(np.c_[1 - p1, p1], y)
    >>> cal.ece_before > 0.15 > 0.02 > cal.ece_after, cal.applied
    (True, True)
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(METHODS)}")
    if method == "none":
        return None
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("calibration needs labelled validation objects; there are none")
    cal = _fitted(proba, y, method)
    cal.tta = bool(tta)
    cal.held_out_ece = _held_out_ece(proba, y, method)
    cal.applied = bool(cal.held_out_ece < cal.ece_before)
    return cal


def _fitted(proba: np.ndarray, y: np.ndarray, method: str) -> Calibration:
    cal = Calibration(method, len(y), expected_calibration_error(y, proba), 0.0)
    if method == "temperature":
        cal.temperature = _fit_temperature(proba, y)
    else:
        cal.isotonic = _fit_isotonic(proba, y)
    cal.ece_after = expected_calibration_error(y, cal.apply(proba))
    return cal


def _held_out_ece(proba: np.ndarray, y: np.ndarray, method: str, folds: int = 5) -> float:
    """ECE of every object calibrated by the map fitted on the other folds."""
    fold = np.random.default_rng(0).permutation(len(y)) % folds
    out = np.empty_like(proba)
    for k in range(folds):
        test = fold == k
        if test.all() or not test.any():  # too few objects to hold any out
            return expected_calibration_error(y, proba)
        out[test] = _fitted(proba[~test], y[~test], method).apply(proba[test])
    return expected_calibration_error(y, out)
