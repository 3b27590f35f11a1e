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

    ``method="astropy"`` reads both sides into memory and uses
    :func:`catbuilder.sky.crossmatch` (declination strips on Dask when large);
    ``"lsdb"`` uses lsdb's HEALPix-partitioned crossmatch, which reads a HATS
    catalog directory partition by partition. ``"auto"`` matches in memory,
    which measured faster up to 10^7 x 10^7 rows (docs/scale.md), unless a
    side is a HATS directory and both sides together hold at least
    ``crossmatch.lsdb-min-rows`` rows: then lsdb, so that no table larger
    than memory is read whole.
    """
    from catbuilder.catalog.formats import read_catalog
    from catbuilder.sky.crossmatch import crossmatch

    radius = angle_arcsec(config.resolve("crossmatch.radius-arcsec", radius), "radius")
    if method == "auto":
        method = auto_method(catalog, other)
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


def auto_method(catalog: Any, other: Any) -> str:
    """The method ``"auto"`` picks for these two sides: ``"lsdb"`` or ``"astropy"``."""
    if not (_is_hats(catalog) or _is_hats(other)):
        return "astropy"  # nothing to count: without a HATS side lsdb is never chosen
    rows = sum(_rows(x) for x in (catalog, other))
    return "lsdb" if rows >= int(config.get("crossmatch.lsdb-min-rows")) else "astropy"


def _is_hats(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike)) and Path(x).is_dir()


def _rows(x: Any) -> int:
    """Rows of a table, a Parquet file or a HATS catalog (from its metadata); 0 if unknown."""
    if isinstance(x, pd.DataFrame):
        return len(x)
    if _is_hats(x):  # a catalog or a collection (a catalog and its margin)
        import hats

        found = hats.read_hats(x)
        return int(getattr(found, "main_catalog", found).catalog_info.total_rows or 0)
    if isinstance(x, (str, os.PathLike)) and Path(x).suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(x).metadata.num_rows)
    return 0
