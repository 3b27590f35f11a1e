"""catbuilder's asv benchmark suite, and the seeded inputs it shares with the
ratio scripts in ``benchmarks/scripts``.

Tiles are plain noise with a TAN WCS: cheap to write, so the benchmarks
measure cutting, not simulation. Set ``CATBUILDER_BENCH_QUICK=1`` to skip the
slow cases (as xarray's suite does with its own flag).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

QUICK = os.environ.get("CATBUILDER_BENCH_QUICK", "") not in ("", "0")


def write_tiles(
    outdir: str | Path,
    n_side: int = 4,
    npix: int = 2048,
    bands=("g", "r", "i"),
    scale: float = 0.263,
    seed: int = 0,
) -> list[Path]:
    """Write ``n_side**2`` tiles per band (float32, TAN WCS) in a square grid."""
    from astropy.io import fits

    from catbuilder.synth.layout import tan_wcs

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    side_deg = npix * scale / 3600
    paths = []
    for j in range(n_side):
        for i in range(n_side):
            ra, dec = 20.0 + i * side_deg, j * side_deg
            hdr = tan_wcs(ra, dec, scale, npix, npix).to_header()
            for b in bands:
                h = hdr.copy()
                h["BAND"] = b
                h["MAGZERO"] = 30.0
                data = rng.normal(0, 1, (npix, npix)).astype(np.float32)
                p = outdir / f"T{j:02d}{i:02d}_{b}.fits"
                if not p.exists():
                    fits.PrimaryHDU(data, header=h).writeto(p)
                paths.append(p)
    return paths


def positions(
    n: int, n_side: int = 4, npix: int = 2048, scale: float = 0.263, seed: int = 1
) -> pd.DataFrame:
    """``n`` positions spread over the tiles of :func:`write_tiles` (inside them)."""
    rng = np.random.default_rng(seed)
    side_deg = npix * scale / 3600
    margin = 40 * scale / 3600
    i = rng.integers(0, n_side, n)
    j = rng.integers(0, n_side, n)
    ra = 20.0 + i * side_deg + rng.uniform(-side_deg / 2 + margin, side_deg / 2 - margin, n)
    dec = j * side_deg + rng.uniform(-side_deg / 2 + margin, side_deg / 2 - margin, n)
    return pd.DataFrame({"objid": np.arange(n), "ra": ra, "dec": dec})


def fitted_model(name: str, size: int, outdir: str | Path, cutout: int = 64) -> Path:
    """Save a plugin model of input ``size`` to ``outdir/<name>.model``, fitted on
    ``cutout`` px cutouts (the benchmark stacks' size, so predict does not warn).

    Its weights are barely trained: the benchmarks measure speed, not accuracy.
    """
    from catbuilder.plugins import make_model

    rng = np.random.default_rng(0)
    est = make_model(
        name,
        input_size=size,
        batch_size=8,
        augment=False,
        stages=[{"name": "head", "epochs": 1, "learning-rate": 1e-4, "trainable-from": "head"}],
    )
    X = rng.normal(0, 1, (16, 3, cutout, cutout)).astype(np.float32)
    est.fit(X, ["elliptical", "spiral"] * 8)
    return est.save(Path(outdir) / f"{name}.model")


def model_inputs(stack, size: int) -> np.ndarray:
    """The whole stack preprocessed for a model of input ``size``, in memory
    (the bare ``model.predict`` baseline's input)."""
    from catbuilder.stack.preprocess import Preprocessor

    zp = stack.objects()[[f"magzero_{b}" for b in stack.bands]].to_numpy()
    return Preprocessor().transform(stack.load(), stack.bands, zp, size=size)
