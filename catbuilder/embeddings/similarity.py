"""More galaxies like this one: nearest neighbours in embedding space.

:class:`SimilarityIndex` follows scikit-learn's ``NearestNeighbors``
(``fit``, ``kneighbors``): exact search (scikit-learn, brute force) for small
sets and an inverted-file index (faiss ``IndexIVFFlat``) for large ones,
on cosine distance by default. :func:`similar` answers a query by object id
or sky position against a predictions store.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = ["SimilarityIndex", "similar"]


class SimilarityIndex:
    """Nearest neighbours among vectors, exact or approximate.

    Parameters
    ----------
    n_neighbors
        Default ``k`` of :meth:`kneighbors`.
    metric
        ``"cosine"`` (vectors are normalised; distance ``1 - cos``) or ``"euclidean"``.
    method
        ``"exact"`` (scikit-learn brute force), ``"ivf"`` (faiss inverted file:
        vectors are assigned to ``n_lists`` k-means cells and a query scans the
        ``n_probe`` nearest cells) or ``"auto"``: exact up to
        ``similarity.exact-max`` vectors, IVF above.
    n_lists, n_probe
        IVF cells (default ``4 * sqrt(n)``, rounded) and cells scanned per
        query (default ``similarity.n-probe``); more probes: higher recall,
        slower queries.
    threads
        Threads for faiss (default: every core).
    seed
        For the k-means training sample.
    """

    def __init__(
        self,
        n_neighbors: int = 10,
        *,
        metric: str = "cosine",
        method: str = "auto",
        n_lists: int | None = None,
        n_probe: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.method = method
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.threads = threads
        self.seed = seed

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        if X.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n, dim), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("vectors contain NaN or infinite values")
        if self.metric == "cosine":
            norm = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.where(norm > 0, norm, 1.0)
        elif self.metric != "euclidean":
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {self.metric!r}")
        return X

    def fit(self, X: np.ndarray, y: Any = None) -> SimilarityIndex:
        """Index the vectors ``X`` (n, dim)."""
        X = self._prepare(X)
        n = len(X)
        if n == 0:
            raise ValueError("no vectors to index")
        method = self.method
        if method == "auto":
            method = "exact" if n <= int(config.get("similarity.exact-max")) else "ivf"
        if method == "exact":
            from sklearn.neighbors import NearestNeighbors

            self.index_ = NearestNeighbors(algorithm="brute", metric="euclidean").fit(X)
        elif method == "ivf":
            import faiss

            if self.threads:
                faiss.omp_set_num_threads(int(self.threads))
            lists = int(self.n_lists or max(1, min(n // 39, round(4 * np.sqrt(n)))))
            quantizer = faiss.IndexFlatL2(X.shape[1])
            index = faiss.IndexIVFFlat(quantizer, X.shape[1], lists)
            rng = np.random.default_rng(self.seed)
            sample = X[rng.choice(n, min(n, 64 * lists), replace=False)]
            index.train(sample)
            index.add(X)
            index.nprobe = int(self.n_probe or config.get("similarity.n-probe"))
            self.index_ = index
        else:
            raise ValueError(f"method must be 'auto', 'exact' or 'ivf', got {self.method!r}")
        self.method_ = method
        self.n_samples_fit_ = n
        return self

    def kneighbors(
        self, X: np.ndarray, n_neighbors: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices (into the fitted vectors) of the nearest neighbours.

        Returns
        -------
        distances, indices
            ``(n_queries, k)``, nearest first; cosine distance ``1 - cos``
            (or Euclidean). Fewer than ``k`` found (a sparse IVF cell) is
            padded with index -1 and distance inf.
        """
        if not hasattr(self, "index_"):
            raise ValueError("SimilarityIndex is not fitted: call fit(vectors) first")
        k = int(n_neighbors or self.n_neighbors)
        k = min(k, self.n_samples_fit_)
        Q = self._prepare(X)
        if self.method_ == "exact":
            dist, idx = self.index_.kneighbors(Q, n_neighbors=k)
            sq = dist.astype(np.float64) ** 2
        else:
            sq, idx = self.index_.search(Q, k)
            sq = np.where(idx >= 0, sq, np.inf).astype(np.float64)
        if self.metric == "cosine":  # unit vectors: |a - b|^2 = 2 - 2 cos
            return np.clip(sq / 2.0, 0.0, 2.0), idx
        return np.sqrt(sq), idx


def _predictions(predictions):
    from catbuilder.predictions import Predictions, open_predictions

    return predictions if isinstance(predictions, Predictions) else open_predictions(predictions)


_INDEXES: dict[tuple, tuple[SimilarityIndex, np.ndarray, np.ndarray]] = {}


def _index_for(preds, **params) -> tuple[SimilarityIndex, np.ndarray, np.ndarray]:
    """The index of a predictions store's embeddings, its rows and the embeddings
    (read and built once per process)."""
    marker = preds.path / "zarr.json"
    key = (str(preds.path), os.stat(marker).st_mtime_ns, tuple(sorted(params.items())))
    if key not in _INDEXES:
        emb = preds.embeddings()
        if emb is None:
            raise ValueError(
                f"{preds.path} has no embeddings: predict with embed=True to search by similarity"
            )
        ok = np.isfinite(emb).all(axis=1)
        rows = np.flatnonzero(ok)
        _INDEXES.clear()  # one store's index at a time: they can be large
        _INDEXES[key] = (SimilarityIndex(**params).fit(emb[rows]), rows, emb)
    return _INDEXES[key]


def similar(
    predictions,
    query: Any,
    k: int = 10,
    *,
    stack=None,
    catalog: pd.DataFrame | None = None,
    **index_params: Any,
) -> pd.DataFrame:
    """The ``k`` objects whose embeddings are nearest the query object's.

    Parameters
    ----------
    predictions
        A predictions store (or its path) with embeddings.
    query
        An object id of the stack, or a sky position ``(ra, dec)`` in degrees
        (the nearest object is the query; its separation is reported).
    k
        Neighbours returned, the query itself not counted.
    stack, catalog
        The stack predicted on and its catalog (default: built from the store).
    **index_params
        Passed to :class:`SimilarityIndex` (``method``, ``metric``, ``n_probe`` ...).

    Returns
    -------
    pandas.DataFrame
        ``rank`` (0 is the query), ``objid, ra, dec``, ``distance``
        (cosine by default), ``predicted``, ``confidence``, the ``p_<class>``
        columns and ``label`` where known. ``df.attrs["query"]`` says how the
        query object was found.

    Raises
    ------
    ValueError
        An id not in the stack, or a position farther than 5 arcsec from
        every object.

    Examples
    --------
    >>> from catbuilder import similar
    >>> similar("des.predictions.zarr", 1237660000000000030, k=10)  # doctest: +SKIP
    """
    from catbuilder.catalog import build_catalog

    preds = _predictions(predictions)
    cat = catalog if catalog is not None else build_catalog(preds, stack)
    cat = cat.reset_index(drop=True)
    how = ""
    if isinstance(query, (tuple, list)) and len(query) == 2 and not isinstance(query[0], str):
        from catbuilder.sky.geometry import sky_to_xyz

        v = sky_to_xyz(np.array([float(query[0])]), np.array([float(query[1])]))[0]
        cos = sky_to_xyz(cat["ra"].to_numpy(), cat["dec"].to_numpy()) @ v
        pos = int(np.argmax(cos))
        sep = float(np.degrees(np.arccos(np.clip(cos[pos], -1, 1))) * 3600)
        if sep > 5.0:
            raise ValueError(
                f"no object within 5 arcsec of RA {query[0]}, Dec {query[1]} "
                f"(nearest: {sep:.1f} arcsec)"
            )
        how = f"nearest object to ({query[0]}, {query[1]}), {sep:.2f} arcsec away"
    else:
        hit = np.flatnonzero(cat["objid"].astype(str).to_numpy() == str(query))
        if not len(hit):
            raise ValueError(f"object id {query!r} is not in the stack")
        pos = int(hit[0])
        how = f"object id {query}"
    index, rows, emb_all = _index_for(preds, **index_params)
    where = np.flatnonzero(rows == pos)
    if not len(where):
        raise ValueError(f"object {cat['objid'].iloc[pos]} has no embedding (off the footprint)")
    dist, idx = index.kneighbors(emb_all[[pos]], k + 1)
    found = rows[idx[0][idx[0] >= 0]]
    d = dist[0][idx[0] >= 0]
    order = [pos] + [int(i) for i in found if i != pos][:k]
    dist_of = dict(zip(found.tolist(), d.tolist()))
    dist_of[pos] = 0.0
    cols = ["objid", "ra", "dec", "predicted", "confidence"]
    cols += [c for c in cat.columns if c.startswith("p_")]
    cols += [c for c in ("label",) if c in cat.columns]
    out = cat.iloc[order][cols].reset_index(drop=True)
    out.insert(0, "rank", np.arange(len(out)))
    out.insert(4, "distance", [dist_of.get(i, np.nan) for i in order])
    out.attrs["query"] = how
    out.attrs["method"] = index.method_
    return out
