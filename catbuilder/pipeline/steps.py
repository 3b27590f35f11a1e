"""The steps of a pipeline run: each one public API call (or a few), its outputs
at fixed places in the work directory, and the parameters that decide whether
an existing output can be kept.

A step function takes the :class:`~catbuilder.pipeline.run.StepContext` and
returns the paths it wrote. ``ctx.replace`` is true when earlier outputs of
the step were made with other parameters (they are catbuilder's own, recorded
in the manifest, and are replaced); otherwise an interrupted output is resumed
where the underlying call can (stacks, predictions, training checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catbuilder.pipeline.context import StepContext

__all__ = ["STEPS", "STEP_NAMES", "Step", "step_params"]

_EXT = {"parquet": "parquet", "fits": "fits", "votable": "vot", "hats": "hats"}


def catalog_formats(cfg_format: Any) -> list[str]:
    return [cfg_format] if isinstance(cfg_format, str) else list(cfg_format)


def catalog_paths(formats: list[str]) -> dict[str, str]:
    return {f"catalog.{f}": f"catalog.{_EXT[f]}" for f in formats}


def step_params(name: str, spec) -> dict[str, Any]:
    """What a step's outputs depend on besides its inputs and the steps before it."""
    from catbuilder import config

    cfg = lambda *keys: {k: config.get(k) for k in keys}  # noqa: E731
    model = spec.section("model")
    if name == "mock":
        return {"mock": spec.section("mock"), **cfg("synth")}
    if name == "tiles":
        return cfg("tiles")
    if name == "labels":
        inputs = spec.section("inputs")
        return {
            "sample": inputs.get("label-sample", "hp"),
            **cfg("selection", "crossmatch.radius-arcsec", "sources"),
        }
    if name == "cutouts":
        return cfg("cutouts", "sources")
    if name == "train":
        return {
            "plugin": model.get("plugin") or config.get("train.model"),
            "params": model.get("params") or {},
            "distributed": bool(model.get("distributed")),
            **cfg("train", "preprocess", *config.plugin_sections()),
        }
    if name == "selftrain":
        return {
            "section": spec.section("selftrain"),
            "plugin": model.get("plugin") or config.get("train.model"),
            "params": model.get("params") or {},
            **cfg("selftrain", "train", "preprocess", "cutouts", *config.plugin_sections()),
        }
    if name == "predict":
        return cfg("infer", "preprocess")
    if name == "catalog":
        return {"anomaly": bool(spec.section("embeddings").get("anomaly", True)), **cfg("catalog")}
    if name == "evaluate":
        return {"split": spec.section("evaluate").get("split", "test")}
    if name == "embeddings":
        return {"embeddings": spec.section("embeddings")}
    if name == "report":
        return {"report": spec.section("report"), "name": spec.name}
    raise KeyError(name)


# -- the steps ----------------------------------------------------------------


def _mock(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.synth import open_survey

    out = ctx.path("survey")
    if (out / "survey.json").exists() and not ctx.replace:
        survey = open_survey(out)  # finished before an interruption: nothing to redo
    else:
        ctx.remove_own(out)  # an earlier mock of this run (recorded in the manifest), if any
        survey = _make_mock(ctx, out)
    truth = survey.read_truth()
    ctx.log(
        f"{len(truth)} objects (seed {survey.params.get('seed')}): "
        + ", ".join(f"{k} {len(v.tiles)} tiles" for k, v in survey.surveys.items()),
        summary=True,
    )
    return {"survey": out}


def _make_mock(ctx: StepContext, out: Path):
    from catbuilder.synth import make_survey

    m = ctx.spec.section("mock")
    return make_survey(
        out,
        presets=m.get("presets"),
        n_objects=m.get("n-objects"),
        seed=m.get("seed"),
        regime=m.get("regime"),
        cluster=ctx.client(),
        progress=ctx.progress,
        preview=True,
    )


def _tiles(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.sky.tiles import TileIndex

    inputs = ctx.spec.tile_inputs()
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise ctx.error(f"inputs.tiles: nothing at {', '.join(missing[:3])}")
    index = TileIndex.build(inputs, progress=ctx.progress)
    ctx.log(f"{len(index.tiles)} tiles, bands {','.join(index.bands)}", summary=True)
    for path, why in index.problems:
        ctx.log(f"skipped {path}: {why}")
    if not len(index):
        raise ctx.error("inputs.tiles: no usable FITS tile found")
    return {"index": index.to_parquet(ctx.path("index"))}


def _labels(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.outputs import write_parquet
    from catbuilder.sky.tables import read_sources

    inputs = ctx.spec.section("inputs")
    sources = ctx.spec.resolve(inputs["sources"])
    if inputs.get("labels"):
        from catbuilder.sky.selection import label_sources

        table = label_sources(
            ctx.spec.resolve(inputs["labels"]),
            sources,
            sample=inputs.get("label-sample", "hp"),
            keep_unlabelled=True,
        )
        n = int((table["label"].fillna("").astype(str) != "").sum())
        ctx.log(f"{n} of {len(table)} sources labelled by crossmatch", summary=True)
    else:
        table = read_sources(sources)
        ctx.log(f"no label table; {len(table)} sources", summary=True)
    return {"sources": write_parquet(table, ctx.path("sources"), "sources")}


def _cutouts(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.stack import build_stack

    stack = build_stack(
        ctx.input("labels", "sources"),
        ctx.input("tiles", "index"),
        ctx.path("stack"),
        overwrite=ctx.replace,
        cluster=ctx.client(),
        progress=ctx.progress,
    )
    ctx.log(f"{len(stack)} objects, {stack.size} px, bands {','.join(stack.bands)}", summary=True)
    return {"stack": Path(stack.path)}


def _train(ctx: StepContext) -> dict[str, Path]:
    from catbuilder import config
    from catbuilder.stack import open_stack
    from catbuilder.training import train

    model = ctx.spec.section("model")
    ckpt = ctx.path("checkpoints")  # resume=False: the plugin starts its checkpoints afresh
    stack = open_stack(ctx.input("cutouts", "stack"))
    if not stack.classes:
        raise ctx.error(
            "train: the stack has no labelled objects; give inputs.labels (or model.saved)"
        )
    result = train(
        stack,
        model.get("plugin") or config.get("train.model"),
        params=model.get("params") or None,
        checkpoint_dir=ckpt,
        resume=not ctx.replace,
        cluster=ctx.client() if model.get("distributed") else None,
        output=ctx.path("model"),
    )
    history = ctx.path("history")
    from catbuilder.outputs import atomic_path

    with atomic_path(history) as tmp:
        result.history.to_csv(tmp, index=False)
    last = result.history.iloc[-1]
    ctx.log(
        f"{len(result.history)} epochs; last: "
        + ", ".join(
            f"{k} {last[k]:.4f}" for k in ("loss", "accuracy", "val_accuracy") if k in last
        ),
        summary=True,
    )
    return {
        "model": result.path,
        "history": history,
        "checkpoints": ckpt,
    }


def _selftrain(ctx: StepContext) -> dict[str, Path]:
    import numpy as np

    from catbuilder.selftrain import self_train
    from catbuilder.sky.selection import label_sources
    from catbuilder.sky.tiles import TileIndex
    from catbuilder.stack import build_stack, open_stack

    section = ctx.spec.section("selftrain")
    given = ctx.spec.labelled_inputs()
    b = open_stack(ctx.input("cutouts", "stack"))
    a_path = ctx.path("labelled")
    index = TileIndex.build(ctx.spec.tile_inputs("selftrain"), progress=ctx.progress)
    if not len(index):
        raise ctx.error("selftrain.labelled.tiles: no usable FITS tile found")
    table = label_sources(
        ctx.spec.resolve(given["labels"]),
        ctx.spec.resolve(given["sources"]),
        sample=given.get("label-sample", "hp"),
    )
    a = build_stack(
        table, index, a_path, size=b.size, overwrite=ctx.replace, cluster=ctx.client(),
        progress=ctx.progress,
    )  # fmt: skip
    model = ctx.spec.section("model")
    outdir = ctx.path("selftrain")
    if ctx.replace:
        ctx.remove_own(outdir)
    res = self_train(
        a,
        b,
        model.get("plugin"),
        outdir=outdir,
        params=model.get("params") or None,
        rounds=section.get("rounds"),
        per_class=section.get("per-class"),
        threshold=section.get("threshold"),
        strategy=section.get("strategy"),
        seeds=section.get("seeds"),
        student_params=section.get("student-params"),
        retrain=section.get("retrain"),
        evaluation=section.get("evaluation-split"),
        curriculum_column=section.get("curriculum-column"),
        cluster=ctx.client(),
        progress=ctx.progress,
    )
    # the survey is classified by the first strategy's last round of the first seed
    first = res.rounds[res.rounds["strategy"] == res.strategies[0]]
    first = first[first["seed"] == first["seed"].iloc[0]]
    last = first.sort_values("round").iloc[-1]
    gain, spread = res.gain(strategy=res.strategies[0])
    scored = (
        f"accuracy gain on the survey's truth {gain:+.4f} (std {spread:.4f})"
        if np.isfinite(gain)
        else "the survey has no objects with truth to score the rounds on"
    )
    ctx.log(
        f"{len(a)} labelled objects, {int(first['round'].max())} rounds of "
        f"{', '.join(res.strategies)}; classifying with seed {last['seed']} round "
        f"{last['round']}; {scored}",
        summary=True,
    )
    return {"labelled": a_path, "selftrain": outdir, "model": Path(last["model"])}


def _predict(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.infer import predict

    preds = predict(
        ctx.input("cutouts", "stack"),
        ctx.model_path(),
        output=ctx.path("predictions"),
        cluster=ctx.client(),
        overwrite=ctx.replace,
        progress=ctx.progress,
    )
    ctx.log(f"{len(preds)} objects, classes {', '.join(preds.classes)}", summary=True)
    return {"predictions": ctx.path("predictions")}


def _catalog(ctx: StepContext) -> dict[str, Path]:
    from catbuilder import config
    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.predictions import open_predictions

    anomaly = bool(ctx.spec.section("embeddings").get("anomaly", True))
    preds = open_predictions(ctx.input("predict", "predictions"))
    cat = build_catalog(preds, ctx.input("cutouts", "stack"))
    if anomaly and "embeddings" in preds.ds:
        from catbuilder.embeddings import with_anomaly_scores

        cat = with_anomaly_scores(cat, preds)
    out = {}
    for fmt in catalog_formats(config.get("catalog.format")):
        key = f"catalog.{fmt}"
        out[key] = write_catalog(cat, ctx.path(key), format=fmt)
    counts = cat["predicted"].dropna().value_counts()
    ctx.log(
        f"{len(cat)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())}, "
        f"flagged {int((cat['flags'] != 0).sum())}) -> "
        + ", ".join(str(p.name) for p in out.values()),
        summary=True,
    )
    return out


def _evaluate(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.evaluation import evaluate
    from catbuilder.outputs import atomic_path

    cat = ctx.catalog()
    if "label" not in cat or not cat["label"].notna().any():
        ctx.log("no object has a true class; nothing to evaluate", summary=True)
        metrics = cat.iloc[:0][[]]
        with atomic_path(ctx.path("metrics")) as tmp:
            metrics.to_csv(tmp, index=False)
        return {"metrics": ctx.path("metrics")}
    ev = evaluate(cat, by="split")
    with atomic_path(ctx.path("metrics")) as tmp:
        ev.table().to_csv(tmp, index=False)
    with atomic_path(ctx.path("confidence")) as tmp:  # what the report shows beside it
        ev.confidence.to_csv(tmp, index=False)
    split = ctx.spec.section("evaluate").get("split", "test")
    ev_split = evaluate(cat[cat["split"] == split] if split != "all" else cat, by=None)
    if ev_split.data.empty:
        ctx.log(f"no labelled object in the {split} split: no figures", summary=True)
        return {"metrics": ctx.path("metrics")}
    plots = ctx.path("plots")
    ev_split.plot(plots, stack=ctx.input("cutouts", "stack"))
    ctx.log(ev.summary().replace("\n", "; "))
    ctx.log(f"{split} split: {ev_split.headline()}", summary=True)
    return {"metrics": ctx.path("metrics"), "confidence": ctx.path("confidence"), "plots": plots}


def _embeddings(ctx: StepContext) -> dict[str, Path]:
    import numpy as np
    import pandas as pd

    from catbuilder.evaluation.embeddings import cluster_embeddings
    from catbuilder.evaluation.plots import plot_embedding_map
    from catbuilder.outputs import write_parquet
    from catbuilder.predictions import open_predictions
    from catbuilder.stack import open_stack

    emb_cfg = ctx.spec.section("embeddings")
    preds = open_predictions(ctx.input("predict", "predictions"))
    if "embeddings" not in preds.ds:
        raise ctx.error("embeddings: the predictions have no embeddings (infer.embed is false)")
    cat = ctx.catalog()
    ok = np.flatnonzero(cat["predicted"].notna().to_numpy())
    pred = cat["predicted"].to_numpy()[ok].astype(str)
    clusters = cluster_embeddings(
        preds.embeddings()[ok],
        pred,
        n_clusters=len(preds.classes),
        method=emb_cfg.get("method", "tsne"),
        max_points=int(emb_cfg.get("max-points", 2000)),
        seed=0,
    )
    drawn = np.isfinite(clusters.coords).all(axis=1)
    table = pd.DataFrame(
        {
            "objid": cat["objid"].to_numpy()[ok][drawn],
            "x": clusters.coords[drawn, 0],
            "y": clusters.coords[drawn, 1],
            "cluster": clusters.clusters[drawn],
            "predicted": pred[drawn],
        }
    )
    out = write_parquet(table, ctx.path("map"), "embedding map")
    plots = ctx.path("plots")
    plots.mkdir(parents=True, exist_ok=True)
    plot_embedding_map(
        table[["x", "y"]].to_numpy(),
        open_stack(ctx.input("cutouts", "stack")),
        table["objid"],
        plots / "embedding_map.png",
        labels=table["predicted"],
        title=f"{emb_cfg.get('method', 'tsne')} of the CNN embeddings, coloured by predicted class",
    )
    ctx.log(
        f"{emb_cfg.get('method', 'tsne')} of {len(table)} objects; k-means clusters agree "
        f"with predictions for {clusters.agreement:.0%}",
        summary=True,
    )
    return {"map": out, "plots": plots}


def _report(ctx: StepContext) -> dict[str, Path]:
    from catbuilder.pipeline.report import write_report

    path = write_report(ctx.workdir, ctx.path("report"), plots=ctx.path("plots"), ctx=ctx)
    ctx.log(str(path), summary=True)
    return {"report": path, "plots": ctx.path("plots")}


@dataclass(frozen=True)
class Step:
    """One row of the step table: what the step does, reads and writes."""

    name: str
    run: Callable[[StepContext], dict[str, Path]]
    #: the steps before it whose outputs it uses
    reads: tuple[str, ...]
    #: where it writes, relative to the work directory (the catalog: one file
    #: per format, catalog.<ext>)
    outputs: dict[str, str] = field(default_factory=dict)
    #: outputs that are directories it may delete whole (their files are listed
    #: in the manifest, and only those are deleted)
    listed: tuple[str, ...] = ()


_MAKERS = (
    Step("mock", _mock, (), {"survey": "mock"}, listed=("survey",)),
    Step("tiles", _tiles, ("mock",), {"index": "tiles.parquet"}),
    Step("labels", _labels, ("mock",), {"sources": "sources.parquet"}),
    Step("cutouts", _cutouts, ("tiles", "labels"), {"stack": "stack.zarr"}),
    Step("train", _train, ("cutouts",),
         {"model": "model", "history": "history.csv", "checkpoints": "model.checkpoints"}),
    Step("selftrain", _selftrain, ("mock", "cutouts"),
         {"labelled": "selftrain-labelled.zarr", "selftrain": "selftrain", "model": "selftrain"},
         listed=("selftrain",)),
    Step("predict", _predict, ("cutouts", "train", "selftrain"),
         {"predictions": "predictions.zarr"}),
    Step("catalog", _catalog, ("predict", "cutouts")),
    Step("evaluate", _evaluate, ("catalog", "cutouts"),
         {"metrics": "metrics.csv", "confidence": "confidence.csv",
          "plots": "plots/evaluation"}),
    Step("embeddings", _embeddings, ("catalog", "predict", "cutouts"),
         {"map": "embeddings.parquet", "plots": "plots/embeddings"}),
)  # fmt: skip

#: every step, in the order a run makes them: the one table the pipeline file's
#: schema, the planner, the runner and the report read (the report reads them all)
STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        *_MAKERS,
        Step("report", _report, tuple(s.name for s in _MAKERS),
             {"report": "report.html", "plots": "plots/report"}),
    )
}  # fmt: skip
STEP_NAMES = tuple(STEPS)
