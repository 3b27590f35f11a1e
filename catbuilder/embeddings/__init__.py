"""Embeddings as a product: similarity search, anomalies, what to label next."""

from __future__ import annotations

from catbuilder.embeddings.anomaly import (
    anomaly_scores,
    label_next,
    merge_labels,
    with_anomaly_scores,
)
from catbuilder.embeddings.similarity import SimilarityIndex, similar

__all__ = [
    "SimilarityIndex",
    "anomaly_scores",
    "label_next",
    "merge_labels",
    "similar",
    "with_anomaly_scores",
]
