"""Similarity search over 10^6 embeddings: catbuilder's IVF index against exact search.

    python benchmarks/scripts/similarity_search.py [--n 1000000] [--dim 128]

Two kinds of synthetic embeddings (a mixture of 1,000 overlapping clusters,
and points on a curved 16-dimensional manifold with noise, where cells cut
through neighbourhoods) are
indexed by :class:`catbuilder.embeddings.SimilarityIndex` (faiss IVF, cosine)
and queried with k = 10; the same queries go to scikit-learn's exact
``NearestNeighbors`` (brute force) in the same process. Prints the build
time, queries per second of both and the IVF's recall@10 against the exact
answer, at a few probe counts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    width = rng.uniform(0.8, 1.6, 1000).astype(np.float32)  # clusters overlap
    lab = rng.integers(0, 1000, n)
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        noise = rng.normal(size=(b - a, dim)).astype(np.float32)
        out[a:b] = centres[lab[a:b]] + width[lab[a:b], None] * noise
    return out


def manifold(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Vectors on a curved 16-dimensional manifold plus noise: no cluster to hide behind."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, dim)).astype(np.float32) / 4
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        z = rng.normal(size=(b - a, 16)).astype(np.float32)
        out[a:b] = np.tanh(z @ w) + 0.05 * rng.normal(size=(b - a, dim)).astype(np.float32)
    return out


def run(name: str, X: np.ndarray, args) -> None:
    from sklearn.neighbors import NearestNeighbors

    from catbuilder.embeddings import SimilarityIndex

    rng = np.random.default_rng(1)
    Q = X[rng.choice(len(X), args.queries, replace=False)]
    print(f"\n{name}: {len(X):,} embeddings of dimension {X.shape[1]}, k = 10, cosine")
    t = time.perf_counter()
    ivf = SimilarityIndex(10, method="ivf").fit(X)
    build = time.perf_counter() - t
    print(f"IVF index ({ivf.index_.nlist} cells): built in {build:.1f} s")
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    qe = Q[: args.exact_queries] / np.linalg.norm(Q[: args.exact_queries], axis=1, keepdims=True)
    t = time.perf_counter()
    exact = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(unit)
    _, truth = exact.kneighbors(qe)
    exact_qps = len(qe) / (time.perf_counter() - t)
    print(f"exact sklearn NearestNeighbors (brute): {exact_qps:,.0f} queries/s")
    print("n_probe  queries/s  recall@10  vs exact")
    for probe in (8, 16, 32, 64, 128):
        ivf.index_.nprobe = probe
        t = time.perf_counter()
        _, idx = ivf.kneighbors(Q)
        qps = len(Q) / (time.perf_counter() - t)
        got = idx[: args.exact_queries]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        print(f"{probe:>7}  {qps:>9,.0f}  {recall:>9.3f}  {qps / exact_qps:>7.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--exact-queries", type=int, default=300)
    args = ap.parse_args()
    run("clustered (1,000 overlapping clusters)", embeddings(args.n, args.dim), args)
    run("manifold (16-d, curved, noisy)", manifold(args.n, args.dim), args)


if __name__ == "__main__":
    main()
