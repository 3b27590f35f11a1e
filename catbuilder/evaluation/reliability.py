"""How far a catalog's probabilities and uncertainties can be trusted.

Calibration: the expected calibration error (ECE) of the ``p_`` columns and,
for a calibrated model, of the model's own ``raw_p_`` ones, and the
reliability table behind them (accuracy against confidence). Uncertainty:
how well each per-object uncertainty (``entropy``, ``member_std``, and
``1 - confidence``) ranks the wrong classifications above the right ones,
as the ROC AUC of uncertainty for misclassification (0.5: no better than
chance, 1: every error more uncertain than every right answer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from catbuilder.models.calibration import reliability_table, table_ece

__all__ = ["UNCERTAINTIES", "reliability_metrics"]

#: catalog columns that say how unsure an object's class is (higher: less sure)
UNCERTAINTIES = ("entropy", "member_std")


def _error_auroc(wrong: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(score)
    if not 0 < wrong[ok].sum() < ok.sum():
        return float("nan")  # no errors, or nothing but errors: undefined
    return float(roc_auc_score(wrong[ok], score[ok]))


def reliability_metrics(
    data: pd.DataFrame, y: np.ndarray, classes: list[str]
) -> tuple[list[dict], pd.DataFrame]:
    """Calibration and uncertainty figures of one group of catalog rows.

    Parameters
    ----------
    data
        Catalog rows with ``p_<class>`` (and ``raw_p_<class>``, ``entropy``,
        ``member_std`` where present).
    y
        Their true classes (names).
    classes
        Class names, in ``p_`` column order.

    Returns
    -------
    rows : list of dict
        Metric rows of class ``all``: ``ece``, ``ece_uncalibrated`` (a
        calibrated model), ``error_auroc_<uncertainty>`` for ``confidence``
        (as ``1 - confidence``) and each column of :data:`UNCERTAINTIES` the
        rows have.
    reliability : pandas.DataFrame
        ``probabilities`` (``calibrated`` or ``uncalibrated``), ``lower,
        upper, confidence, accuracy, n`` per confidence bin.
    """
    index = {c: i for i, c in enumerate(classes)}
    yi = np.array([index[str(v)] for v in y], dtype=np.int64)
    proba = data[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    tables = [reliability_table(yi, proba).assign(probabilities="calibrated")]
    rows = [{"class": "all", "metric": "ece", "value": table_ece(tables[0])}]
    raw_cols = [f"raw_p_{c}" for c in classes]
    if all(c in data.columns for c in raw_cols):
        tables.append(reliability_table(yi, data[raw_cols].to_numpy(dtype=float)))
        tables[1]["probabilities"] = "uncalibrated"
        rows.append({"class": "all", "metric": "ece_uncalibrated", "value": table_ece(tables[1])})
    else:
        tables[0]["probabilities"] = "uncalibrated"
    wrong = proba.argmax(axis=1) != yi if len(yi) else np.zeros(0, bool)
    scores = {"confidence": 1.0 - proba.max(axis=1) if len(yi) else np.zeros(0)}
    scores |= {u: data[u].to_numpy(dtype=float) for u in UNCERTAINTIES if u in data.columns}
    for name, score in scores.items():
        auroc = _error_auroc(wrong, score)
        rows.append({"class": "all", "metric": f"error_auroc_{name}", "value": auroc})
    table = pd.concat(tables, ignore_index=True)
    return rows, table[["probabilities", *[c for c in table.columns if c != "probabilities"]]]
