"""Matplotlib figures of an :class:`~catbuilder.evaluate.Evaluation`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "plot_confidence",
    "plot_confusion",
    "plot_gallery",
    "plot_roc",
    "pyplot",
    "save_figure",
]


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> Path:
    """Lay out, write (100 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return Path(path)


def plot_roc(ev, path) -> Path:
    """ROC curve of each class (one against the rest), all objects."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    roc = ev.roc[ev.roc["group"] == "all"]
    m = ev.metrics[(ev.metrics["group"] == "all") & (ev.metrics["metric"] == "auc")]
    auc = dict(zip(m["class"], m["value"]))
    for c, d in roc.groupby("class"):
        ax.plot(d["fpr"], d["tpr"], label=f"{c} (area = {auc.get(c, np.nan):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_confidence(ev, path) -> Path:
    """Accuracy and F1 against the fraction of most confident objects kept."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for g, d in ev.confidence.groupby("group", sort=False):
        axes[0].plot(d["fraction"], 100 * d["accuracy"], marker="o", label=g)
        axes[1].plot(d["fraction"], d["macro_f1"], marker="o", label=g)
    axes[0].set(xlabel="Fraction of data set", ylabel="Accuracy (%)")
    axes[1].set(xlabel="Fraction of data set", ylabel="F1 score")
    axes[0].legend()
    return save_figure(fig, path)


def plot_confusion(ev, path) -> Path:
    """Confusion matrix of all objects."""
    plt = pyplot()
    cm = ev.confusion[ev.confusion["group"] == "all"].pivot(
        index="true", columns="predicted", values="count"
    )
    cm = cm.loc[ev.classes, ev.classes]
    fig, ax = plt.subplots(figsize=(4 + len(ev.classes), 3.5 + len(ev.classes)))
    ax.imshow(cm.to_numpy(), cmap="Blues")
    for i in range(len(ev.classes)):
        for j in range(len(ev.classes)):
            ax.text(j, i, int(cm.iloc[i, j]), ha="center", va="center")
    ax.set_xticks(range(len(ev.classes)), ev.classes)
    ax.set_yticks(range(len(ev.classes)), ev.classes)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return save_figure(fig, path)


def plot_gallery(ev, stack, path, n: int = 16) -> Path:
    """Cutouts with their predictions, the most confidently wrong first."""
    from catbuilder.stack.preprocess import Preprocessor

    plt = pyplot()
    d = ev.data.copy()
    d["wrong"] = d["predicted"].astype(str) != d["_truth"].astype(str)
    d = d.sort_values(["wrong", "confidence"], ascending=[False, False]).head(n)
    sel = stack.select(objid=d["objid"].to_numpy())
    objs = sel.objects().reset_index(drop=True)
    pos = {o: i for i, o in enumerate(objs["objid"])}
    imgs = Preprocessor()(sel.load(), objs, sel.bands)
    cols = 4
    rows = max(1, int(np.ceil(len(d) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (_, r) in zip(axes.ravel(), d.iterrows()):
        ax.imshow((imgs[pos[r["objid"]]] + 1) / 2, origin="lower")
        colour = "red" if r["wrong"] else "black"
        ax.set_title(
            f"{r['predicted']} {r['confidence']:.2f}\ntrue: {r['_truth']}", fontsize=8, color=colour
        )
    fig.suptitle("Predictions, most confidently wrong first")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
