"""Crossmatch a catalog with another table (in memory, or HEALPix-partitioned through lsdb)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from catbuilder import config
from catbuilder.sky.geometry import angle_arcsec


def crossmatch_catalog(
    catalog: pd.DataFrame | str | os.PathLike[str],
    other: Any,
    radius: float | str | Any | None = None,
    *,
    method: str = "auto",
) -> pd.DataFrame:
    """Match a catalog to another table by position; one row per matched object.

    ``method="astropy"`` uses :func:`catbuilder.sky.crossmatch` (in memory,
    partitioned on Dask when large); ``"lsdb"`` uses lsdb's HEALPix-partitioned
    crossmatch (either side may be a HATS catalog directory); ``"auto"``
    picks lsdb when either side is a HATS directory.
    """
    from catbuilder.catalog.formats import read_catalog
    from catbuilder.sky.crossmatch import crossmatch

    radius = angle_arcsec(config.resolve("crossmatch.radius-arcsec", radius), "radius")
    hats = any(isinstance(x, (str, os.PathLike)) and Path(x).is_dir() for x in (catalog, other))
    if method == "auto":
        method = "lsdb" if hats else "astropy"
    if method == "astropy":
        left = catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)
        right = other if isinstance(other, pd.DataFrame) else read_catalog(other)
        return crossmatch(left, right, radius).join(suffixes=("", "_other"))
    if method != "lsdb":
        raise ValueError(f"method must be auto, astropy or lsdb, got {method!r}")
    import lsdb

    def as_lsdb(x, name):
        if isinstance(x, pd.DataFrame):
            return lsdb.from_dataframe(
                x.reset_index(drop=True), ra_column="ra", dec_column="dec", catalog_name=name
            )
        return lsdb.read_hats(x)

    left, right = as_lsdb(catalog, "left"), as_lsdb(other, "right")
    # suffix only the columns both sides have, as the astropy path does
    out = left.crossmatch(
        right,
        n_neighbors=1,
        radius_arcsec=radius,
        suffixes=("", "_other"),
        suffix_method="overlapping_columns",
    )
    df = out.compute().reset_index(drop=True)
    if "_dist_arcsec" in df:
        df = df.rename(columns={"_dist_arcsec": "sep_arcsec"})
    return df
