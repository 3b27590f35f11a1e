"""Anomalies in embedding space, and what a person should label next.

:func:`anomaly_scores` ranks objects by how isolated their embedding is (an
isolation forest); :func:`with_anomaly_scores` adds them to a catalog;
:func:`label_next` picks the most uncertain and most anomalous objects to
label, and :func:`merge_labels` folds returned labels into a source table.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd


def anomaly_scores(embeddings: np.ndarray, *, seed: int = 0, n_estimators: int = 200) -> np.ndarray:
    """How isolated each embedding is: an isolation forest's score, higher is stranger.

    Rows with NaN (objects off the footprint) get NaN. Scores are comparable
    within one call, not across calls.
    """
    from sklearn.ensemble import IsolationForest

    X = np.asarray(embeddings, dtype=np.float32)
    out = np.full(len(X), np.nan)
    ok = np.isfinite(X).all(axis=1)
    if ok.sum() < 2:
        return out
    forest = IsolationForest(
        n_estimators=n_estimators, max_samples=min(4096, int(ok.sum())), random_state=seed
    ).fit(X[ok])
    out[ok] = -forest.score_samples(X[ok])
    return out


def with_anomaly_scores(catalog: pd.DataFrame, predictions: Any, **kwargs: Any) -> pd.DataFrame:
    """The catalog with an ``anomaly_score`` column from the predictions' embeddings.

    Parameters
    ----------
    catalog
        A catalog built from ``predictions`` (:func:`catbuilder.build_catalog`):
        one row per predicted object, in the same order.
    predictions
        The :class:`catbuilder.predictions.Predictions` (or its path), with embeddings.
    **kwargs
        Passed to :func:`anomaly_scores` (``seed``, ``n_estimators``).

    Returns
    -------
    pandas.DataFrame
        A copy of ``catalog`` with ``anomaly_score`` (higher is stranger; NaN
        for objects off the footprint).

    Raises
    ------
    ValueError
        When the predictions hold no embeddings, or another number of objects.
    """
    from catbuilder.predictions import Predictions, open_predictions

    if not isinstance(predictions, Predictions):
        predictions = open_predictions(predictions)
    emb = predictions.embeddings()
    if emb is None:
        raise ValueError("anomaly scores need embeddings: predict with embed=True")
    if len(emb) != len(catalog):
        raise ValueError(
            f"the catalog has {len(catalog)} rows and the predictions {len(emb)} objects"
        )
    emb = emb.astype(np.float32).copy()
    if "off_footprint" in catalog:
        emb[catalog["off_footprint"].to_numpy(dtype=bool)] = np.nan
    out = catalog.copy()
    out["anomaly_score"] = anomaly_scores(emb, **kwargs)
    return out


def label_next(catalog: pd.DataFrame, n: int = 50, *, anomaly: str = "anomaly_score"):
    """Objects a person should label next: the most uncertain and the most anomalous.

    Parameters
    ----------
    catalog
        A catalog (with ``p_<class>`` columns; with ``anomaly_score`` when
        anomalies should be included) of unlabelled objects, or of all:
        objects that already have a label, or no prediction, are left out.
    n
        Objects of each kind (uncertain, anomalous).

    Returns
    -------
    pandas.DataFrame
        ``objid, ra, dec, reason`` (``uncertain`` or ``anomalous``),
        ``score`` (the margin between the two most probable classes, smallest
        first; or the anomaly score, largest first), ``predicted``,
        ``confidence`` and an empty ``label`` column to fill in and return to
        :func:`merge_labels`.
    """
    probs = [c for c in catalog.columns if c.startswith("p_")]
    if not probs:
        raise ValueError("the catalog has no p_<class> columns")
    cand = catalog[catalog["predicted"].notna()]
    if "label" in cand:
        cand = cand[cand["label"].isna()]
    p = np.sort(cand[probs].to_numpy(dtype=float), axis=1)
    margin = p[:, -1] - (p[:, -2] if p.shape[1] > 1 else 0.0)
    parts = []
    first = cand.assign(reason="uncertain", score=margin).nsmallest(n, "score")
    parts.append(first)
    if anomaly in cand:
        rest = cand[~cand["objid"].isin(first["objid"])]
        parts.append(rest.assign(reason="anomalous", score=rest[anomaly]).nlargest(n, "score"))
    out = pd.concat(parts, ignore_index=True)
    out = out[["objid", "ra", "dec", "reason", "score", "predicted", "confidence"]].copy()
    out["label"] = pd.Series([None] * len(out), dtype=object)
    return out


def merge_labels(
    sources: pd.DataFrame | str | os.PathLike[str],
    returned: pd.DataFrame | str | os.PathLike[str],
    *,
    id_col: str = "objid",
    label_col: str = "label",
) -> pd.DataFrame:
    """Fold labels a person returned into a source table, for the next training round.

    Rows of ``returned`` with an empty label are ignored. The labelled
    objects get ``label``, ``label_origin = "returned"`` and a
    deterministic ``split`` (:func:`catbuilder.sky.assign_splits`).

    Raises
    ------
    ValueError
        Returned ids that are not in ``sources``, or an object given two
        different labels.
    """
    from catbuilder.sky.selection import assign_splits
    from catbuilder.sky.tables import read_sources, read_table

    src = read_sources(sources)
    ret = returned if isinstance(returned, pd.DataFrame) else read_table(returned)
    for col in (id_col, label_col):
        if col not in ret.columns:
            raise ValueError(f"returned labels have no column {col!r}")
    ret = ret[[id_col, label_col]].dropna()
    ret = ret[ret[label_col].astype(str).str.strip() != ""]
    clash = ret.groupby(id_col)[label_col].nunique()
    if (clash > 1).any():
        raise ValueError(
            f"objects labelled twice, differently: {clash[clash > 1].index[:5].tolist()}"
        )
    ret = ret.drop_duplicates(id_col)
    unknown = ~ret[id_col].isin(src["objid"])
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} returned id(s) are not in the source table, e.g. "
            f"{ret.loc[unknown, id_col].tolist()[:5]}"
        )
    out = src.copy()
    if "label" not in out:
        out["label"] = pd.Series([None] * len(out), dtype=object)
    if "label_origin" not in out:
        out["label_origin"] = pd.Series([None] * len(out), dtype=object)
    new = dict(zip(ret[id_col], ret[label_col].astype(str).str.strip()))
    hit = out["objid"].isin(list(new))
    out.loc[hit, "label"] = out.loc[hit, "objid"].map(new)
    out.loc[hit, "label_origin"] = "returned"
    labelled = out["label"].notna() & (out["label"].astype(str) != "")
    split = assign_splits(out["objid"].to_numpy())
    old = out["split"] if "split" in out else pd.Series([None] * len(out))
    out["split"] = np.where(labelled, np.where(old.notna() & (old != ""), old, split), None)
    return out
