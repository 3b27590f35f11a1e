"""Classification metrics as tidy tables, as reported in Khan et al. (2019).

Per class (one class against the rest): precision, recall, specificity, F1,
false-positive rate, ROC AUC and support; overall: accuracy and macro F1; and
accuracy as a function of the fraction of most confident objects kept (the
paper's Table II "top half" figures and Fig. 6); calibration (ECE) and how
well per-object uncertainty finds the errors
(:mod:`catbuilder.evaluation.reliability`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Evaluation", "confidence_curve", "evaluate", "per_class_metrics", "roc_table"]

DEFAULT_FRACTIONS = tuple(np.round(np.arange(0.1, 1.01, 0.1), 2))


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Tidy metrics: one row per (class, metric), plus overall rows (class "all")."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)].astype(str)
    rows = []
    f1s = []
    for i, c in enumerate(classes):
        t, p = y_true == c, y_pred == c
        tp, fp = int((t & p).sum()), int((~t & p).sum())
        fn, tn = int((t & ~p).sum()), int((~t & ~p).sum())
        precision = tp / (tp + fp) if tp + fp else np.nan
        recall = tp / (tp + fn) if tp + fn else np.nan
        spec = tn / (tn + fp) if tn + fp else np.nan
        f1 = 2 * precision * recall / (precision + recall) if (precision + recall) else np.nan
        auc = roc_auc_score(t, proba[:, i]) if 0 < t.sum() < len(t) else np.nan
        f1s.append(f1)
        for name, v in (
            ("precision", precision),
            ("recall", recall),
            ("specificity", spec),
            ("f1", f1),
            ("fpr", 1 - spec if spec == spec else np.nan),
            ("auc", auc),
            ("support", int(t.sum())),
        ):
            rows.append({"class": c, "metric": name, "value": float(v)})
    rows.append(
        {
            "class": "all",
            "metric": "accuracy",
            "value": float((y_true == y_pred).mean()) if len(y_true) else np.nan,
        }
    )
    rows.append(
        {
            "class": "all",
            "metric": "macro_f1",
            "value": float(np.nanmean(f1s)) if len(y_true) else np.nan,
        }
    )
    rows.append({"class": "all", "metric": "n", "value": float(len(y_true))})
    return pd.DataFrame(rows)


def roc_table(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """ROC curve points per class: ``class, fpr, tpr, threshold``."""
    from sklearn.metrics import roc_curve

    y_true = np.asarray(y_true).astype(str)
    parts = []
    for i, c in enumerate(classes):
        t = y_true == c
        if 0 < t.sum() < len(t):
            fpr, tpr, thr = roc_curve(t, proba[:, i])
            parts.append(pd.DataFrame({"class": c, "fpr": fpr, "tpr": tpr, "threshold": thr}))
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["class", "fpr", "tpr", "threshold"])
    )


def confidence_curve(
    y_true: np.ndarray, proba: np.ndarray, classes: list[str], fractions=DEFAULT_FRACTIONS
) -> pd.DataFrame:
    """Accuracy and macro F1 of the most confident fraction of objects.

    Objects are ranked by their highest class probability; for each fraction
    the top part is kept (the paper's "top half" at 0.5).
    """
    y_true = np.asarray(y_true).astype(str)
    conf = proba.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    rows = []
    for f in fractions:
        k = max(1, round(f * len(order))) if len(order) else 0
        keep = order[:k]
        m = per_class_metrics(y_true[keep], proba[keep], classes)
        get = dict(zip(m.loc[m["class"] == "all", "metric"], m.loc[m["class"] == "all", "value"]))
        rows.append(
            {
                "fraction": float(f),
                "n": k,
                "min_confidence": float(conf[keep].min()) if k else np.nan,
                "accuracy": get["accuracy"],
                "macro_f1": get["macro_f1"],
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate`.

    Attributes
    ----------
    metrics
        Tidy: ``group, class, metric, value`` (group "all" and, with ``by``,
        each group such as each split).
    confusion
        ``group, true, predicted, count``.
    roc
        ``group, class, fpr, tpr, threshold``.
    confidence
        ``group, fraction, n, min_confidence, accuracy, macro_f1``.
    classes
        Class names, in probability-column order.
    data
        The evaluated rows (catalog joined with the truth).
    model
        The model's plugin name, from the catalog's provenance ("" if unknown).
    reliability
        ``group, probabilities, lower, upper, confidence, accuracy, n``:
        accuracy against confidence per bin, of the calibrated and the
        model's own probabilities (:mod:`catbuilder.evaluation.reliability`).
    """

    metrics: pd.DataFrame
    confusion: pd.DataFrame
    roc: pd.DataFrame
    confidence: pd.DataFrame
    classes: list[str]
    data: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    model: str = ""
    reliability: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def describe(self, group: str = "all") -> str:
        """What a group's figures are of: ``"test split, n=35, keras.small-cnn"``."""
        d = self.data
        if group != "all" and "split" in d and group in set(d["split"].dropna().astype(str)):
            what, n = f"{group} split", int((d["split"].astype(str) == group).sum())
        else:
            splits = sorted(set(d["split"].dropna().astype(str))) if "split" in d else []
            what = (
                f"{splits[0]} split"
                if len(splits) == 1
                else ("all splits" if splits else "all objects")
            )
            n = len(d)
        return f"{what}, n={n}" + (f", {self.model}" if self.model else "")

    def table(self) -> pd.DataFrame:
        """Metrics as a wide table: one row per (group, class), one column per metric."""
        t = self.metrics.pivot_table(
            index=["group", "class"], columns="metric", values="value", aggfunc="first"
        )
        return t.reset_index()

    def headline(self, group: str = "all") -> str:
        """One group's figures in one phrase: ``"n=35 accuracy 0.9429, top half 1.0000"``."""
        m = self.metrics[self.metrics["group"] == group]
        get = {(c, k): v for c, k, v in zip(m["class"], m["metric"], m["value"])}
        half = self.confidence[
            (self.confidence["group"] == group) & (self.confidence["fraction"] == 0.5)
        ]
        top = f", top half {half['accuracy'].iloc[0]:.4f}" if len(half) else ""
        return f"n={int(get[('all', 'n')])} accuracy {get[('all', 'accuracy')]:.4f}{top}"

    def summary(self) -> str:
        """A few lines: accuracy and top-half accuracy per group, AUC per class, ECE."""
        lines = []
        for g, m in self.metrics.groupby("group", sort=False):
            get = {(c, k): v for c, k, v in zip(m["class"], m["metric"], m["value"])}
            aucs = ", ".join(f"AUC {c} {get.get((c, 'auc'), np.nan):.4f}" for c in self.classes)
            ece = f"; ECE {get.get(('all', 'ece'), np.nan):.4f}"
            if ("all", "ece_uncalibrated") in get:
                ece += f" (uncalibrated {get[('all', 'ece_uncalibrated')]:.4f})"
            lines.append(f"{g}: {self.headline(g)}; {aucs}{ece}")
        return "\n".join(lines)

    def plot(self, outdir: str | os.PathLike[str], stack: Any = None) -> list[Path]:
        """Write ROC, confidence-curve, reliability, confusion-matrix PNGs, and with ``stack``
        (an ImageStack or its path) a gallery of cutouts, most confidently wrong first."""
        from catbuilder.evaluation import plots
        from catbuilder.stack.store import ImageStack

        if stack is not None and not isinstance(stack, ImageStack):
            stack = ImageStack.open(stack)

        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        out = [
            plots.plot_roc(self, outdir / "roc.png"),
            plots.plot_confidence(self, outdir / "confidence.png"),
            plots.plot_reliability(self, outdir / "reliability.png"),
            plots.plot_confusion(self, outdir / "confusion.png"),
        ]
        if stack is not None:
            out.append(plots.plot_gallery(self, stack, outdir / "gallery.png"))
        return out


def evaluate(
    catalog: pd.DataFrame | str | os.PathLike[str],
    truth: pd.DataFrame | str | os.PathLike[str] | None = None,
    *,
    truth_col: str = "label",
    id_col: str = "objid",
    by: str | None = "split",
    fractions=DEFAULT_FRACTIONS,
) -> Evaluation:
    """Compare a catalog's predictions with true classes.

    Parameters
    ----------
    catalog
        From :func:`catbuilder.catalog.build_catalog` (or a path).
    truth
        A table (or path) with ``id_col`` and ``truth_col``; default the
        catalog's own ``truth_col`` (the stack's labels).
    truth_col, id_col
        Column names.
    by
        A column to report each group of separately (default ``split`` when
        present), besides all objects together.
    fractions
        Fractions of most confident objects for the confidence curve.

    Returns
    -------
    Evaluation
        Objects without a truth among the catalog's classes, or without a
        prediction (off the footprint), are left out.

    Examples
    --------
    >>> import pandas as pd
    >>> from catbuilder import evaluate
    >>> catalog = pd.DataFrame({
    ...     "label": ["spiral", "elliptical", "spiral", "elliptical"],
    ...     "p_spiral": [0.9, 0.2, 0.6, 0.7], "p_elliptical": [0.1, 0.8, 0.4, 0.3],
    ...     "predicted": ["spiral", "elliptical", "spiral", "spiral"]})
    >>> evaluate(catalog).headline()
    'n=4 accuracy 0.7500, top half 1.0000'
    """
    from catbuilder.catalog import read_catalog

    cat = catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)
    from catbuilder.evaluation.reliability import reliability_metrics

    classes = [c[2:] for c in cat.columns if c.startswith("p_")]
    if not classes:
        raise ValueError("the catalog has no p_<class> columns")
    if truth is not None:
        if not isinstance(truth, pd.DataFrame):
            from catbuilder.sky.tables import read_table

            truth = read_table(truth)
        for col in (id_col, truth_col):
            if col not in truth.columns:
                raise ValueError(
                    f"truth table has no column {col!r}; columns: "
                    f"{', '.join(map(str, truth.columns))}"
                )
        t = truth[[id_col, truth_col]].rename(columns={truth_col: "_truth"})
        data = cat.merge(t, left_on="objid", right_on=id_col, how="inner")
    else:
        if truth_col not in cat.columns:
            raise ValueError(f"the catalog has no {truth_col!r} column; pass a truth table")
        data = cat.assign(_truth=cat[truth_col].astype(str))
    data = data[data["_truth"].notna() & data["_truth"].astype(str).isin(classes)]
    data = data[data["predicted"].notna() & (data["predicted"].astype(str) != "")]
    data = data.reset_index(drop=True)
    groups = [("all", data)]
    if by is not None and by in data.columns:
        groups += [(str(g), d) for g, d in data.groupby(by, sort=True) if str(g)]
    mets, confs, rocs, curves, reliab = [], [], [], [], []
    for g, d in groups:
        y = d["_truth"].astype(str).to_numpy()
        proba = d[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
        rel_rows, rel_table = reliability_metrics(d, y, classes)
        mets.append(
            pd.concat(
                [per_class_metrics(y, proba, classes), pd.DataFrame(rel_rows)], ignore_index=True
            ).assign(group=g)
        )
        reliab.append(rel_table.assign(group=g))
        pred = d["predicted"].astype(str).to_numpy()
        cm = pd.crosstab(pd.Categorical(y, classes), pd.Categorical(pred, classes), dropna=False)
        confs.append(
            cm.stack()
            .rename("count")
            .reset_index()
            .set_axis(["true", "predicted", "count"], axis=1)
            .assign(group=g)
        )
        rocs.append(roc_table(y, proba, classes).assign(group=g))
        curves.append(confidence_curve(y, proba, classes, fractions).assign(group=g))

    def front(df):
        return df[["group"] + [c for c in df.columns if c != "group"]]

    return Evaluation(
        front(pd.concat(mets, ignore_index=True)),
        front(pd.concat(confs, ignore_index=True)),
        front(pd.concat(rocs, ignore_index=True)),
        front(pd.concat(curves, ignore_index=True)),
        classes,
        data,
        str(((cat.attrs.get("catbuilder") or {}).get("model") or {}).get("plugin") or ""),
        front(pd.concat(reliab, ignore_index=True)),
    )
