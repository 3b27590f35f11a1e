"""One self-contained ``report.html`` per pipeline run.

Everything a person checks after a run, on one page that opens anywhere
(figures are embedded as PNG data, no external file or script): the run's
parameters and timings, the inputs, a tile preview, cutouts of each predicted
class, training curves, the metrics in the layout of the paper's Table II
(precision, recall, FPR, accuracy, F1 per split, and for the top half most
confident), ROC and confidence curves, the confusion matrix, the most
confidently wrong, the embedding map with thumbnails, the most anomalous and
the flagged objects. A section whose step did not run says so.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SECTIONS", "write_report"]

#: section id -> heading, in page order (a test checks each renders)
SECTIONS: dict[str, str] = {
    "parameters": "Parameters",
    "timings": "Steps and timings",
    "inputs": "Inputs",
    "tiles": "Tile preview",
    "gallery": "Cutouts by predicted class",
    "training": "Training curves",
    "metrics": "Metrics (Table II layout)",
    "curves": "ROC and confidence curves",
    "confusion": "Confusion matrix",
    "wrong": "Most confidently wrong",
    "embeddings": "Embedding map",
    "anomalies": "Most anomalous objects",
    "flagged": "Flagged objects",
}


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return f"<p class='missing'>No figure: {html.escape(alt)}.</p>"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def _table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if not np.isfinite(v) else floatfmt.format(v)
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _tile_preview(index_path: Path, out: Path) -> Path | None:
    """The first tile of the index in RGB (preprocessing stretch), with RA/Dec axes."""
    from astropy.io import fits

    from catbuilder import config
    from catbuilder.evaluation.plots import plot_tile
    from catbuilder.sky.geometry import wcs_from_text
    from catbuilder.sky.tiles import TileIndex

    index = TileIndex.read_parquet(index_path)
    rgb_bands = [b for b in reversed(config.get("preprocess.rgb")) if b in index.bands]
    if not len(index) or len(rgb_bands) < 1:
        return None
    tile = index.tiles[0]
    data, zps, wcs = [], {}, None
    for b in rgb_bands:
        row = index.row(tile, b)
        if row is None:
            return None
        with fits.open(row["path"]) as hdul:
            data.append(np.asarray(hdul[int(row["hdu"])].data, dtype=np.float32))
        wcs = wcs_from_text(row["wcs"])
        zps[f"magzero_{b}"] = float(row["magzero"])
    return plot_tile(
        np.stack(data),
        pd.DataFrame([zps]),
        rgb_bands,
        wcs,
        float(row["pixel_scale"]),
        out,
        title=f"tile {tile} (RGB = {', '.join(reversed(rgb_bands))})",
        title_size=10,
        size=6,
        dpi=90,
    )


def _training_curves(history: Path, out: Path) -> Path | None:
    from catbuilder.evaluation.plots import pyplot, save_figure

    h = pd.read_csv(history)
    if h.empty:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(1, len(h) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for col, style in ((metric, "-"), (f"val_{metric}", "--")):
            if col in h:
                ax.plot(x, h[col], style, marker="o", ms=3, label=col.replace("_", " "))
        if "stage" in h and h["stage"].nunique() > 1:
            for b in np.flatnonzero(np.diff(h["stage"].to_numpy()) != 0):
                ax.axvline(b + 1.5, color="0.7", lw=0.8)
        ax.set(xlabel="epoch (all stages)", ylabel=metric)
        ax.legend(fontsize=8)
    fig.suptitle(f"training: {len(h)} epochs", fontsize=10)
    return save_figure(fig, out)


def _read_table(path: Path | None) -> pd.DataFrame | None:
    """A CSV table a step wrote, None where the step wrote none (or an empty one)."""
    if path is None or not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


#: the per-split calibration and uncertainty figures the report shows
_TRUST = (
    "ece_uncalibrated",
    "ece",
    "error_auroc_confidence",
    "error_auroc_entropy",
    "error_auroc_member_std",
)


def table_two(metrics: pd.DataFrame, confidence: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's Table II: per split, precision, recall, FPR, accuracy and F1
    (macro over classes), and the same split's top half most confident."""
    rows = []
    for group, m in metrics.groupby("group", sort=False):
        per_class = m[m["class"] != "all"]
        overall = m[m["class"] == "all"]
        acc = float(overall["accuracy"].iloc[0]) if len(overall) else np.nan
        n = overall["n"].iloc[0] if "n" in overall and len(overall) else per_class["support"].sum()
        rows.append(
            {
                "data set": f"{group}" if group != "all" else "all labelled",
                "n": int(n),
                "precision": per_class["precision"].mean(),
                "recall": per_class["recall"].mean(),
                "FPR": per_class["fpr"].mean() if "fpr" in per_class else np.nan,
                "accuracy": acc,
                "F1": per_class["f1"].mean(),
            }
        )
        if confidence is not None:
            half = confidence[(confidence["group"] == group) & (confidence["fraction"] == 0.5)]
            if len(half):
                rows.append(
                    {
                        "data set": f"{rows[-1]['data set']}, top half most confident",
                        "n": int(half["n"].iloc[0]),
                        "precision": np.nan,
                        "recall": np.nan,
                        "FPR": np.nan,
                        "accuracy": float(half["accuracy"].iloc[0]),
                        "F1": float(half["macro_f1"].iloc[0]),
                    }
                )
    return pd.DataFrame(rows)


_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.missing{color:#a33;font-style:italic} nav a{margin-right:.8em;font-size:.9em}
"""

# marks on <body> how many images decoded, so a headless browser can check the page
_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-decoded', ok.length);
});
</script>
"""


def _selftrain_rounds(outdir: Path | None) -> str:
    """Self-training's accuracy per strategy and round (mean, spread over seeds)."""
    if outdir is None or not (outdir / "rounds.csv").exists():
        return ""
    rounds = pd.read_csv(outdir / "rounds.csv")
    g = rounds.groupby(["strategy", "round"], sort=False)
    table = g["accuracy"].agg(["mean", "std", "count"]).join(g["n_added"].mean()).reset_index()
    table.columns = ["strategy", "round", "accuracy", "std over seeds", "seeds", "added"]
    return (
        "<h3>Self-training (accuracy on the survey's objects with truth, per round)</h3>"
        + _table(table, "{:.4f}")
    )


def write_report(workdir: Path, path: Path, *, plots: Path, ctx: Any = None) -> Path:
    """Write ``report.html`` of the run in ``workdir`` (its manifest and outputs).

    Parameters
    ----------
    workdir
        A pipeline run's work directory.
    path
        The HTML file to write (replaced atomically).
    plots
        Directory for the report's own figures.
    ctx
        The step context (for paths of the other steps' outputs).

    Returns
    -------
    Path
    """
    import yaml

    from catbuilder.evaluation.plots import plot_thumbnails
    from catbuilder.outputs import atomic_path
    from catbuilder.pipeline.manifest import Manifest

    plots.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(workdir)
    mdata = manifest.data if manifest else {}
    steps = mdata.get("steps", {})

    def out(step: str, key: str) -> Path | None:
        rec = steps.get(step) or {}
        rel = (rec.get("outputs") or {}).get(key)
        return workdir / rel if rel and rec.get("status") == "complete" else None

    body: dict[str, str] = {}
    pipe = mdata.get("pipeline", {})
    body["parameters"] = (
        "<h3>Pipeline file</h3><pre>"
        + html.escape(yaml.safe_dump(pipe.get("sections", {}), sort_keys=False))
        + "</pre><h3>Configuration for this run</h3><pre>"
        + html.escape(yaml.safe_dump(pipe.get("configuration", {}), sort_keys=False) or "{}")
        + "</pre><h3>Versions</h3>"
        + _table(
            pd.DataFrame(sorted(mdata.get("versions", {}).items()), columns=["package", "version"])
        )
    )
    tim = pd.DataFrame(
        [
            {
                "step": k,
                "status": v.get("status"),
                "started": v.get("started", ""),
                "seconds": float(v.get("seconds", np.nan)),
            }
            for k, v in steps.items()
            if k != "report"
        ]
    )
    body["timings"] = _table(tim, "{:.1f}") if len(tim) else "<p>No step recorded.</p>"

    cat = None
    cat_path = next(
        (workdir / p for p in ((steps.get("catalog") or {}).get("outputs") or {}).values()), None
    )
    if cat_path is not None and cat_path.exists():
        from catbuilder.catalog import read_catalog

        cat = read_catalog(cat_path)
    stack_path = out("cutouts", "stack")
    stack = None
    if stack_path is not None and stack_path.exists():
        from catbuilder.stack import open_stack

        stack = open_stack(stack_path)

    parts = []
    inputs = mdata.get("inputs", {})
    if inputs:
        parts.append(
            f"<p>{len(inputs)} input files, "
            f"{sum(v['bytes'] for v in inputs.values()) / 1e6:.1f} MB "
            "(their SHA-256 are in manifest.json).</p>"
        )
    idx = out("tiles", "index")
    if idx is not None:
        from catbuilder.sky.tiles import TileIndex

        ti = TileIndex.read_parquet(idx)
        parts.append(f"<p>{len(ti.tiles)} tiles in bands {', '.join(ti.bands)}.</p>")
    if cat is not None:
        counts = pd.DataFrame(
            {
                "objects": [len(cat)],
                "labelled": [int(cat["label"].notna().sum()) if "label" in cat else 0],
                **{
                    f"split {s}": [int((cat["split"] == s).sum())]
                    for s in ("train", "validation", "test")
                    if "split" in cat
                },
                "classified": [int(cat["predicted"].notna().sum())],
                "flagged": [int((cat["flags"] != 0).sum())],
            }
        )
        parts.append(_table(counts))
    body["inputs"] = "".join(parts) or "<p class='missing'>No inputs recorded.</p>"

    tile_png = _tile_preview(idx, plots / "tile.png") if idx is not None else None
    body["tiles"] = _img(tile_png, "tile preview")

    n_thumb = int((ctx.spec.section("report") if ctx else {}).get("thumbnails", 6))
    if cat is not None and stack is not None:
        ok = cat[cat["predicted"].notna()]
        imgs = []
        for cls in sorted(ok["predicted"].astype(str).unique()):
            top = ok[ok["predicted"].astype(str) == cls].nlargest(n_thumb, "confidence")
            titles = [f"{o}\np={c:.3f}" for o, c in zip(top["objid"], top["confidence"])]
            p = plot_thumbnails(
                stack,
                top["objid"],
                plots / f"class_{cls}.png",
                titles,
                title=f"predicted {cls}: the {len(top)} most confident",
                cols=n_thumb,
            )
            imgs.append(_img(p, f"cutouts predicted {cls}"))
        body["gallery"] = "".join(imgs)
    else:
        body["gallery"] = _img(None, "no catalog")

    hist = out("train", "history")
    rounds = _selftrain_rounds(out("selftrain", "selftrain"))
    body["training"] = (
        _img(_training_curves(hist, plots / "training.png"), "training curves")
        if hist is not None and hist.exists()
        else ("" if rounds else "<p class='missing'>No training step in this run.</p>")
    ) + rounds

    ev_dir = out("evaluate", "plots")
    metrics, confidence = out("evaluate", "metrics"), out("evaluate", "confidence")
    per_class = _read_table(metrics)
    if per_class is not None and len(per_class):  # what the evaluate step measured
        t2 = table_two(per_class, _read_table(confidence))
        cols = [
            c
            for c in ("group", "class", "precision", "recall", "fpr", "accuracy", "f1", "auc",
                      "support")
            if c in per_class
        ]  # fmt: skip
        trust = [c for c in _TRUST if c in per_class]
        overall = per_class[per_class["class"] == "all"][["group", *trust]]
        body["metrics"] = (
            "<h3>Per split (macro averages over classes)</h3>"
            + _table(t2)
            + "<h3>Per class</h3>"
            + _table(per_class[cols].astype({"support": "Int64"}, errors="ignore"))
            + (
                "<h3>Calibration (ECE) and uncertainty (ROC AUC of each uncertainty for "
                "the errors)</h3>" + _table(overall)
                if trust
                else ""
            )
        )
    else:
        body["metrics"] = "<p class='missing'>No object with a true class: no metrics.</p>"
    body["curves"] = (
        _img(ev_dir / "roc.png" if ev_dir else None, "ROC curves")
        + _img(ev_dir / "confidence.png" if ev_dir else None, "confidence curve")
        + _img(ev_dir / "reliability.png" if ev_dir else None, "reliability diagram")
    )
    body["confusion"] = _img(ev_dir / "confusion.png" if ev_dir else None, "confusion matrix")
    body["wrong"] = _img(ev_dir / "gallery.png" if ev_dir else None, "most confidently wrong")
    emb_dir = out("embeddings", "plots")
    body["embeddings"] = _img(emb_dir / "embedding_map.png" if emb_dir else None, "embedding map")

    if cat is not None and "anomaly_score" in cat and stack is not None:
        top = cat[cat["anomaly_score"].notna()].nlargest(12, "anomaly_score")
        titles = [
            f"{o}\n{p} s={s:.3f}"
            for o, p, s in zip(top["objid"], top["predicted"], top["anomaly_score"])
        ]
        p = plot_thumbnails(
            stack,
            top["objid"],
            plots / "anomalies.png",
            titles,
            title="highest anomaly scores (isolation forest on embeddings)",
        )
        body["anomalies"] = _img(p, "most anomalous")
    else:
        body["anomalies"] = "<p class='missing'>No anomaly scores in the catalog.</p>"

    if cat is not None:
        from catbuilder.stack.flags import FLAG_BITS

        flag_cols = [f for f in FLAG_BITS if f in cat]
        counts = pd.DataFrame(
            [{"flag": f, "objects": int(cat[f].astype(bool).sum())} for f in flag_cols]
        )
        flagged = cat[cat["flags"] != 0]
        shown = flagged[["objid", "ra", "dec", *[f for f in flag_cols]]].head(50)
        body["flagged"] = (
            _table(counts)
            + f"<p>{len(flagged)} flagged objects"
            + (", the first 50:" if len(flagged) > 50 else ":")
            + "</p>"
            + (_table(shown, "{:.5f}") if len(shown) else "<p>none</p>")
        )
    else:
        body["flagged"] = "<p class='missing'>No catalog.</p>"

    name = html.escape(str(mdata.get("name", workdir.name)))
    nav = "".join(f"<a href='#{k}'>{v}</a>" for k, v in SECTIONS.items())
    sections = "".join(
        f"<section id='{k}'><h2>{v}</h2>{body.get(k, '')}</section>" for k, v in SECTIONS.items()
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>catbuilder run {name}</title><style>{_CSS}</style></head><body>"
        f"<h1>catbuilder run: {name}</h1>"
        f"<p>{html.escape(str(workdir))}; started {html.escape(str(mdata.get('started', '')))}; "
        f"catbuilder {html.escape(str(mdata.get('versions', {}).get('catbuilder', '')))}</p>"
        f"<nav>{nav}</nav>{sections}"
        f"<script type='application/json' id='manifest'>"
        f"{html.escape(json.dumps({'steps': list(steps)}))}</script>"
        f"{_CHECK}</body></html>"
    )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
