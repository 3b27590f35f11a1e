"""Embeddings as a product: similar objects, anomalies, what to label next."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from catbuilder.catalog import build_catalog
from catbuilder.embeddings import (
    SimilarityIndex,
    anomaly_scores,
    label_next,
    merge_labels,
    similar,
    with_anomaly_scores,
)
from catbuilder.infer import predict


def _clustered(n, d, centres, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    lab = rng.integers(0, centres, n)
    return c[lab] + 0.3 * rng.normal(size=(n, d)).astype(np.float32), lab


def test_ivf_agrees_with_exact_search():
    X, _ = _clustered(20000, 32, 50)
    exact = SimilarityIndex(10, method="exact").fit(X)
    ivf = SimilarityIndex(10, method="ivf", n_lists=64, n_probe=8).fit(X)
    q = X[:200] + 0.01
    de, ie = exact.kneighbors(q)
    di, ii = ivf.kneighbors(q)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ie, ii)])
    assert recall >= 0.95
    assert np.allclose(di[:, 0], de[:, 0], atol=1e-4)
    assert (np.diff(de, axis=1) >= -1e-6).all() and (de[:, 0] < 0.01).all()
    assert ie[:, 0].tolist() == list(range(200))  # each query finds its own vector first
    with pytest.raises(ValueError, match="NaN"):
        exact.kneighbors(np.full((1, 32), np.nan))
    with pytest.raises(ValueError, match="not fitted"):
        SimilarityIndex().kneighbors(q)


def test_anomaly_scores_rank_outliers_first():
    X, _ = _clustered(3000, 16, 5, seed=1)
    odd = np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32) * 8
    scores = anomaly_scores(np.vstack([X, odd, np.full((1, 16), np.nan)]))
    assert np.isnan(scores[-1])
    top = np.argsort(-np.nan_to_num(scores, nan=-np.inf))[:5]
    assert set(top) == set(range(3000, 3005))


@pytest.fixture(scope="module")
def preds(hp_stack, small_model, dask_client, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "p.zarr"
    return predict(hp_stack, small_model, output=out, cluster=dask_client, progress=False)


def test_similar_spirals_are_mostly_spirals(preds, hp_stack):
    cat = with_anomaly_scores(build_catalog(preds, hp_stack), preds)
    spirals = cat[cat["label"] == "spiral"]
    precision = []
    for objid in spirals["objid"].iloc[:20]:
        res = similar(preds, objid, 10, catalog=cat)
        assert res["rank"].tolist() == list(range(11)) and res["objid"].iloc[0] == objid
        assert (np.diff(res["distance"]) >= -1e-9).all()
        precision.append((res["label"].iloc[1:] == "spiral").mean())
    assert np.mean(precision) >= 0.8, precision
    # a sky position finds the nearest object; far from everything is an error
    row = cat.iloc[5]
    res = similar(preds, (row["ra"], row["dec"] + 0.5 / 3600), 3, catalog=cat)
    assert res["objid"].iloc[0] == row["objid"] and "arcsec away" in res.attrs["query"]
    with pytest.raises(ValueError, match="no object within 5 arcsec"):
        similar(preds, (row["ra"] + 1.0, row["dec"]), 3, catalog=cat)
    with pytest.raises(ValueError, match="not in the stack"):
        similar(preds, -12345, 3, catalog=cat)
    assert cat["anomaly_score"].notna().all()


def test_label_next_and_merge_returned_labels(preds, hp_stack, tmp_path):
    cat = with_anomaly_scores(build_catalog(preds, hp_stack), preds)
    cat["label"] = None  # as if none were labelled
    todo = label_next(cat, n=5)
    assert todo["reason"].tolist() == ["uncertain"] * 5 + ["anomalous"] * 5
    assert todo["objid"].is_unique
    uncertain = todo[todo["reason"] == "uncertain"]["score"]
    assert (np.diff(uncertain) >= 0).all() and uncertain.max() <= 1
    sources = hp_stack.objects()[["objid", "ra", "dec"]].reset_index(drop=True)
    todo.loc[:2, "label"] = "spiral"
    todo.loc[3, "label"] = "elliptical"
    merged = merge_labels(sources, todo)
    got = merged.set_index("objid").loc[todo["objid"].iloc[:4]]
    assert got["label"].tolist() == ["spiral"] * 3 + ["elliptical"]
    assert (got["label_origin"] == "returned").all() and got["split"].notna().all()
    assert merged["label"].notna().sum() == 4
    bad = pd.DataFrame({"objid": [-999], "label": ["spiral"]})
    with pytest.raises(ValueError, match="not in the source table"):
        merge_labels(sources, bad)
    twice = pd.DataFrame({"objid": [todo["objid"].iloc[0]] * 2, "label": ["spiral", "elliptical"]})
    with pytest.raises(ValueError, match="labelled twice"):
        merge_labels(sources, twice)


def test_similar_cli_writes_table_and_gallery(preds, hp_stack, tmp_path):
    import subprocess
    import sys

    objid = int(hp_stack.objects()["objid"].iloc[0])
    res = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "similar", str(preds.path), "--objid",
         str(objid), "-k", "4", "-o", str(tmp_path / "s.csv"), "--gallery",
         str(tmp_path / "s.png")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_csv(tmp_path / "s.csv")
    assert len(table) == 5 and table["objid"].iloc[0] == objid
    assert (tmp_path / "s.png").stat().st_size > 5000
