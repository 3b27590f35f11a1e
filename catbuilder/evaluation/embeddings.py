"""The paper's heuristic check: do embeddings form one cluster per class?

Khan et al. (2019) take the 1024-d penultimate layer, project it with t-SNE,
and check that unlabelled galaxies fall into two clusters like the labelled
ones. :func:`cluster_embeddings` does that (UMAP when installed, else t-SNE),
with k-means and its agreement with the predicted classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["EmbeddingClusters", "cluster_embeddings", "plot_embedding"]


@dataclass
class EmbeddingClusters:
    """2-D projection, k-means clusters and their agreement with predictions."""

    coords: np.ndarray
    clusters: np.ndarray
    agreement: float
    method: str


def cluster_embeddings(
    embeddings: np.ndarray,
    predicted=None,
    *,
    n_clusters: int = 2,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 5000,
) -> EmbeddingClusters:
    """Project embeddings to 2-D and cluster them.

    Parameters
    ----------
    embeddings
        ``(n, d)``.
    predicted
        Predicted classes; the agreement is the fraction of objects whose
        cluster's majority class is their own (1.0: clusters are classes).
    n_clusters
        k-means clusters (the paper expects one per class).
    method
        ``"tsne"`` (scikit-learn) or ``"umap"`` (umap-learn).
    max_points
        Objects projected at most (a random subset beyond; t-SNE is O(n^2)).
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    X = np.asarray(embeddings, dtype=np.float32)
    keep = np.isfinite(X).all(axis=1)
    idx = np.flatnonzero(keep)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    Xs = X[idx]
    Xp = PCA(n_components=min(50, Xs.shape[1], len(Xs)), random_state=seed).fit_transform(Xs)
    if method == "umap":
        import umap

        coords = umap.UMAP(n_components=2, random_state=seed).fit_transform(Xp)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        coords = TSNE(
            n_components=2,
            random_state=seed,
            init="pca",
            perplexity=min(30.0, max(5.0, len(Xp) / 10)),
        ).fit_transform(Xp)
    else:
        raise ValueError(f"method must be 'tsne' or 'umap', got {method!r}")
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(Xp)
    agreement = np.nan
    if predicted is not None:
        pred = np.asarray(predicted).astype(str)[idx]
        tab = pd.crosstab(clusters, pred)
        agreement = float(tab.max(axis=1).sum() / len(pred))
    full_coords = np.full((len(X), 2), np.nan)
    full_coords[idx] = coords
    full_clusters = np.full(len(X), -1)
    full_clusters[idx] = clusters
    return EmbeddingClusters(full_coords, full_clusters, agreement, method)


def plot_embedding(
    result: EmbeddingClusters, labels, path, title: str = "", legend_title: str = "class"
) -> Path:
    """Scatter of the 2-D projection coloured by ``labels``.

    ``legend_title`` says what the colours are (``"predicted class"``,
    ``"true class"``); the title gives n and the method.
    """
    from catbuilder.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    labels = np.asarray(labels).astype(str)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for lab in sorted(set(labels)):
        m = (labels == lab) & np.isfinite(result.coords[:, 0])
        ax.scatter(result.coords[m, 0], result.coords[m, 1], s=4, label=lab, alpha=0.7)
    n = int(np.isfinite(result.coords[:, 0]).sum())
    default = f"{result.method} of embeddings (cluster agreement {result.agreement:.3f})"
    ax.set(xticks=[], yticks=[])
    ax.set_title(f"{title or default}\nn={n}", fontsize=10)
    ax.legend(markerscale=3, title=legend_title)
    return save_figure(fig, path)
