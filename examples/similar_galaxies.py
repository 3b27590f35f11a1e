"""Embeddings as a product: similar galaxies, anomalies, a t-SNE map, what to label next.

    python examples/similar_galaxies.py [WORKDIR] [--n-objects 3000]

Makes a des-like mock survey, trains the small CNN on its Galaxy-Zoo-like
high-probability labels, predicts every object with embeddings, and then

* asks for the 10 objects most like a spiral (and like an elliptical), and
  reports precision@10 against the mock's truth over many such queries;
* scores anomalies (an isolation forest over the embeddings) and draws the
  top-ranked, which on the mock are mostly stars and blends;
* draws the paper's t-SNE map with cutout thumbnails;
* exports what to label next (most uncertain, most anomalous) and folds a
  pretend set of returned labels (the truth) into the source table.

Figures and tables go to WORKDIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-similar"))
    ap.add_argument("--n-objects", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.embeddings import label_next, merge_labels, similar, with_anomaly_scores
    from catbuilder.evaluation.embeddings import cluster_embeddings
    from catbuilder.evaluation.plots import plot_embedding_map, plot_thumbnails
    from catbuilder.infer import predict
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey
    from catbuilder.training import train

    work = args.workdir
    sdir = work / "survey"
    survey = make_survey(sdir, presets="des-like", n_objects=args.n_objects, seed=11, reuse=True)
    des = survey["des-like"]
    sources = des.read_sources().rename(columns={"cls": "truth"})  # the mock's true class
    labelled = label_sources(survey.read_labels(), des.sources, keep_unlabelled=True)
    if not (work / "all.zarr").exists():
        build_stack(labelled, des.directory / "tiles", work / "all.zarr", size=64)
    stack = open_stack(work / "all.zarr")
    model_dir = work / "small-cnn.model"
    if not model_dir.exists():
        res = train(stack, "keras.small-cnn", params={"input_size": 64, "epochs": args.epochs})
        res.model.save(model_dir)
    preds = predict(stack, model_dir, output=work / "all.predictions.zarr", workers=2)
    cat = with_anomaly_scores(build_catalog(preds, stack), preds)
    cat["truth"] = sources.set_index("objid")["truth"].reindex(cat["objid"]).to_numpy()
    write_catalog(cat, work / "catalog.parquet")

    truth = cat.set_index("objid")["truth"]

    def more_like(objid):
        res = similar(preds, objid, 10, catalog=cat)
        res["truth"] = truth.reindex(res["objid"]).to_numpy()
        return res

    # more like this: precision@10 against the truth, for spirals and ellipticals
    rng = np.random.default_rng(0)
    for cls in ("spiral", "elliptical"):
        ids = cat.loc[(cat["truth"] == cls) & (cat["flags"] == 0), "objid"].to_numpy()
        chosen = rng.choice(ids, min(args.queries, len(ids)), replace=False)
        precision = [(more_like(o).iloc[1:]["truth"] == cls).mean() for o in chosen]
        print(f"precision@10 for {cls} queries: {np.mean(precision):.3f} ({len(chosen)} queries)")
        res = more_like(chosen[0])
        titles = [
            f"{'query' if r == 0 else f'#{r}'}: {t}" for r, t in zip(res["rank"], res["truth"])
        ]
        plot_thumbnails(stack, res["objid"], work / f"similar_{cls}.png", titles,
                        title=f"10 nearest embeddings to a {cls} (true class shown)")  # fmt: skip

    top = cat.nlargest(18, "anomaly_score")
    print("true classes of the 18 most anomalous:", top["truth"].value_counts().to_dict())
    plot_thumbnails(stack, top["objid"], work / "anomalies.png",
                    [f"{t} {s:.2f}" for t, s in zip(top["truth"], top["anomaly_score"])],
                    title="most anomalous embeddings (true class, score)")  # fmt: skip

    emb = preds.embeddings()
    ok = cat["predicted"].notna().to_numpy()
    clusters = cluster_embeddings(emb[ok], cat.loc[ok, "predicted"], max_points=1500)
    plot_embedding_map(clusters.coords, stack, cat.loc[ok, "objid"].to_numpy(),
                       work / "tsne_map.png", labels=cat.loc[ok, "predicted"],
                       title="t-SNE of the CNN embeddings, by predicted class")  # fmt: skip

    todo = label_next(cat, n=25)
    todo.to_csv(work / "label_next.csv", index=False)
    plot_thumbnails(stack, todo["objid"], work / "label_next.png",
                    [f"{r} {p}" for r, p in zip(todo["reason"], todo["predicted"])],
                    title="label these next: most uncertain, then most anomalous")  # fmt: skip
    todo["label"] = cat.set_index("objid")["truth"].reindex(todo["objid"]).to_numpy()
    merged = merge_labels(labelled, todo.dropna(subset=["label"]))
    n_new = int((merged["label_origin"] == "returned").sum())
    print(f"label next: {len(todo)} objects exported; {n_new} returned labels merged")
    print(f"figures and tables in {work}")


if __name__ == "__main__":
    main()
