"""Example catbuilder plugin: nearest-centroid classification on colours.

The model measures each object's colours (g-r, r-i) in a central aperture and
assigns the class whose mean colours are nearest. Ellipticals are red and
spirals blue, so even this separates them fairly well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder.models.estimator import ImageEstimator, input_bands, iter_inputs, labels_of
from catbuilder.plugins import ModelPlugin

__all__ = ["ColourCentroid", "ColourCentroidPlugin"]


class ColourCentroidPlugin(ModelPlugin):
    """Entry point: metadata, and where the estimator is (imports nothing heavy)."""

    estimator = "catbuilder_plugin_example:ColourCentroid"
    description = "Nearest centroid on g-r and r-i aperture colours (example plugin)"
    url = "https://github.com/catbuilder/catbuilder/tree/main/examples/catbuilder-plugin-example"
    bands = ("g", "r", "i")
    input_size = None
    capabilities = frozenset({"classify", "embed"})
    framework = "numpy"


class ColourCentroid(ImageEstimator):
    """Nearest-centroid classifier on aperture colours.

    Parameters
    ----------
    radius
        Aperture radius in pixels around the cutout centre.
    bands
        Bands of array inputs (must include g, r and i).
    """

    def __init__(self, radius: int = 5, bands: tuple[str, ...] = ("g", "r", "i")):
        self.radius = radius
        self.bands = bands

    def transform(self, X: Any) -> np.ndarray:
        """Colours ``(n, 2)``: g-r and r-i from aperture fluxes."""
        bands = input_bands(X, self.bands)
        out = []
        for b in iter_inputs(X, 256, bands):
            n, _, h, w = b.pixels.shape
            yy, xx = np.mgrid[:h, :w]
            ap = np.hypot(yy - h // 2, xx - w // 2) <= self.radius
            flux = np.nansum(b.pixels[:, :, ap], axis=2)
            zp = b.magzero if b.magzero is not None else np.zeros((n, len(bands)))
            with np.errstate(divide="ignore", invalid="ignore"):
                mag = zp - 2.5 * np.log10(np.where(flux > 0, flux, np.nan))
            g, r, i = (mag[:, bands.index(c)] for c in "gri")
            out.append(np.column_stack([g - r, r - i]))
        return np.nan_to_num(np.concatenate(out)) if out else np.zeros((0, 2))

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> ColourCentroid:
        labels = labels_of(X, y).astype(str)
        F = self.transform(X)
        keep = labels != ""
        self.classes_ = np.array(sorted(set(labels[keep])), dtype=object)
        self.centroids_ = np.stack([F[keep & (labels == c)].mean(axis=0) for c in self.classes_])
        self.n_features_out_ = F.shape[1]  # the embedding's width, recorded when saved
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        d = np.linalg.norm(self.transform(X)[:, None, :] - self.centroids_[None], axis=2)
        w = np.exp(-d / 0.1)
        return w / w.sum(axis=1, keepdims=True)

    def save_state(self, path: Path) -> None:
        """Its own state only: catbuilder writes the manifest around it."""
        (Path(path) / "centroids.json").write_text(
            json.dumps(
                {
                    "params": {"radius": self.radius, "bands": list(self.bands)},
                    "classes_": list(map(str, self.classes_)),
                    "centroids_": self.centroids_.tolist(),
                }
            )
        )

    @classmethod
    def load_state(cls, path: Path) -> ColourCentroid:
        meta = json.loads((Path(path) / "centroids.json").read_text())
        est = cls(radius=meta["params"]["radius"], bands=tuple(meta["params"]["bands"]))
        est.classes_ = np.array(meta["classes_"], dtype=object)
        est.centroids_ = np.array(meta["centroids_"])
        est.n_features_out_ = est.centroids_.shape[1]
        return est
