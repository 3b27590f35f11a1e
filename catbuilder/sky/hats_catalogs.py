"""HATS catalogs (HEALPix-partitioned Parquet) as tables: found, listed, counted, read, matched.

A HATS catalog is a directory (``hats.properties``, or a collection's
``collection.properties`` around a catalog and its margins) whose rows are in
``dataset/Norder=k/Dir=d/Npix=p.parquet``. Beside those it holds files that are
not rows of the catalog (a thumbnail sample, ``_metadata``, margin caches), so
it is read through ``hats``/``lsdb``, never as a plain Parquet directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = [
    "crossmatch_method",
    "data_files",
    "is_hats_catalog",
    "nearest_within",
    "numpy_dtypes",
    "read_hats_table",
    "table_rows",
]


def is_hats_catalog(path: Any) -> bool:
    """Whether ``path`` is a HATS catalog or collection directory."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    path = Path(path)
    return (path / "hats.properties").is_file() or (path / "collection.properties").is_file()


def _main_catalog(path: Path):
    import hats

    found = hats.read_hats(path)
    return getattr(found, "main_catalog", found)  # a collection: its catalog, not margins


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files holding a HATS catalog's rows, in partition order."""
    from hats.io.paths import pixel_catalog_file

    cat = _main_catalog(Path(path))
    pixels = sorted(cat.get_healpix_pixels(), key=lambda p: (p.order, p.pixel))
    return [Path(str(pixel_catalog_file(cat.catalog_base_dir, p))) for p in pixels]


def table_rows(x: Any) -> int:
    """Rows of a table, a Parquet file or a HATS catalog (from metadata); 0 if unknown."""
    if isinstance(x, pd.DataFrame):
        return len(x)
    if is_hats_catalog(x):
        return int(_main_catalog(Path(x)).catalog_info.total_rows or 0)
    if isinstance(x, (str, os.PathLike)) and Path(x).suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(x).metadata.num_rows)
    return 0


def crossmatch_method(*sides: Any) -> str:
    """``"lsdb"`` or ``"astropy"``: how ``method="auto"`` matches these tables.

    In memory (astropy, in declination strips when large) measured faster up
    to 10^7 x 10^7 rows (docs/scale.md); lsdb reads a HATS catalog partition
    by partition, so it is chosen when a side is one and all sides together
    hold at least ``crossmatch.lsdb-min-rows`` rows.
    """
    if not any(is_hats_catalog(x) for x in sides):
        return "astropy"  # nothing to count: without a HATS side lsdb is never chosen
    rows = sum(table_rows(x) for x in sides)
    return "lsdb" if rows >= int(config.get("crossmatch.lsdb-min-rows")) else "astropy"


def numpy_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed columns (lsdb's) as every other format reads: text as objects with
    None, integers with nulls as ``Int64``, the rest as numpy."""
    out = {}
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.StringDtype):
            out[col] = pd.Series(s.to_numpy(dtype=object, na_value=None), index=s.index)
            continue
        if not isinstance(s.dtype, pd.ArrowDtype):
            out[col] = s
            continue
        kind = s.dtype.numpy_dtype.kind if s.dtype.numpy_dtype is not None else "O"
        if kind in "OUS":
            out[col] = pd.Series(s.to_numpy(dtype=object, na_value=None), index=s.index)
        elif kind in "iu" and s.isna().any():
            out[col] = s.astype("Int64")
        elif kind == "b" and not s.isna().any():
            out[col] = s.to_numpy(dtype=bool)
        else:
            out[col] = s.to_numpy(dtype=s.dtype.numpy_dtype, na_value=np.nan)
    return pd.DataFrame(out, index=df.index)


def read_hats_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A whole HATS catalog in memory, in its partitions' order (numpy dtypes)."""
    import lsdb

    return numpy_dtypes(lsdb.read_hats(Path(path)).compute().reset_index(drop=True))


def nearest_within(catalog: str | os.PathLike[str], other: pd.DataFrame,
                   radius_arcsec: float) -> pd.DataFrame:  # fmt: skip
    """Each row of a HATS catalog with a row of ``other`` within the radius, and its nearest.

    Through lsdb, partition by partition: the catalog is never read whole.
    ``other`` (``ra``, ``dec`` in degrees) is small enough for memory.

    Returns
    -------
    pandas.DataFrame
        The matched rows of ``catalog`` (its columns, in its partitions'
        order), with ``other_row`` (the row position in ``other``) and
        ``sep_arcsec``.
    """
    import lsdb

    right = pd.DataFrame({
        "ra": other["ra"].to_numpy(float),
        "dec": other["dec"].to_numpy(float),
        "other_row": np.arange(len(other), dtype=np.int64),
    })  # fmt: skip
    # the margin holds the rows just across a partition's edge: a catalog row
    # near an edge finds its nearest neighbour there
    right = lsdb.from_dataframe(right, ra_column="ra", dec_column="dec", catalog_name="other",
                                margin_threshold=max(5.0, 1.5 * radius_arcsec))  # fmt: skip
    left = lsdb.read_hats(Path(catalog))
    names = list(left.columns)
    out = left.crossmatch(right, n_neighbors=1, radius_arcsec=radius_arcsec,
                          suffixes=("", "_other"), suffix_method="all_columns")  # fmt: skip
    df = out.compute()
    df = df.iloc[np.argsort(df.index.to_numpy(), kind="stable")].reset_index(drop=True)
    kept = df[names].copy()
    kept["other_row"] = df["other_row_other"].to_numpy(np.int64)
    kept["sep_arcsec"] = df["_dist_arcsec"].to_numpy(float)
    return numpy_dtypes(kept)
