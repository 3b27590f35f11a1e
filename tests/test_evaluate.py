"""Metrics, curves and plots of a classified catalog."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from catbuilder.evaluation import confidence_curve, evaluate, per_class_metrics


def _random(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(["elliptical", "spiral"], n)
    s = np.clip((y == "spiral") * 0.6 + rng.normal(0.2, 0.25, n), 0, 1)
    return y, np.column_stack([1 - s, s])


def test_metrics_agree_with_scikit_learn():
    y, proba = _random()
    classes = ["elliptical", "spiral"]
    m = per_class_metrics(y, proba, classes)
    get = {(c, k): v for c, k, v in zip(m["class"], m["metric"], m["value"])}
    pred = np.array(classes)[proba.argmax(1)]
    assert get[("all", "accuracy")] == pytest.approx(skm.accuracy_score(y, pred))
    for i, c in enumerate(classes):
        assert get[(c, "precision")] == pytest.approx(skm.precision_score(y, pred, pos_label=c))
        assert get[(c, "recall")] == pytest.approx(skm.recall_score(y, pred, pos_label=c))
        assert get[(c, "f1")] == pytest.approx(skm.f1_score(y, pred, pos_label=c))
        assert get[(c, "auc")] == pytest.approx(skm.roc_auc_score(y == c, proba[:, i]))
        tn, fp, _, _ = skm.confusion_matrix(y == c, pred == c).ravel()
        assert get[(c, "specificity")] == pytest.approx(tn / (tn + fp))
        assert get[(c, "fpr")] == pytest.approx(fp / (fp + tn))
    assert get[("all", "macro_f1")] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_confidence_curve_keeps_the_most_confident():
    y, proba = _random()
    curve = confidence_curve(y, proba, ["elliptical", "spiral"], fractions=(0.5, 1.0))
    conf = proba.max(1)
    top = np.argsort(-conf, kind="stable")[:250]
    pred = np.array(["elliptical", "spiral"])[proba.argmax(1)]
    assert curve.loc[0, "n"] == 250
    assert curve.loc[0, "accuracy"] == pytest.approx((pred[top] == y[top]).mean())
    assert curve.loc[0, "accuracy"] >= curve.loc[1, "accuracy"]
    assert curve.loc[1, "accuracy"] == pytest.approx((pred == y).mean())


def test_evaluate_catalog_against_truth(hp_stack, small_model, dask_client, tmp_path):
    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.infer import predict

    cat = build_catalog(
        predict(
            hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client, progress=False
        )
    )
    ev = evaluate(cat)  # against the stack's own labels, by split
    assert set(ev.metrics["group"]) == {"all", "train", "validation", "test"}
    t = ev.table()
    acc = t[(t["group"] == "all") & (t["class"] == "all")]["accuracy"].iloc[0]
    assert acc == pytest.approx((cat["predicted"] == cat["label"]).mean())
    cm = ev.confusion[ev.confusion["group"] == "all"]
    assert cm["count"].sum() == len(cat)
    assert (ev.roc["tpr"].between(0, 1)).all()
    assert "top half" in ev.summary()
    # a truth table joined on objid gives the same answer
    truth = pd.DataFrame({"objid": cat["objid"], "cls": cat["label"]})
    path = write_catalog(cat, tmp_path / "c.parquet")
    ev2 = evaluate(path, truth, truth_col="cls", by=None)
    a2 = ev2.table().query("group == 'all' and `class` == 'all'")["accuracy"].iloc[0]
    assert a2 == pytest.approx(acc)
    with pytest.raises(ValueError, match="no column 'kind'"):
        evaluate(cat, truth, truth_col="kind")
    import matplotlib.image as mpimg

    for p in ev.plot(tmp_path / "plots", stack=hp_stack):
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.std() > 0.02, p


def test_embeddings_form_one_cluster_per_class(hp_stack, small_model, dask_client, tmp_path):
    from catbuilder.catalog import build_catalog
    from catbuilder.evaluation.embeddings import cluster_embeddings, plot_embedding
    from catbuilder.infer import predict

    preds = predict(
        hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client, progress=False
    )
    cat = build_catalog(preds)
    res = cluster_embeddings(preds.embeddings(), cat["predicted"], max_points=800)
    assert res.coords.shape == (len(cat), 2)
    # one cluster holding everything scores the majority fraction: the clusters
    # must get at least halfway from that to a perfect split (the model here is
    # trained for four epochs at 32 px)
    majority = cat["predicted"].value_counts(normalize=True).max()
    assert res.agreement >= majority + 0.5 * (1 - majority)
    assert plot_embedding(res, cat["predicted"], tmp_path / "t.png").exists()
