"""Matplotlib figures of an :class:`~catbuilder.evaluation.Evaluation`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "display_rgb",
    "plot_confidence",
    "plot_confusion",
    "plot_cutout",
    "plot_embedding_map",
    "plot_gallery",
    "plot_roc",
    "plot_thumbnails",
    "plot_tile",
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
    ax.set(xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title(f"ROC, each class against the rest\n{ev.describe()}", fontsize=10)
    ax.legend(loc="lower right", title="true class")
    return save_figure(fig, path)


def plot_confidence(ev, path) -> Path:
    """Accuracy and F1 against the fraction of most confident objects kept."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for g, d in ev.confidence.groupby("group", sort=False):
        axes[0].plot(d["fraction"], 100 * d["accuracy"], marker="o", label=g)
        axes[1].plot(d["fraction"], d["macro_f1"], marker="o", label=g)
    axes[0].set(xlabel="Fraction of most confident objects kept", ylabel="Accuracy (%)")
    axes[1].set(xlabel="Fraction of most confident objects kept", ylabel="Macro F1 score")
    axes[0].legend(title="objects")
    fig.suptitle(f"Accuracy against confidence: {ev.describe()}", fontsize=10)
    return save_figure(fig, path)


def plot_reliability(ev, path) -> Path:
    """Reliability diagram: accuracy against confidence, before and after calibration."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated exactly")
    rel = ev.reliability
    eces = ev.metrics[(ev.metrics["group"] == "all") & (ev.metrics["class"] == "all")]
    ece = dict(zip(eces["metric"], eces["value"]))
    for kind, d in rel[rel["group"] == "all"].groupby("probabilities", sort=False):
        key = "ece" if kind == "calibrated" or "ece_uncalibrated" not in ece else "ece_uncalibrated"
        ax.plot(
            d["confidence"], d["accuracy"], marker="o",
            label=f"{kind} (ECE {ece.get(key, float('nan')):.3f})",
        )  # fmt: skip
    ax.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    ax.set_title(f"Reliability\n{ev.describe()}", fontsize=10)
    return save_figure(fig, path)


def plot_confusion(ev, path) -> Path:
    """Confusion matrix of all objects."""
    plt = pyplot()
    cm = ev.confusion[ev.confusion["group"] == "all"].pivot(
        index="true", columns="predicted", values="count"
    )
    cm = cm.loc[ev.classes, ev.classes]
    fig, ax = plt.subplots(figsize=(4 + len(ev.classes), 3.5 + len(ev.classes)))
    counts = cm.to_numpy()
    ax.imshow(counts, cmap="Blues", vmin=0)
    dark = counts.max() / 2 if counts.size else 0
    for i in range(len(ev.classes)):
        for j in range(len(ev.classes)):
            n = int(counts[i, j])
            ax.text(
                j, i, n, ha="center", va="center", fontsize=12,
                color="white" if n > dark else "black",
            )  # fmt: skip
    ax.set_xticks(range(len(ev.classes)), ev.classes)
    ax.set_yticks(range(len(ev.classes)), ev.classes)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(f"Confusion matrix\n{ev.describe()}", fontsize=10)
    return save_figure(fig, path)


def plot_gallery(ev, stack, path, n: int = 16) -> Path:
    """Cutouts with their predictions, the most confidently wrong first."""
    plt = pyplot()
    d = ev.data.copy()
    d["wrong"] = d["predicted"].astype(str) != d["_truth"].astype(str)
    d = d.sort_values(["wrong", "confidence"], ascending=[False, False]).head(n)
    images, scale = _images_of(stack, d["objid"].to_numpy())
    cols = 4
    rows = max(1, int(np.ceil(len(d) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (_, r) in zip(axes.ravel(), d.iterrows()):
        img = images[str(r["objid"])]
        ax.imshow(img, origin="lower")
        scale_bar(ax, scale, img.shape[0])
        colour = "red" if r["wrong"] else "black"
        ax.set_title(
            f"predicted {r['predicted']} (p={r['confidence']:.2f})\ntrue {r['_truth']}",
            fontsize=8,
            color=colour,
        )
    fig.suptitle(f"Most confidently wrong first (red: wrong): {ev.describe()}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def display_rgb(pixels: np.ndarray, objects=None, bands=None) -> np.ndarray:
    """Cutouts as RGB images in [0, 1], with the stretch the model sees.

    The configured preprocessing (``preprocess.*``: bands to RGB, stretch,
    calibration by ``magzero_<band>`` of ``objects``) at the cutouts' own
    size: every figure shows what the model was given.
    """
    from catbuilder.stack.preprocess import Preprocessor

    prep = Preprocessor()
    magzero = None
    if objects is not None and bands is not None:
        cols = [f"magzero_{b}" for b in bands]
        if all(c in objects.columns for c in cols):
            magzero = objects[cols].to_numpy(dtype=np.float32)
    side = pixels.shape[-1]
    return (prep.transform(pixels, bands, magzero, size=side) + 1.0) / 2.0


def _images_of(stack, objids) -> tuple[dict[str, np.ndarray], float]:
    """RGB display images of ``objids`` (by id as text) and the stack's pixel scale."""
    sel = stack.select(objid=np.asarray(objids))
    objs = sel.objects().reset_index(drop=True)
    imgs = display_rgb(sel.load(), objs, sel.bands)
    return {str(o): imgs[i] for i, o in enumerate(objs["objid"])}, sel.pixel_scale


def scale_bar(ax, pixel_scale: float, side: int, *, wcs_axes: bool = False) -> None:
    """A labelled bar of a round angle (1, 2, 5, 10 ... arcsec) in the lower left."""
    if not np.isfinite(pixel_scale) or pixel_scale <= 0:
        return
    target = side * pixel_scale / 3.5  # about a quarter of the image
    length = max(v for v in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300) if v <= max(target, 0.5))
    px = length / pixel_scale
    x0, y0 = 0.06 * side, 0.08 * side
    kw = {"transform": ax.get_transform("pixel")} if wcs_axes else {}
    ax.plot([x0, x0 + px], [y0, y0], color="white", lw=2, **kw)
    label = f'{length:g}"' if length < 60 else f"{length / 60:g}'"
    ax.text(x0 + px / 2, y0 + 0.03 * side, label, color="white", ha="center", fontsize=8, **kw)


def plot_tile(
    data: np.ndarray,
    magzero,
    bands,
    wcs,
    pixel_scale: float,
    path,
    *,
    title: str = "",
    title_size: float | None = None,
    size: float = 8.0,
    dpi: int = 100,
) -> Path:
    """A whole tile in RGB with the preprocessing stretch, RA/Dec axes and a scale bar.

    ``data`` is ``(band, y, x)`` in the order of ``bands`` (R, G, B last to first,
    as :func:`display_rgb` takes them); ``magzero`` a one-row table of
    ``magzero_<band>``.
    """
    plt = pyplot()
    rgb = display_rgb(np.asarray(data, dtype=np.float32)[None], magzero, bands)[0]
    fig = plt.figure(figsize=(size, size), dpi=dpi)
    ax = fig.add_subplot(projection=wcs)
    ax.imshow(rgb, origin="lower")
    ax.coords[0].set_axislabel("RA (ICRS)")
    ax.coords[1].set_axislabel("Dec (ICRS)")
    scale_bar(ax, pixel_scale, rgb.shape[0], wcs_axes=True)
    ax.set_title(title, fontsize=title_size)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_cutout(stack, i: int, path=None, *, title: str | None = None):
    """One cutout with RA/Dec axes (from the stack's own WCS) and a scale bar.

    Needs nothing but the stack: the tiles may be gone.

    Parameters
    ----------
    stack
        An :class:`~catbuilder.stack.ImageStack`.
    i
        Position of the object in the stack.
    path
        PNG to write; None returns the figure.
    title
        Default: the object's id, label and position.
    """
    plt = pyplot()
    sub = stack.isel([int(i)])
    obj = sub.objects().iloc[0]
    img = display_rgb(sub.load(), sub.objects(), sub.bands)[0]
    fig = plt.figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot(projection=stack.wcs(int(i)))
    ax.imshow(img, origin="lower")
    ax.coords[0].set_axislabel("RA (ICRS)")
    ax.coords[1].set_axislabel("Dec (ICRS)")
    ax.coords[0].set_major_formatter("hh:mm:ss.s")
    ax.coords[1].set_major_formatter("dd:mm:ss")
    scale_bar(ax, stack.pixel_scale, img.shape[0], wcs_axes=True)
    from catbuilder import config

    label = obj.get("label") or "unlabelled"
    rgb = ",".join(str(b) for b in config.get("preprocess.rgb"))
    ax.set_title(title or f"{obj['objid']} ({label}), RGB = {rgb}", fontsize=9)
    if path is None:
        return fig
    return save_figure(fig, path)


def plot_thumbnails(stack, objids, path, titles=None, *, title: str = "", cols: int = 6) -> Path:
    """A gallery of the cutouts of ``objids`` (in that order), with a scale bar each.

    ``titles`` (one line per object) label the thumbnails; ``title`` the figure.
    """
    plt = pyplot()
    objids = list(objids)
    images, scale = _images_of(stack, np.asarray(objids))
    rows = max(1, int(np.ceil(len(objids) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for j, (ax, o) in enumerate(zip(axes.ravel(), objids)):
        if str(o) not in images:
            continue
        ax.imshow(images[str(o)], origin="lower")
        scale_bar(ax, scale, images[str(o)].shape[0])
        ax.set_title(titles[j] if titles is not None else str(o), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_embedding_map(
    coords: np.ndarray, stack, objids, path, *, labels=None, n_thumbs: int = 40, title: str = ""
) -> Path:
    """The paper's t-SNE map with cutout thumbnails placed at their 2-D positions.

    Points are coloured by ``labels`` (say which: predicted or true, in
    ``title``); thumbnails of ``n_thumbs`` objects spread over the map (one
    per cell of a grid) are drawn on top.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    plt = pyplot()
    coords = np.asarray(coords, dtype=float)
    ok = np.isfinite(coords).all(axis=1)
    objids = np.asarray(objids)
    fig, ax = plt.subplots(figsize=(9, 8))
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        for lab in sorted(set(labels[ok])):
            m = ok & (labels == lab)
            ax.scatter(coords[m, 0], coords[m, 1], s=5, alpha=0.5, label=lab)
        ax.legend(markerscale=3, loc="upper right")
    else:
        ax.scatter(coords[ok, 0], coords[ok, 1], s=5, alpha=0.5)
    # one thumbnail per occupied grid cell, the object nearest the cell's centre
    g = max(2, int(np.ceil(np.sqrt(n_thumbs))))
    lo, hi = coords[ok].min(axis=0), coords[ok].max(axis=0)
    cell = np.floor((coords - lo) / np.maximum(hi - lo, 1e-9) * (g - 1e-9)).astype(int)
    chosen = []
    for cx in range(g):
        for cy in range(g):
            m = np.flatnonzero(ok & (cell[:, 0] == cx) & (cell[:, 1] == cy))
            if len(m):
                centre = lo + (np.array([cx, cy]) + 0.5) / g * (hi - lo)
                chosen.append(m[np.argmin(((coords[m] - centre) ** 2).sum(axis=1))])
    chosen = chosen[:n_thumbs]
    images, _ = _images_of(stack, objids[chosen])
    for i in chosen:
        img = images.get(str(objids[i]))
        if img is None:
            continue
        box = AnnotationBbox(
            OffsetImage(img, zoom=36.0 / img.shape[0], origin="lower"),
            coords[i],
            frameon=False,
            pad=0,
        )
        ax.add_artist(box)
    ax.set(xticks=[], yticks=[])
    ax.set_title(f"{title or 't-SNE of the embeddings'}\nn={int(ok.sum())}", fontsize=10)
    return save_figure(fig, path)
