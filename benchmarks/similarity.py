"""Similarity search over embeddings (catbuilder.embeddings)."""

import numpy as np

from . import QUICK


class SimilaritySearch:
    params = ([100_000] if QUICK else [100_000, 1_000_000], ["exact", "ivf"])
    param_names = ["n", "method"]
    timeout = 600

    def setup(self, n, method):
        from catbuilder.embeddings import SimilarityIndex

        rng = np.random.default_rng(0)
        centres = rng.normal(size=(200, 64)).astype(np.float32)
        self.X = centres[rng.integers(0, 200, n)] + 0.5 * rng.normal(size=(n, 64)).astype(
            np.float32
        )
        self.Q = self.X[:200]
        self.index = SimilarityIndex(10, method=method).fit(self.X)

    def time_build(self, n, method):
        from catbuilder.embeddings import SimilarityIndex

        SimilarityIndex(10, method=method).fit(self.X)

    def time_query_200(self, n, method):
        self.index.kneighbors(self.Q)

    def track_recall_at_10(self, n, method):
        """Fraction of the exact 10 nearest found (1.0 for exact search)."""
        from catbuilder.embeddings import SimilarityIndex

        exact = SimilarityIndex(10, method="exact").fit(self.X).kneighbors(self.Q)[1]
        found = self.index.kneighbors(self.Q)[1]
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))

    track_recall_at_10.unit = "recall"
