"""End-to-end runs: ``catbuilder demo`` on an embedded synthetic survey.

The paper's workflow (Khan, Huerta et al. 2019) in miniature, every step a
public API call that a script could make the same way:

1. a GalSim mock of two surveys of one sky (``sdss-like`` with Galaxy-Zoo-like
   votes, ``des-like`` deeper and wider, with an unlabelled area);
2. the Galaxy Zoo high-probability labels carried onto the ``des-like``
   sources by crossmatch;
3. g,r,i cutouts of every ``des-like`` source into a chunked Zarr stack;
4. a small CNN trained on the labelled training split;
5. inference over every object on a Dask LocalCluster, into a catalog
   (Parquet) with class probabilities, embeddings and flags;
6. evaluation on the held-out test split (metrics, ROC, the paper's
   "top-half" confidence figures, a gallery of the most confidently wrong),
   and a t-SNE of the embeddings of the unlabelled objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "demo"]


@dataclass
class DemoResult:
    """What :func:`demo` made.

    Attributes
    ----------
    outdir
        The directory holding everything below.
    paths
        ``survey``, ``stack``, ``model``, ``predictions``, ``catalog``,
        ``metrics`` and ``plots``.
    catalog
        The catalog as a DataFrame (one row per ``des-like`` source).
    metrics
        The tidy per-class metrics table of the test split.
    test_accuracy
        Accuracy on the held-out labelled objects.
    embedding_agreement
        Fraction of unlabelled objects whose t-SNE/k-means cluster's majority
        class is their own predicted class.
    timings
        Seconds per step.
    """

    outdir: Path
    paths: dict[str, Path]
    catalog: Any
    metrics: Any
    test_accuracy: float
    embedding_agreement: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        cat = self.catalog
        labelled = cat["label"].notna() if "label" in cat else cat["objid"] < 0
        counts = cat["predicted"].dropna().value_counts()
        lines = [
            f"catbuilder demo in {self.outdir}",
            f"  catalog      {self.paths['catalog']}  ({len(cat)} objects, "
            f"{int(labelled.sum())} with Galaxy Zoo labels, {int((~labelled).sum())} without)",
            "  predicted    " + ", ".join(f"{k} {v}" for k, v in counts.items()),
            f"  flagged      {int((cat['flags'] != 0).sum())} objects "
            f"(off footprint {int(cat['off_footprint'].sum())}, edge {int(cat['edge'].sum())})",
            f"  test split   accuracy {self.test_accuracy:.3f}",
            f"  embeddings   t-SNE + k-means agree with predictions for "
            f"{self.embedding_agreement:.0%} of unlabelled objects",
            f"  plots        {self.paths['plots']}",
            "  time         "
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items())
            + f" (total {sum(self.timings.values()):.0f} s)",
        ]
        return "\n".join(lines)


def demo(
    outdir: str | Path = "catbuilder-demo",
    n_objects: int = 600,
    seed: int = 42,
    *,
    epochs: int = 12,
    workers: int | None = 2,
    progress: bool = True,
) -> DemoResult:
    """Run catbuilder end to end on a mock survey it makes itself.

    Parameters
    ----------
    outdir
        Where everything is written; a run in an existing directory reuses
        the survey and the stack it finds there.
    n_objects
        Size of the mock survey (both presets together).
    seed
        Random seed of the survey.
    epochs
        Training epochs of the model (``train.model``, the small CNN by default).
    workers
        Dask worker processes for inference (a LocalCluster on 127.0.0.1).
    progress
        Show progress bars.

    Returns
    -------
    DemoResult
    """
    import numpy as np

    from catbuilder import config
    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.evaluate import evaluate
    from catbuilder.evaluate.embeddings import cluster_embeddings, plot_embedding
    from catbuilder.infer import predict
    from catbuilder.saved_models import save_model
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack
    from catbuilder.synth import make_survey, open_survey
    from catbuilder.train import train

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "survey": outdir / "survey",
        "stack": outdir / "des.zarr",
        "model": outdir / "model",
        "predictions": outdir / "des.predictions.zarr",
        "catalog": outdir / "catalog.parquet",
        "metrics": outdir / "metrics.csv",
        "plots": outdir / "plots",
    }
    timings: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        if progress:
            print(f"[demo] {name} done in {timings[name]:.0f} s", flush=True)

    t0 = time.perf_counter()
    if (paths["survey"] / "survey.json").exists():
        survey = open_survey(paths["survey"])
    else:
        survey = make_survey(
            paths["survey"], n_objects=n_objects, seed=seed, progress=progress, preview=True
        )
    step("survey", t0)

    t0 = time.perf_counter()
    des = survey["des-like"]
    table = label_sources(survey.read_labels(), des.sources, sample="hp", keep_unlabelled=True)
    stack = build_stack(table, des.directory / "tiles", paths["stack"], size=64, progress=progress)
    step("cutouts", t0)

    t0 = time.perf_counter()
    with config.set({"train.batch-size": 32}):
        result = train(
            stack,
            config.get("train.model"),
            checkpoint_dir=outdir / "model.checkpoints",
            params={"epochs": epochs},
        )
    save_model(result.model, paths["model"])
    step("training", t0)

    t0 = time.perf_counter()
    preds = predict(
        stack,
        paths["model"],
        output=paths["predictions"],
        cluster="local",
        workers=workers,
        overwrite=True,
        progress=progress,
    )
    catalog = build_catalog(preds, stack)
    write_catalog(catalog, paths["catalog"])
    step("inference", t0)

    t0 = time.perf_counter()
    test = catalog[catalog["split"] == "test"]
    ev = evaluate(test, by=None)
    ev.table().to_csv(paths["metrics"], index=False)
    ev.plot(paths["plots"], stack=stack)
    unlabelled = np.flatnonzero(
        catalog["label"].isna().to_numpy() & catalog["predicted"].notna().to_numpy()
    )
    emb = preds.embeddings()[unlabelled]
    pred_u = catalog["predicted"].to_numpy()[unlabelled]
    clusters = cluster_embeddings(emb, pred_u, n_clusters=len(preds.classes), seed=0)
    plot_embedding(
        clusters,
        pred_u,
        paths["plots"] / "embeddings_tsne.png",
        title="unlabelled des-like objects: t-SNE of the CNN embeddings",
        legend_title="predicted class",
    )
    step("evaluation", t0)

    acc = float((ev.data["_truth"].astype(str) == ev.data["predicted"].astype(str)).mean())
    res = DemoResult(
        outdir=outdir,
        paths=paths,
        catalog=catalog,
        metrics=ev.table(),
        test_accuracy=acc,
        embedding_agreement=float(clusters.agreement),
        timings=timings,
    )
    print(res.summary())
    return res
