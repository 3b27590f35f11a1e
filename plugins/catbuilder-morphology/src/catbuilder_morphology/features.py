"""Per-object morphology: a segment at the centre, statmorph, colours in it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["FEATURES", "compute_features", "object_features"]

MORPHOLOGY = [
    "concentration", "asymmetry", "smoothness", "gini", "m20", "gini_m20_bulge",
    "gini_m20_merger", "sersic_n", "sersic_ellip", "ellipticity_asymmetry",
    "elongation_asymmetry", "r20", "r80", "rpetro_circ", "sn_per_pixel", "flag", "flag_sersic",
]  # fmt: skip
COLOURS = [("g", "r"), ("r", "i"), ("u", "g"), ("i", "z")]
FEATURES = MORPHOLOGY + ["segment_area", "centre_offset"]


def feature_names(bands: list[str]) -> list[str]:
    """Names of the feature vector for a stack with ``bands``."""
    return FEATURES + [f"{a}_{b}" for a, b in COLOURS if a in bands and b in bands]


def object_features(
    pixels: np.ndarray, bands: list[str], magzero: np.ndarray | None, band: str = "r"
) -> np.ndarray:
    """Features of one object: ``pixels`` (band, y, x) native, ``magzero`` per band.

    Failures (no source at the centre, statmorph errors) give NaN features
    and ``flag`` = 4, never an exception.
    """
    import statmorph
    from photutils.segmentation import detect_sources, detect_threshold

    names = feature_names(bands)
    out = np.full(len(names), np.nan)
    out[names.index("flag")] = 4
    img = np.asarray(pixels[bands.index(band)], dtype=np.float64)
    bad = ~np.isfinite(img)
    if bad.all():
        return out
    img = np.where(bad, 0.0, img)
    ny, nx = img.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            seg = detect_sources(img, detect_threshold(img, 1.5, mask=bad), npixels=10, mask=bad)
        except Exception:
            return out
        if seg is None:
            return out
        # the segment at the centre, else the one nearest to it
        cy, cx = ny // 2, nx // 2
        label = seg.data[cy, cx]
        if label == 0:
            yy, xx = np.nonzero(seg.data)
            k = np.argmin((yy - cy) ** 2 + (xx - cx) ** 2)
            label = seg.data[yy[k], xx[k]]
            offset = float(np.hypot(yy[k] - cy, xx[k] - cx))
        else:
            offset = 0.0
        seg.keep_labels([label])
        sky = img[seg.data == 0]
        sigma = 1.4826 * np.median(np.abs(sky - np.median(sky))) if sky.size else 1.0
        try:
            m = statmorph.source_morphology(
                img, seg, weightmap=np.full_like(img, max(sigma, 1e-12)), mask=bad
            )[0]
        except Exception:
            return out
        for i, name in enumerate(MORPHOLOGY):
            try:
                out[i] = float(getattr(m, name))
            except Exception:
                out[i] = np.nan
    mask = seg.data > 0
    out[names.index("segment_area")] = float(mask.sum())
    out[names.index("centre_offset")] = offset
    if magzero is not None:
        mags = {}
        for b in bands:
            flux = float(np.nansum(pixels[bands.index(b)][mask]))
            zp = float(magzero[bands.index(b)])
            mags[b] = zp - 2.5 * np.log10(flux) if flux > 0 and np.isfinite(zp) else np.nan
        for a, b in COLOURS:
            if a in bands and b in bands:
                out[names.index(f"{a}_{b}")] = mags[a] - mags[b]
    return out


def _batch_features(pixels, magzero, bands, band):
    return (
        np.stack(
            [
                object_features(p, bands, None if magzero is None else magzero[i], band)
                for i, p in enumerate(pixels)
            ]
        )
        if len(pixels)
        else np.zeros((0, len(feature_names(bands))))
    )


def compute_features(
    X: Any,
    bands: list[str],
    *,
    band: str = "r",
    batch_size: int = 64,
    cluster: Any = None,
    progress: bool = False,
) -> np.ndarray:
    """Features of every object of ``X`` (a stack or an array), on Dask.

    ``cluster`` says where (see :func:`catbuilder.runtime.compute`). One Dask
    task per batch; for a stack the pixels are read by the task
    itself (the Zarr slice is a dependency in the graph), so nothing large
    travels through the client.
    """
    import dask

    from catbuilder.runtime import compute
    from catbuilder.stack.store import ImageStack

    if isinstance(X, ImageStack):
        bands = X.bands
        n = len(X)
        images, zps = X.ds["images"].data, X.ds["magzero"].data
        tasks = [
            dask.delayed(_batch_features)(
                images[a : a + batch_size], zps[a : a + batch_size], bands, band
            )
            for a in range(0, n, batch_size)
        ]
    else:
        arr = np.asarray(X)
        tasks = [
            dask.delayed(_batch_features)(arr[a : a + batch_size], None, list(bands), band)
            for a in range(0, len(arr), batch_size)
        ]
    if band not in bands:
        raise ValueError(f"morphology band {band!r} is not among the bands {list(bands)}")
    if not tasks:
        return np.zeros((0, len(feature_names(list(bands)))))
    parts = compute(tasks, cluster=cluster, progress=progress, desc="morphology", unit="batch")
    return np.concatenate(parts)
